"""The run_with_heartbeat check passes the reference and rejects what learners really write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from conftest import define, failed_props

REFERENCE = '''
import asyncio

async def run_with_heartbeat(work, beat, interval_s):
    async def heartbeat():
        while True:
            await beat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
'''

# Sleeping first and beating after is a heartbeat too: never silent longer than interval_s.
SLEEP_FIRST = '''
import asyncio
import contextlib

async def run_with_heartbeat(work, beat, interval_s):
    async def heartbeat():
        while True:
            await asyncio.sleep(interval_s)
            await beat()

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
'''

HEARTBEAT = '''
import asyncio

async def heartbeat(beat, interval_s):
    while True:
        await beat()
        await asyncio.sleep(interval_s)
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "awaits the heartbeat loop itself": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    await heartbeat(beat, interval_s)
    return await work()
''', "finishes", "awaited the endless heartbeat loop itself"),
    "gathers the work with the endless heartbeat": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    result, _ = await asyncio.gather(work(), heartbeat(beat, interval_s))
    return result
''', "finishes", "work() finished after 9 s, but run_with_heartbeat never returned"),
    "never cancelled": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    asyncio.create_task(heartbeat(beat, interval_s))
    return await work()
''', "heartbeat stopped after the work", "beat() was called 3 more times afterwards"),
    "cancelled but not awaited": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    task = asyncio.create_task(heartbeat(beat, interval_s))
    result = await work()
    task.cancel()
    return result
''', "heartbeat stopped after the work", "cancelled but not awaited"),
    "no finally: leaks when the work fails": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    task = asyncio.create_task(heartbeat(beat, interval_s))
    result = await work()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return result
''', "heartbeat stopped when the work fails", "still running when run_with_heartbeat returned"),
    "awaits the cancelled task without catching CancelledError": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    task = asyncio.create_task(heartbeat(beat, interval_s))
    try:
        return await work()
    finally:
        task.cancel()
        await task
''', "runs without error", "raised CancelledError"),
    "catches Exception around the cancelled task": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    task = asyncio.create_task(heartbeat(beat, interval_s))
    try:
        return await work()
    finally:
        task.cancel()
        try:
            await task
        except Exception:
            pass
''', "runs without error", "CancelledError is not an Exception"),
    "heartbeat started after the work": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    result = await work()
    task = asyncio.create_task(heartbeat(beat, interval_s))
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return result
''', "heartbeat runs during the work", "beat() was never called during the 9 s of work"),
    "stops with a flag instead of cancelling": ('''
import asyncio

async def run_with_heartbeat(work, beat, interval_s):
    running = True

    async def heartbeat():
        while running:
            await beat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        running = False
        await task
''', "returns when the work is done", "returned 1 s after work() had finished"),
    "swallows the work's error": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    task = asyncio.create_task(heartbeat(beat, interval_s))
    try:
        return await work()
    except Exception:
        return None
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
''', "the work's error reaches the caller", "returned None: the caller never learns"),
    "time.sleep between beats": ('''
import asyncio, time

async def run_with_heartbeat(work, beat, interval_s):
    async def heartbeat():
        while True:
            await beat()
            time.sleep(interval_s)

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
''', "never blocks the event loop", "time.sleep(2.0) in heartbeat()"),
    "forgotten await on beat": ('''
import asyncio

async def run_with_heartbeat(work, beat, interval_s):
    async def heartbeat():
        while True:
            beat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
''', "every coroutine awaited", "coroutine 'beat' was never awaited"),
    "returns the work's coroutine": (HEARTBEAT + '''
async def run_with_heartbeat(work, beat, interval_s):
    return work()
''', "returns a value, not an awaitable", "returned a coroutine object work()"),
    "not async": ('''
def run_with_heartbeat(work, beat, interval_s):
    return None
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def run_with_heartbeat(work, beat, interval_s):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, SLEEP_FIRST], ids=["reference", "sleep first"])
def test_correct_solutions_pass(code, variant):
    report = check(define(code, "run_with_heartbeat"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'awaits the heartbeat loop itself': 'awaits the endless loop',
    'gathers the work with the endless heartbeat': 'waits for the endless loop',
    'never cancelled': 'heartbeat never cancelled',
    'cancelled but not awaited': 'cancelled but not awaited',
    'no finally: leaks when the work fails': 'no finally',
    'awaits the cancelled task without catching CancelledError': 'cancellation not caught',
    'catches Exception around the cancelled task': 'cancellation not caught',
    'heartbeat started after the work': 'heartbeat never beats',
    'stops with a flag instead of cancelling': 'stops late',
    "swallows the work's error": 'error swallowed',
    'time.sleep between beats': 'blocked the loop',
    'forgotten await on beat': 'forgotten await',
    "returns the work's coroutine": 'returned an awaitable',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    started = time.perf_counter()
    report = check(define(code, "run_with_heartbeat"))
    assert time.perf_counter() - started < 10.0, "a check must not wait for real time"  # generous: proves no real waiting, not speed
    assert not report.passed
    failed = failed_props(report)
    props = [f.prop for f in report.findings]
    assert len(props) == len(set(props)), report.text()
    assert prop in failed, report.text()
    assert DIAGNOSIS[name] in report.diagnoses, (report.diagnoses, report.text())
    assert fragment in failed[prop] + report.text(), report.text()


@pytest.mark.parametrize("name", ["never cancelled", "no finally: leaks when the work fails",
                                  "gathers the work with the endless heartbeat"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "run_with_heartbeat"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_a_heartbeat_that_never_waits_is_reported_not_hung():
    code = '''
import asyncio

async def run_with_heartbeat(work, beat, interval_s):
    async def heartbeat():
        while True:
            await beat()

    task = asyncio.create_task(heartbeat())
    try:
        return await work()
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
'''
    report = check(define(code, "run_with_heartbeat"))
    assert "never really waits" in failed_props(report)["heartbeat waits between beats"]


def test_a_task_cancelled_before_it_started_is_not_a_forgotten_await():
    report = check(define(WRONG["heartbeat started after the work"][0], "run_with_heartbeat"))
    assert "every coroutine awaited" not in failed_props(report), report.text()


def test_report_text_is_deterministic():
    fn = define(WRONG["never cancelled"][0], "run_with_heartbeat")
    assert check(fn).text() == check(fn).text()
