"""The pitfall checks pass the reference and reject the bugs lesson 08 is about."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import define, failed_props

LOOKUP = '''
import asyncio

async def lookup_all(keys, legacy_lookup):
    return list(await asyncio.gather(*(asyncio.to_thread(legacy_lookup, k) for k in keys)))
'''

GUARDED = '''
async def guarded_work(job, cleanup):
    try:
        return await job()
    finally:
        await cleanup()
'''

WRONG_LOOKUP = {
    "blocking call on the loop": ('''
async def lookup_all(keys, legacy_lookup):
    return [legacy_lookup(k) for k in keys]
''', "never blocks the event loop", "legacy_lookup() in"),
    "threads one after another": ('''
import asyncio

async def lookup_all(keys, legacy_lookup):
    return [await asyncio.to_thread(legacy_lookup, k) for k in keys]
''', "lookups run at the same time", "one after another"),
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
''', "cancellation propagates", "the CancelledError was swallowed"),
    "bare except": ('''
async def guarded_work(job, cleanup):
    try:
        result = await job()
    except:
        result = None
    await cleanup()
    return result
''', "a timeout around it works", "did not fire"),
    "cleanup only on errors": ('''
async def guarded_work(job, cleanup):
    try:
        result = await job()
    except Exception:
        await cleanup()
        raise
    await cleanup()
    return result
''', "cleanup runs on cancellation", "ran cleanup 0 time(s)"),
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


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_references_pass(variant):
    for code, name in ((LOOKUP, "lookup_all"), (GUARDED, "guarded_work")):
        report = check(define(code, name), variant=variant)
        assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG_LOOKUP))
def test_wrong_lookup_is_rejected(name):
    code, prop, fragment = WRONG_LOOKUP[name]
    failed = failed_props(check(define(code, "lookup_all")))
    assert prop in failed and fragment in failed[prop], failed


@pytest.mark.parametrize("name", sorted(WRONG_GUARDED))
def test_wrong_guarded_work_is_rejected(name):
    code, prop, fragment = WRONG_GUARDED[name]
    failed = failed_props(check(define(code, "guarded_work")))
    assert prop in failed and fragment in failed[prop], failed
