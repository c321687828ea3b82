"""The fetch_all_or_nothing check passes the reference and rejects what learners really write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
'''

# Also right: the error re-raised on its own, out of the group; cleanup that logs and re-raises.
UNWRAPPED = '''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        except asyncio.CancelledError:
            print("cancelled:", key)  # cleaning up is fine, as long as it re-raises
            raise
        finally:
            release(key)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(fetch_one(key)) for key in keys]
    except* ConnectionError as group:
        raise group.exceptions[0]
    return dict(zip(keys, (t.result() for t in tasks)))
'''

# Also right, by hand: wait for the first failure, then cancel the rest and wait for them.
BY_HAND = '''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            release(key)

    tasks = [asyncio.create_task(fetch_one(key)) for key in keys]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    return dict(zip(keys, (t.result() for t in tasks)))
'''

GOOD_FETCH_ONE = '''
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            release(key)
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "cancels the others by hand but does not wait for them": (BY_HAND.replace(
        "        await asyncio.wait(tasks)\n", ""),
        "the other fetches are cancelled at once", "nobody waited for them to end"),
    "gather leaves the others running": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
{GOOD_FETCH_ONE}
    return dict(zip(keys, await asyncio.gather(*(fetch_one(k) for k in keys))))
''', "the other fetches are cancelled at once", "were still running (/profile, /orders, /prices "
     "and 2 more): the other fetches were not cancelled"),
    "gather(return_exceptions=True), then raise": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
{GOOD_FETCH_ONE}
    results = await asyncio.gather(*(fetch_one(k) for k in keys), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return dict(zip(keys, results))
''', "the other fetches are cancelled at once", "the other fetches ran to their end"),
    "errors kept as values": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
{GOOD_FETCH_ONE}
    results = await asyncio.gather(*(fetch_one(k) for k in keys), return_exceptions=True)
    return dict(zip(keys, results))
''', "the error reaches the caller", "the error was lost"),
    "except* logs and swallows": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
{GOOD_FETCH_ONE}
    failed = False
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {{key: tg.create_task(fetch_one(key)) for key in keys}}
    except* ConnectionError as group:
        print("failed:", group.exceptions)
        failed = True
    if failed:
        return {{}}
    return {{key: task.result() for key, task in tasks.items()}}
''', "the error reaches the caller", "returned {} although /stock failed: the error was lost"),
    "results read from cancelled tasks": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
{GOOD_FETCH_ONE}
    tasks = [asyncio.create_task(fetch_one(key)) for key in keys]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    return dict(zip(keys, (t.result() for t in tasks)))
''', "the error reaches the caller", "ended with CancelledError instead of the ServiceError"),
    "no finally": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        data = await fetch(key)
        release(key)
        return data

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "every fetch released", "in the run where /stock failed, 6 fetches were never released "
     "(/profile, /orders, /stock and 3 more; 5 cancelled, 1 failed)"),
    "cleanup in except Exception": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            data = await fetch(key)
        except Exception:
            release(key)
            raise
        release(key)
        return data

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "every fetch released", "5 fetches were never released (/profile, /orders, /prices and 2 "
     "more; 5 cancelled)"),
    "released twice": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            data = await fetch(key)
            release(key)
            return data
        finally:
            release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "every fetch released", "was released 2 times for 1 fetch"),
    "released before the fetch ends": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch(key)) for key in keys}
        for key in keys:
            release(key)
    return {key: task.result() for key, task in tasks.items()}
''', "every fetch released", "was released at 0 s, before its fetch ended at 2 s"),
    "a sibling swallows its cancellation and retries": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        for attempt in range(3):
            try:
                return await fetch(key)
            except BaseException:  # "retry on anything"
                await asyncio.sleep(0.1)
            finally:
                release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "cancellation from the caller propagates", "it went on: /profile was fetched at 0.6 s"),
    "a sibling swallows its cancellation forever": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        while True:
            try:
                return await fetch(key)
            except BaseException:  # "keep trying until it works"
                await asyncio.sleep(0.5)
            finally:
                release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "finishes", "in the run where /stock failed"),
    "swallows the caller's cancellation": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            release(key)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    except asyncio.CancelledError:
        return {}
    return {key: task.result() for key, task in tasks.items()}
''', "cancellation from the caller propagates", "the cancellation was swallowed"),
    "sequential": ('''
async def fetch_all_or_nothing(keys, fetch, release):
    results = {}
    for key in keys:
        try:
            results[key] = await fetch(key)
        finally:
            release(key)
    return results
''', "fetches run concurrently", "one at a time: 14 s"),
    "time.sleep in the cleanup": ('''
import asyncio, time

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            time.sleep(0.01)  # "give the pool a moment"
            release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "never blocks the event loop", "time.sleep(0.01) in fetch_one()"),
    "release awaited": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        finally:
            await release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {key: tg.create_task(fetch_one(key)) for key in keys}
    return {key: task.result() for key, task in tasks.items()}
''', "the error reaches the caller", "can't be used in 'await' expression (in fetch_one()"),
    "forgotten await": ('''
async def fetch_all_or_nothing(keys, fetch, release):
    return {key: fetch(key) for key in keys}
''', "every coroutine awaited", "a forgotten `await`"),
    "a per-key coroutine returns None when cancelled": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        except asyncio.CancelledError:
            return None
        finally:
            release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {{key: tg.create_task(fetch_one(key)) for key in keys}}
    return {{key: task.result() for key, task in tasks.items()}}
''', "a cancelled fetch stays cancelled", "its task returned a value instead of ending cancelled"),
    "a per-key coroutine turns cancellation into an error": (f'''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    async def fetch_one(key):
        try:
            return await fetch(key)
        except asyncio.CancelledError:
            raise RuntimeError(f"{{key}} interrupted")
        finally:
            release(key)

    async with asyncio.TaskGroup() as tg:
        tasks = {{key: tg.create_task(fetch_one(key)) for key in keys}}
    return {{key: task.result() for key, task in tasks.items()}}
''', "a cancelled fetch stays cancelled", "its task raised RuntimeError instead of ending cancelled"),
    "returns what it has when cancelled late": ('''
import asyncio

async def fetch_all_or_nothing(keys, fetch, release):
    results = {}

    async def fetch_one(key):
        try:
            results[key] = await fetch(key)
        finally:
            release(key)

    try:
        async with asyncio.TaskGroup() as tg:
            for key in keys:
                tg.create_task(fetch_one(key))
    except asyncio.CancelledError:
        if results:  # some data is better than none
            return results
        raise
    return results
''', "cancellation from the caller propagates", "cancelled by its caller at 2.25 s, it returned"),
    "not async": ('''
def fetch_all_or_nothing(keys, fetch, release):
    return {}
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def fetch_all_or_nothing(keys, fetch, release):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'cancels the others by hand but does not wait for them': 'cancelled but not awaited',
    'gather leaves the others running': 'siblings left running',
    'gather(return_exceptions=True), then raise': 'siblings left running',
    'errors kept as values': 'error swallowed',
    'except* logs and swallows': 'error swallowed',
    'results read from cancelled tasks': 'cancelled instead of failing',
    'no finally': 'never releases',
    'cleanup in except Exception': 'never releases',
    'released twice': 'released twice',
    'released before the fetch ends': 'released too early',
    'a sibling swallows its cancellation and retries': 'swallowed cancellation',
    'a sibling swallows its cancellation forever': 'swallowed cancellation',
    "swallows the caller's cancellation": 'swallowed cancellation',
    'a per-key coroutine returns None when cancelled': 'swallowed cancellation',
    'a per-key coroutine turns cancellation into an error': 'swallowed cancellation',
    'returns what it has when cancelled late': 'swallowed cancellation',
    'sequential': 'one after another',
    'time.sleep in the cleanup': 'blocked the loop',
    'release awaited': 'raised an error',
    'forgotten await': 'forgotten await',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, UNWRAPPED, BY_HAND],
                         ids=["reference", "unwrapped error", "by hand"])
@pytest.mark.parametrize("seed", [None, 3])
def test_right_solutions_pass(code, variant, seed):
    report = check(define(code, "fetch_all_or_nothing"), variant=variant, seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "fetch_all_or_nothing"))
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["gather leaves the others running", "no finally",
                                  "cleanup in except Exception", "swallows the caller's cancellation",
                                  "a sibling swallows its cancellation and retries", "sequential",
                                  "a per-key coroutine returns None when cancelled",
                                  "returns what it has when cancelled late"])
@pytest.mark.parametrize("seed", [None, 5])
def test_hidden_variant_rejects_them_too(name, seed):
    code, prop, _ = WRONG[name]
    report = check(define(code, "fetch_all_or_nothing"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()
    assert DIAGNOSIS[name] in report.diagnoses


@pytest.mark.parametrize("name", ["gather leaves the others running",
                                  "a sibling swallows its cancellation and retries"])
def test_report_text_is_deterministic(name):
    # A TaskGroup cancels its tasks in set order (by address), so siblings that go on after
    # being cancelled restart in a different order from run to run; the report must not change.
    fn = define(WRONG[name][0], "fetch_all_or_nothing")
    texts = {check(fn).text() for _ in range(5)}
    assert len(texts) == 1, texts


def test_a_check_takes_well_under_a_second():
    fn = define(REFERENCE, "fetch_all_or_nothing")
    started = time.perf_counter()
    check(fn)
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed
