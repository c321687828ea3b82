"""The make_breakfast check passes the reference and rejects what learners really write."""

from __future__ import annotations

import gc
import warnings

import pytest

from asynclab.checks import check
from conftest import define, failed_props

REFERENCE = '''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return list(await asyncio.gather(boil_egg(), toast_bread(), brew_coffee()))
'''

WRONG = {
    "sequential awaits": ('''
async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    egg = await boil_egg()
    toast = await toast_bread()
    coffee = await brew_coffee()
    return [egg, toast, coffee]
''', "the steps overlap", "one after another: 15"),
    "tasks awaited one by one before the next is created": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    results = []
    for step in (boil_egg, toast_bread, brew_coffee):
        results.append(await asyncio.create_task(step()))
    return results
''', "the steps overlap", "took 15 virtual minutes"),
    "results in completion order": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [await c for c in asyncio.as_completed([boil_egg(), toast_bread(), brew_coffee()])]
''', "results in order", "expected ['boil_egg ready'"),
    "a step called twice": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    await boil_egg()
    return list(await asyncio.gather(boil_egg(), toast_bread(), brew_coffee()))
''', "each step done once", "boil_egg ran 2 times"),
    "time.sleep to wait": ('''
import asyncio, time

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    time.sleep(1)
    return list(await asyncio.gather(boil_egg(), toast_bread(), brew_coffee()))
''', "never blocks the event loop", "time.sleep(1) in make_breakfast()"),
    "forgotten await": ('''
async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [boil_egg(), toast_bread(), brew_coffee()]
''', "every coroutine awaited", "forgotten `await`"),
    "tasks returned instead of their results": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [asyncio.create_task(step()) for step in (boil_egg, toast_bread, brew_coffee)]
''', "every coroutine awaited", "a Task object: a forgotten `await`"),
    "gather not awaited": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return asyncio.gather(boil_egg(), toast_bread(), brew_coffee())
''', "returns a value, not an awaitable", "returned a _GatheringFuture object"),
    "results read before the tasks are done": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    tasks = [asyncio.create_task(step()) for step in (boil_egg, toast_bread, brew_coffee)]
    return [task.result() for task in tasks]
''', "runs without error", "InvalidStateError: Result is not set."),
    "coroutines passed to asyncio.wait": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    done, _ = await asyncio.wait([boil_egg(), toast_bread(), brew_coffee()])
    return [t.result() for t in done]
''', "every coroutine awaited", "coroutine 'boil_egg' was never awaited"),
    "not async": ('''
def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return []
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "make_breakfast"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "make_breakfast"))
    failed = failed_props(report)
    props = [f.prop for f in report.findings]
    assert len(props) == len(set(props)), report.text()
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()


@pytest.mark.parametrize("name", ["gather not awaited", "coroutines passed to asyncio.wait"])
def test_checks_leave_no_stray_warnings_or_logs(name, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check(define(WRONG[name][0], "make_breakfast"))
        del report
        gc.collect()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert "never retrieved" not in capfd.readouterr().err


def test_forgotten_await_is_reported_without_memory_addresses():
    report = check(define(WRONG["forgotten await"][0], "make_breakfast"))
    assert "0x" not in report.text(), report.text()


def test_hidden_variant_rejects_sequential_too():
    report = check(define(WRONG["sequential awaits"][0], "make_breakfast"), variant="hidden")
    assert "the steps overlap" in failed_props(report)
