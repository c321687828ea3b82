"""The send_reminders check passes tasks and rejects threads, sequences and blocking sleeps."""

from __future__ import annotations

import threading
import time

import pytest

from asynclab.checks import check
from asynclab.checks.nb17_threads_vs_coroutines import NoThreads, scenario
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def send_reminders(due, send):
    async def remind(user, delay):
        await asyncio.sleep(delay)
        await send(user)

    async with asyncio.TaskGroup() as tg:
        for user, delay in due.items():
            tg.create_task(remind(user, delay))
    return len(due)
'''

# Also right: gather, and a single scheduler task that sleeps until the next due time and starts
# each send as a task of its own (fewer timers; sends still overlap).
CORRECT = {
    "gather": '''
import asyncio

async def send_reminders(due, send):
    async def remind(user):
        await asyncio.sleep(due[user])
        await send(user)
    await asyncio.gather(*(remind(u) for u in due))
    return len(due)
''',
    "one scheduler, sends as tasks": '''
import asyncio

async def send_reminders(due, send):
    loop = asyncio.get_running_loop()
    start = loop.time()
    sending = []
    for user, delay in sorted(due.items(), key=lambda item: item[1]):
        await asyncio.sleep(start + delay - loop.time())
        sending.append(asyncio.create_task(send(user)))
    await asyncio.gather(*sending)
    return len(sending)
''',
}

WRONG = {
    "a thread per wait (to_thread)": ('''
import asyncio, time

async def send_reminders(due, send):
    async def remind(user, delay):
        await asyncio.to_thread(time.sleep, delay)
        await send(user)
    await asyncio.gather(*(remind(u, d) for u, d in due.items()))
    return len(due)
''', "no thread for the waits", "the first in remind(), line 6"),
    "threading.Timer per user": ('''
import asyncio, threading

async def send_reminders(due, send):
    loop = asyncio.get_running_loop()
    done = []
    for user, delay in due.items():
        timer = threading.Timer(delay, lambda u=user: done.append(u))
        timer.start()
    for user in due:
        await send(user)
    return len(due)
''', "no thread for the waits", "the first in send_reminders(), line 9"),
    "a big thread pool": ('''
import asyncio, time
from concurrent.futures import ThreadPoolExecutor

async def send_reminders(due, send):
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(due)) as pool:
        async def remind(user, delay):
            await loop.run_in_executor(pool, time.sleep, delay)
            await send(user)
        await asyncio.gather(*(remind(u, d) for u, d in due.items()))
    return len(due)
''', "no thread for the waits", "tried to start 2,000 threads, the first in remind(), line 9"),
    "one after another": ('''
import asyncio

async def send_reminders(due, send):
    for user, delay in due.items():
        await asyncio.sleep(delay)
        await send(user)
    return len(due)
''', "each reminder on time", "late"),
    "one scheduler that awaits each send": ('''
import asyncio

async def send_reminders(due, send):
    loop = asyncio.get_running_loop()
    start = loop.time()
    for user, delay in sorted(due.items(), key=lambda item: item[1]):
        await asyncio.sleep(max(0, start + delay - loop.time()))
        await send(user)
    return len(due)
''', "each reminder on time", "the first, user-716, was due at 64 s and sent at 65 s (1 s late)"),
    "a semaphore around the wait": ('''
import asyncio

async def send_reminders(due, send):
    sem = asyncio.Semaphore(100)
    async def remind(user, delay):
        async with sem:
            await asyncio.sleep(delay)
            await send(user)
    await asyncio.gather(*(remind(u, d) for u, d in due.items()))
    return len(due)
''', "each reminder on time", "late"),
    "fire and forget": ('''
import asyncio

async def send_reminders(due, send):
    async def remind(user, delay):
        await asyncio.sleep(delay)
        await send(user)
    for user, delay in due.items():
        asyncio.create_task(remind(user, delay))
    return len(due)
''', "returns when the last reminder is sent", "it returned at 0 s, when 0 of 2,000"),
    "blocking sleep": ('''
import asyncio, time

async def send_reminders(due, send):
    time.sleep(0.01)
    async def remind(user, delay):
        await asyncio.sleep(delay)
        await send(user)
    await asyncio.gather(*(remind(u, d) for u, d in due.items()))
    return len(due)
''', "never blocks the event loop", "time.sleep(0.01)"),
    "forgotten await on send": ('''
import asyncio

async def send_reminders(due, send):
    async def remind(user, delay):
        await asyncio.sleep(delay)
        send(user)
    await asyncio.gather(*(remind(u, d) for u, d in due.items()))
    return len(due)
''', "every coroutine awaited", "never awaited"),
    "returns nothing": (REFERENCE.replace("    return len(due)\n", ""),
                        "returns the number sent", "it returned None; 2,000 reminders were due"),
    "stub": ('''
async def send_reminders(due, send):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
    "not async": ('''
def send_reminders(due, send):
    return len(due)
''', "is a coroutine function", "plain function"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("name", ["reference", *sorted(CORRECT)])
def test_correct_solutions_pass(name, variant):
    code = REFERENCE if name == "reference" else CORRECT[name]
    report = check(define(code, "send_reminders"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'a thread per wait (to_thread)': 'a thread per wait',
    'threading.Timer per user': 'a thread per wait',
    'a big thread pool': 'a thread per wait',
    'one after another': 'waits one after another',
    'one scheduler that awaits each send': 'sends delay later waits',
    'a semaphore around the wait': 'waits one after another',
    'fire and forget': 'fire and forget',
    'blocking sleep': 'blocked the loop',
    'forgotten await on send': 'forgotten await',
    'returns nothing': 'wrong count',
    'stub': 'not written',
    'not async': 'not async',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "send_reminders"))
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["a thread per wait (to_thread)", "one after another",
                                  "one scheduler that awaits each send", "fire and forget"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "send_reminders"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_thread_using_solutions_fail_fast_and_leave_no_thread_behind():
    before = threading.active_count()
    started = time.perf_counter()
    for name in ("a thread per wait (to_thread)", "threading.Timer per user", "a big thread pool"):
        check(define(WRONG[name][0], "send_reminders"))
    # Proves no real sleeping, not speed: the reminders are due 60 s to an hour from the start,
    # so a check that waited for real would take minutes; a loaded machine takes seconds.
    assert time.perf_counter() - started < 55.0
    assert threading.active_count() == before


def test_no_threads_refuses_only_other_threads():
    result = []
    with NoThreads() as guard:
        own = threading.Thread(target=lambda: result.append("caller's own thread ran"))
        own.start()
        own.join()
    assert result and not guard.refused
    assert threading.Thread.start is NoThreads().__dict__["_original"]


def test_scenarios_have_a_batch_and_distinct_users():
    for variant, seed in (("public", None), ("hidden", None), ("hidden", 1), ("hidden", 2)):
        sc = scenario(variant, seed)
        assert sum(1 for t in sc.due.values() if t == sc.batch_at) >= 30
        assert len(sc.due) > 1_000


def test_report_text_is_deterministic():
    fn = define(WRONG["one scheduler that awaits each send"][0], "send_reminders")
    assert check(fn).text() == check(fn).text()


def test_a_stub_gets_only_not_written_yet():
    report = check(define(WRONG["stub"][0], "send_reminders"))
    assert [(f.prop, f.passed) for f in report.findings] == [("written", False)], report.text()
