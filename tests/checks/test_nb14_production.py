"""The graceful-shutdown check passes the reference and rejects what learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import define, failed_props

REFERENCE = '''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s):
    in_flight = set()
    stopping = asyncio.create_task(stop.wait())
    while True:
        getting = asyncio.create_task(requests.get())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            getting.cancel()
            if getting.done() and not getting.cancelled():
                requests.put_nowait(getting.result())
            break
        in_flight.add(asyncio.create_task(handle(getting.result())))
    cancelled = 0
    if in_flight:
        _, pending = await asyncio.wait(in_flight, timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        cancelled = len(pending)
    return {"completed": len(in_flight) - cancelled, "cancelled": cancelled,
            "not_started": requests.qsize()}
'''


def variant_of(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


WRONG = {
    "never stops": ('''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s):
    while True:
        request = await requests.get()
        asyncio.create_task(handle(request))
''', "finishes", "deadlock"),
    "cancels at once, no drain": (variant_of(
        "await asyncio.wait(in_flight, timeout=drain_timeout_s)",
        "await asyncio.wait(in_flight, timeout=0)"),
        "in-flight requests are drained", "could finish before the drain deadline"),
    "drains without a deadline": (variant_of(
        "await asyncio.wait(in_flight, timeout=drain_timeout_s)", "await asyncio.wait(in_flight)"),
        "stragglers cancelled at the deadline", "no drain deadline"),
    "stragglers left running": (variant_of(
        "        for task in pending:\n            task.cancel()\n"
        "        await asyncio.gather(*pending, return_exceptions=True)\n", ""),
        "stragglers cancelled at the deadline", "still running when serve returned"),
    "handles one request at a time": (variant_of(
        "        in_flight.add(asyncio.create_task(handle(getting.result())))",
        "        task = asyncio.create_task(handle(getting.result()))\n        in_flight.add(task)\n"
        "        await asyncio.wait({task})"),
        "handles requests concurrently", "was never started"),
    "time.sleep while draining": (variant_of("    cancelled = 0\n", "    cancelled = 0\n    time.sleep(0.1)\n")
                                  .replace("import asyncio", "import asyncio, time"),
                                  "never blocks the event loop", "time.sleep(0.1) in serve()"),
    "stub": ('''
async def serve(requests, handle, stop, drain_timeout_s):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "serve"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_shutdown_is_rejected(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "serve"))
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()
