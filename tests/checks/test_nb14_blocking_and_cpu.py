"""The process_all check passes the reference and rejects what learners really write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    calls = [loop.run_in_executor(executor, cpu_work, item) for item in items]
    return await asyncio.gather(*calls)
'''

# Also right: futures from executor.submit, wrapped for asyncio.
WRAP_FUTURE = '''
import asyncio

async def process_all(items, cpu_work, executor):
    futures = [asyncio.wrap_future(executor.submit(cpu_work, item)) for item in items]
    return list(await asyncio.gather(*futures))
'''

WRONG = {
    "called on the loop": ('''
async def process_all(items, cpu_work, executor):
    return [cpu_work(item) for item in items]
''', "never blocks the event loop", "blocking call on the event loop: cpu_work() in"),
    "called on the loop (same call, other property)": ('''
async def process_all(items, cpu_work, executor):
    return [cpu_work(item) for item in items]
''', "runs in the given executor", "6 calls of cpu_work ran on the event loop's thread"),
    "one at a time": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    results = []
    for item in items:
        results.append(await loop.run_in_executor(executor, cpu_work, item))
    return results
''', "all handed over at once", "ran one at a time"),
    "batches": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    results = []
    for i in range(0, len(items), 2):
        batch = [loop.run_in_executor(executor, cpu_work, item) for item in items[i:i + 2]]
        results += await asyncio.gather(*batch)
    return results
''', "all handed over at once", "at most 2 of the 6 items were in the executor at once"),
    "everything in one call": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, lambda: [cpu_work(i) for i in items])
''', "all handed over at once", "only 1 call went to the executor for 6 items"),
    "to_thread instead of the executor": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    return await asyncio.gather(*(asyncio.to_thread(cpu_work, item) for item in items))
''', "runs in the given executor", "6 of 6 calls ran in other threads"),
    "blocking future.result()": ('''
async def process_all(items, cpu_work, executor):
    futures = [executor.submit(cpu_work, item) for item in items]
    return [future.result() for future in futures]
''', "other tasks keep running", "the loop waited for the pool with a blocking call: "
                                "future.result() in "),
    "executor.map": ('''
async def process_all(items, cpu_work, executor):
    return list(executor.map(cpu_work, items))
''', "other tasks keep running", "the loop waited for the pool with a blocking call"),
    "concurrent.futures.wait": ('''
import concurrent.futures

async def process_all(items, cpu_work, executor):
    futures = [executor.submit(cpu_work, item) for item in items]
    concurrent.futures.wait(futures)
    return [future.result() for future in futures]
''', "other tasks keep running", "no other task got a turn while the pool was working"),
    "forgotten await": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    return [loop.run_in_executor(executor, cpu_work, item) for item in items]
''', "every coroutine awaited", "un-awaited"),
    "results reordered": ('''
import asyncio

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    calls = [loop.run_in_executor(executor, cpu_work, item) for item in items]
    return [await f for f in asyncio.as_completed(calls)][::-1]
''', "results in order", "out of order"),
    "time.sleep": ('''
import asyncio, time

async def process_all(items, cpu_work, executor):
    loop = asyncio.get_running_loop()
    calls = [loop.run_in_executor(executor, cpu_work, item) for item in items]
    time.sleep(0.01)  # "give the workers a head start"
    return await asyncio.gather(*calls)
''', "never blocks the event loop", "time.sleep(0.01) in process_all()"),
    "not async": ('''
def process_all(items, cpu_work, executor):
    return [cpu_work(item) for item in items]
''', "is a coroutine function", "not an `async def` function"),
    "stub": ('''
async def process_all(items, cpu_work, executor):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("code", [REFERENCE, WRAP_FUTURE], ids=["run_in_executor", "wrap_future"])
@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(code, variant):
    started = time.perf_counter()
    report = check(define(code, "process_all"), variant=variant)
    assert report.passed, report.text()
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'called on the loop': 'blocked the loop',
    'called on the loop (same call, other property)': 'ran on the loop',
    'one at a time': 'one at a time',
    'batches': 'in batches',
    'everything in one call': 'one call for many items',
    'to_thread instead of the executor': 'ran outside the executor',
    'blocking future.result()': 'blocked the loop',
    'executor.map': 'blocked the loop',
    'concurrent.futures.wait': 'blocked the loop',
    'forgotten await': 'forgotten await',
    'results reordered': 'results out of order',
    'time.sleep': 'blocked the loop',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "process_all"))
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["called on the loop", "one at a time", "batches",
                                  "blocking future.result()", "to_thread instead of the executor"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "process_all"), variant="hidden")
    assert prop in failed_props(report), report.text()


@pytest.mark.parametrize("name", ["one at a time", "blocking future.result()"])
def test_report_text_is_deterministic(name):
    fn = define(WRONG[name][0], "process_all")
    assert check(fn).text() == check(fn).text()
