"""The pitfall checks pass the reference and reject the bugs lesson 09 is about."""

from __future__ import annotations

import asyncio

import pytest

from asynclab.checks import check
from asynclab.fakes import LegacyDirectory
from conftest import assert_diagnosed, define, failed_props

LOOKUP = '''
import asyncio

async def lookup_all(keys, legacy_lookup):
    return list(await asyncio.gather(*(asyncio.to_thread(legacy_lookup, k) for k in keys)))
'''

LOOKUP_EXECUTOR = '''
import asyncio

async def lookup_all(keys, legacy_lookup):
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(None, legacy_lookup, k) for k in keys]
    return [await f for f in futures]
'''

GUARDED = '''
async def guarded_work(job, cleanup):
    try:
        return await job()
    finally:
        await cleanup()
'''

GUARDED_EXCEPT_RAISE = '''
import asyncio

async def guarded_work(job, cleanup):
    try:
        result = await job()
    except BaseException:
        await cleanup()
        raise
    await cleanup()
    return result
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG_LOOKUP = {
    "executor.map on the loop's thread": ('''
from concurrent.futures import ThreadPoolExecutor

async def lookup_all(keys, legacy_lookup):
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        return list(pool.map(legacy_lookup, keys))
''', "never blocks the event loop", "a wait for another thread in lookup_all(), line 6"),
    "future.result() in a comprehension": ('''
from concurrent.futures import ThreadPoolExecutor

async def lookup_all(keys, legacy_lookup):
    pool = ThreadPoolExecutor(max_workers=8)
    futures = [pool.submit(legacy_lookup, key) for key in keys]
    return [future.result() for future in futures]
''', "never blocks the event loop", "a wait for another thread in lookup_all(), line 7"),
    "run_in_executor futures waited with concurrent.futures.wait": ('''
import concurrent.futures

async def lookup_all(keys, legacy_lookup):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    futures = [pool.submit(legacy_lookup, key) for key in keys]
    concurrent.futures.wait(futures)
    return [future.result() for future in futures]
''', "never blocks the event loop", "a wait for another thread in lookup_all(), line 7"),
    "blocking call on the loop": ('''
async def lookup_all(keys, legacy_lookup):
    return [legacy_lookup(k) for k in keys]
''', "never blocks the event loop", "legacy_lookup() in lookup_all(), line 3"),
    "wrapped in a coroutine, still blocking": ('''
import asyncio

async def lookup_all(keys, legacy_lookup):
    async def one(key):
        return legacy_lookup(key)
    return await asyncio.gather(*(one(k) for k in keys))
''', "never blocks the event loop", "legacy_lookup() in one()"),
    "threads one after another": ('''
import asyncio

async def lookup_all(keys, legacy_lookup):
    return [await asyncio.to_thread(legacy_lookup, k) for k in keys]
''', "lookups run at the same time", "not all at the same time"),
    "a dict instead of a list": ('''
import asyncio

async def lookup_all(keys, legacy_lookup):
    values = await asyncio.gather(*(asyncio.to_thread(legacy_lookup, k) for k in keys))
    return dict(zip(keys, values))
''', "values in key order", "returned {'ada': 'value of ada'"),
    "forgotten await": ('''
import asyncio

async def lookup_all(keys, legacy_lookup):
    return [asyncio.to_thread(legacy_lookup, k) for k in keys]
''', "every coroutine awaited", "forgotten `await`"),
    "stub": ('''
async def lookup_all(keys, legacy_lookup):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}

