"""The send_reminders check passes tasks and rejects threads, sequences and blocking sleeps."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import define, failed_props

REFERENCE = '''
import asyncio

async def send_reminders(user_ids, delay_s, send):
    async def remind(user):
        await asyncio.sleep(delay_s)
        await send(user)

    async with asyncio.TaskGroup() as tg:
        for user in user_ids:
            tg.create_task(remind(user))
'''

WRONG = {
    "a thread per wait": ('''
import asyncio, time

async def send_reminders(user_ids, delay_s, send):
    async def remind(user):
        await asyncio.to_thread(time.sleep, 0)
        await asyncio.sleep(delay_s)
        await send(user)
    await asyncio.gather(*(remind(u) for u in user_ids))
''', "no thread per wait", "started for 2,000 waits"),
    "one after another": ('''
import asyncio

async def send_reminders(user_ids, delay_s, send):
    for user in user_ids[:3]:
        await asyncio.sleep(delay_s)
        await send(user)
    await asyncio.gather(*(send(u) for u in user_ids[3:]))
''', "all waits overlap", "went out at another time"),
    "blocking sleep": ('''
import asyncio, time

async def send_reminders(user_ids, delay_s, send):
    time.sleep(0.01)
    async def remind(user):
        await asyncio.sleep(delay_s)
        await send(user)
    await asyncio.gather(*(remind(u) for u in user_ids))
''', "never blocks the event loop", "time.sleep(0.01)"),
    "forgotten await on send": ('''
import asyncio

async def send_reminders(user_ids, delay_s, send):
    async def remind(user):
        await asyncio.sleep(delay_s)
        send(user)
    await asyncio.gather(*(remind(u) for u in user_ids))
''', "every user reminded once", "got no reminder"),
    "stub": ('''
async def send_reminders(user_ids, delay_s, send):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "send_reminders"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "send_reminders"))
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()
