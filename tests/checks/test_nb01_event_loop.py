"""The make_breakfast check passes the reference and rejects what learners really write."""

from __future__ import annotations

import gc
import warnings

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

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
''', "the steps overlap", "one after another: 15", "one after another"),
    "tasks awaited one by one before the next is created": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    results = []
    for step in (boil_egg, toast_bread, brew_coffee):
        results.append(await asyncio.create_task(step()))
    return results
''', "the steps overlap", "took 15 virtual minutes", "one after another"),
    "results in completion order": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [await c for c in asyncio.as_completed([boil_egg(), toast_bread(), brew_coffee()])]
''', "results in order", "expected ['boil_egg ready'",
      "results in completion order"),
    "a step called twice": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    await boil_egg()
    return list(await asyncio.gather(boil_egg(), toast_bread(), brew_coffee()))
''', "each step done once", "boil_egg ran 2 times", "step started twice"),
    "time.sleep to wait": ('''
import asyncio, time

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    time.sleep(1)
    return list(await asyncio.gather(boil_egg(), toast_bread(), brew_coffee()))
''', "never blocks the event loop", "time.sleep(1) in make_breakfast()",
      "blocked the loop"),
    "forgotten await": ('''
async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [boil_egg(), toast_bread(), brew_coffee()]
''', "every coroutine awaited", "forgotten `await`", "forgotten await"),
    "tasks returned instead of their results": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return [asyncio.create_task(step()) for step in (boil_egg, toast_bread, brew_coffee)]
''', "every coroutine awaited", "a Task object: a forgotten `await`",
      "forgotten await"),
    "gather not awaited": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return asyncio.gather(boil_egg(), toast_bread(), brew_coffee())
''', "returns a value, not an awaitable", "returned a _GatheringFuture object",
      "returned an awaitable"),
    "results read before the tasks are done": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    tasks = [asyncio.create_task(step()) for step in (boil_egg, toast_bread, brew_coffee)]
    return [task.result() for task in tasks]
''', "runs without error", "InvalidStateError: Result is not set.",
      "raised an error"),
    "coroutines passed to asyncio.wait": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    done, _ = await asyncio.wait([boil_egg(), toast_bread(), brew_coffee()])
    return [t.result() for t in done]
''', "every coroutine awaited", "coroutine 'boil_egg' was never awaited",
      "forgotten await"),
    "results read from asyncio.wait's done set": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    tasks = [asyncio.create_task(step()) for step in (boil_egg, toast_bread, brew_coffee)]
    done, _ = await asyncio.wait(tasks)
    return [task.result() for task in done]
''', "results in order", "returned ['brew_coffee ready', 'toast_bread ready', 'boil_egg ready']",
      "results in set order"),
    "two together, the third after": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    egg, toast = await asyncio.gather(boil_egg(), toast_bread())
    return [egg, toast, await brew_coffee()]
''', "the steps overlap", "took 12 virtual minutes", "partly one after another"),
    "appends results as each task finishes": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    results = []

    async def run(step):
        results.append(await step())

    await asyncio.gather(run(boil_egg), run(toast_bread), run(brew_coffee))
    return results
''', "results in order", "returned ['toast_bread ready'", "results in completion order"),
    "a step never started": ('''
import asyncio

async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return list(await asyncio.gather(boil_egg(), toast_bread())) + ["brew_coffee ready"]
''', "each step done once", "brew_coffee ran 0 times", "step never started"),
    "not async": ('''
def make_breakfast(boil_egg, toast_bread, brew_coffee):
    return []
''', "is a coroutine function", "plain function", "not async"),
    "stub": ('''
async def make_breakfast(boil_egg, toast_bread, brew_coffee):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet", "not written"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "make_breakfast"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment, diagnosis = WRONG[name]
    report = check(define(code, "make_breakfast"))
    props = [f.prop for f in report.findings]
    assert len(props) == len(set(props)), report.text()
    assert_diagnosed(report, prop, fragment, diagnosis)


def test_results_read_from_a_set_fail_every_time_and_say_which_run():
    """asyncio.wait's done set has no order; the check settles it both ways, so the verdict
    never depends on memory addresses: 20 checks, 20 failures, the same report."""
    code = WRONG["results read from asyncio.wait's done set"][0]
    texts = set()
    for _ in range(20):
        report = check(define(code, "make_breakfast"))
        assert not report.passed and "results in set order" in report.diagnoses
        texts.add(report.text())
    assert len(texts) == 1
    assert "sets of tasks were iterated newest first" in texts.pop()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_hidden_variant_is_meaningful_for_any_seed(seed):
    assert check(define(REFERENCE, "make_breakfast"), variant="hidden", seed=seed).passed
    for name in ("sequential awaits", "results read from asyncio.wait's done set",
                 "results in completion order"):
        report = check(define(WRONG[name][0], "make_breakfast"), variant="hidden", seed=seed)
        assert not report.passed, (name, seed)



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