WRONG_GUARDED = {
    "swallowed cancellation": ('''
import asyncio

async def guarded_work(job, cleanup):
    try:
        return await job()
    except asyncio.CancelledError:
        await cleanup()
        return None
''', "cancellation propagates", "returned None: the CancelledError was swallowed"),
    "bare except": ('''
async def guarded_work(job, cleanup):
    try:
        result = await job()
    except:
        result = None
    await cleanup()
    return result
''', "a timeout around it works", "did not fire"),
    "retry on any error": ('''
async def guarded_work(job, cleanup):
    while True:
        try:
            result = await job()
            break
        except BaseException:
            continue
    await cleanup()
    return result
''', "cancellation propagates", "the CancelledError was swallowed"),
    "cleanup only on errors": ('''
async def guarded_work(job, cleanup):
    try:
        result = await job()
    except Exception:
        await cleanup()
        raise
    await cleanup()
    return result
''', "cleanup runs on cancellation", "never ran cleanup"),
    "no cleanup after an error": ('''
import asyncio

async def guarded_work(job, cleanup):
    try:
        result = await job()
    except asyncio.CancelledError:
        await cleanup()
        raise
    await cleanup()
    return result
''', "cleanup after an error, error passed on", "never ran cleanup"),
    "error swallowed": ('''
async def guarded_work(job, cleanup):
    try:
        return await job()
    except Exception:
        return None
    finally:
        await cleanup()
''', "cleanup after an error, error passed on", "the job's error was swallowed"),
    "cleanup left to a background task": ('''
import asyncio

async def guarded_work(job, cleanup):
    try:
        return await job()
    finally:
        asyncio.create_task(cleanup())
''', "result and cleanup", "returned the job's result, but never ran cleanup before returning"),
    "forgotten await on cleanup": ('''
async def guarded_work(job, cleanup):
    try:
        return await job()
    finally:
        cleanup()
''', "every coroutine awaited", "never awaited"),
    "time.sleep in cleanup path": ('''
import time

async def guarded_work(job, cleanup):
    try:
        return await job()
    finally:
        time.sleep(0.1)
        await cleanup()
''', "never blocks the event loop", "time.sleep(0.1) in guarded_work()"),
    "stub": ('''
async def guarded_work(job, cleanup):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


DIAGNOSIS = {
    "executor.map on the loop's thread": "blocked the loop",
    "future.result() in a comprehension": "blocked the loop",
    "run_in_executor futures waited with concurrent.futures.wait": "blocked the loop",
    'blocking call on the loop': 'blocked the loop',
    'wrapped in a coroutine, still blocking': 'blocked the loop',
    'threads one after another': 'one after another',
    'a dict instead of a list': 'wrong results',
    'forgotten await': 'forgotten await',
    'stub': 'not written',
    'swallowed cancellation': 'swallowed cancellation',
    'bare except': 'swallowed cancellation',
    'retry on any error': 'swallowed cancellation',
    'cleanup only on errors': 'no cleanup on cancellation',
    'no cleanup after an error': 'no cleanup after an error',
    'error swallowed': 'error swallowed',
    'cleanup left to a background task': 'no cleanup',
    'forgotten await on cleanup': 'forgotten await',
    'time.sleep in cleanup path': 'blocked the loop',
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [LOOKUP, LOOKUP_EXECUTOR], ids=["to_thread", "run_in_executor"])
@pytest.mark.parametrize("seed", [None, 4])
def test_lookup_references_pass(code, variant, seed):
    report = check(define(code, "lookup_all"), variant=variant, seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [GUARDED, GUARDED_EXCEPT_RAISE], ids=["finally", "except-raise"])
@pytest.mark.parametrize("seed", [None, 4])
def test_guarded_references_pass(code, variant, seed):
    report = check(define(code, "guarded_work"), variant=variant, seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG_LOOKUP))
def test_wrong_lookup_is_rejected(name):
    code, prop, fragment = WRONG_LOOKUP[name]
    report = check(define(code, "lookup_all"))
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


def test_a_lookup_on_the_loop_thread_never_waits_at_the_barrier():
    """Called on the loop's thread, the fake returns at once: it must not freeze the check's loop.

    Had it waited, the barrier (2 parties, one caller) would have timed out and broken.
    """
    directory = LegacyDirectory(parties=2)

    async def on_the_loop():
        return directory.lookup("ada")

    assert asyncio.run(on_the_loop()) == "value of ada"
    assert directory.on_loop == 1 and not directory.overlapped
    assert not directory.barrier.broken and directory.barrier.n_waiting == 0


@pytest.mark.parametrize("name", sorted(WRONG_GUARDED))
def test_wrong_guarded_work_is_rejected(name):
    code, prop, fragment = WRONG_GUARDED[name]
    report = check(define(code, "guarded_work"))
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["swallowed cancellation", "bare except", "error swallowed"])
def test_hidden_variant_rejects_too(name):
    code, prop, _ = WRONG_GUARDED[name]
    assert prop in failed_props(check(define(code, "guarded_work"), variant="hidden"))
