"""The graceful-shutdown check passes the reference and rejects what learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from asynclab.checks.nb19_production import scenarios
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    in_flight = set()
    stopping = asyncio.create_task(stop.wait())
    try:
        while True:
            getting = asyncio.create_task(requests.get())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                getting.cancel()
                if getting.done() and not getting.cancelled():
                    requests.put_nowait(getting.result())
                break
            in_flight.add(asyncio.create_task(handle(getting.result())))
        pending = set()
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await cleanup()
    failed = sum(1 for t in in_flight if not t.cancelled() and t.exception() is not None)
    return {"completed": len(in_flight) - len(pending) - failed, "failed": failed,
            "cancelled": len(pending), "not_started": requests.qsize()}
'''

# Another correct design: a taker task that is cancelled at the signal, a timeout around the
# drain, and outcomes counted from the tasks.
ALTERNATIVE = '''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    tasks = []

    async def take():
        while True:
            request = await requests.get()
            tasks.append(asyncio.create_task(handle(request)))

    taker = asyncio.create_task(take())
    await stop.wait()
    taker.cancel()
    try:
        await taker
    except asyncio.CancelledError:
        pass
    running = [t for t in tasks if not t.done()]
    if running:
        await asyncio.wait(running, timeout=drain_timeout_s)
    for t in tasks:
        t.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await cleanup()
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    failed = sum(isinstance(o, Exception) for o in outcomes)
    return {"completed": len(tasks) - cancelled - failed, "failed": failed,
            "cancelled": cancelled, "not_started": requests.qsize()}
'''


def variant_of(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


WRONG = {
    "cancels the stragglers but does not wait for them": (REFERENCE.replace(
        "        await asyncio.gather(*pending, return_exceptions=True)\n", ""),
        "cleans up after the last request", "while 1 request(s) were still running"),
    "drains the stragglers one after another": (REFERENCE.replace('''        pending = set()
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)''', '''        pending = set()
        for task in list(in_flight):
            try:
                await asyncio.wait_for(task, drain_timeout_s)
            except TimeoutError:
                pending.add(task)
            except Exception:
                pass'''), "stragglers cancelled at the deadline", "after the deadline (5 s)"),
    "never stops": ('''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    while True:
        request = await requests.get()
        asyncio.create_task(handle(request))
''', "finishes", "deadlock"),
    "checks stop only between requests": ('''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    tasks = []
    while not stop.is_set():
        request = await requests.get()
        tasks.append(asyncio.create_task(handle(request)))
    done, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await cleanup()
    failed = sum(1 for t in done if t.exception() is not None)
    return {"completed": len(done) - failed, "failed": failed, "cancelled": len(pending),
            "not_started": requests.qsize()}
''', "stops accepting at the signal", "req-6 was started at 6 s, after the stop signal at 5.55 s"),
    "polls the stop event with a timeout": ('''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    tasks = []
    while not stop.is_set():
        try:
            request = await asyncio.wait_for(requests.get(), timeout=0.1)
        except TimeoutError:
            continue
        tasks.append(asyncio.create_task(handle(request)))
    done, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await cleanup()
    failed = sum(1 for t in done if t.exception() is not None)
    return {"completed": len(done) - failed, "failed": failed, "cancelled": len(pending),
            "not_started": requests.qsize()}
''', "stragglers cancelled at the deadline", "req-2 was cancelled at 8.6 s, not at the drain deadline (5.55 + 3 = 8.55 s)"),
    "cancels at once, no drain": (variant_of(
        "await asyncio.wait(in_flight, timeout=drain_timeout_s)",
        "await asyncio.wait(in_flight, timeout=0)"),
        "in-flight requests are drained", "req-5 could finish by the drain deadline (8.55 s) but "
                                          "was cancelled at 5.55 s"),
    "drains without a deadline": (variant_of(
        "await asyncio.wait(in_flight, timeout=drain_timeout_s)", "await asyncio.wait(in_flight)"),
        "stragglers cancelled at the deadline", "req-2 ran to its end at 12 s: no drain deadline"),
    "stragglers left running": (variant_of(
        "        for task in pending:\n            task.cancel()\n"
        "        await asyncio.gather(*pending, return_exceptions=True)\n", "")
        .replace("if not t.cancelled() and t.exception()", "if t.done() and t.exception()"),
        "stragglers cancelled at the deadline", "req-2 was still running when serve returned"),
    "sleeps out the whole drain timeout": (variant_of(
        "            _, pending = await asyncio.wait(in_flight, timeout=drain_timeout_s)",
        "            await asyncio.sleep(drain_timeout_s)\n"
        "            pending = {t for t in in_flight if not t.done()}"),
        "returns as soon as the work is drained", "ended at 4.5 s, but serve returned at 8.25 s"),
    "handles one request at a time": (variant_of(
        "            in_flight.add(asyncio.create_task(handle(getting.result())))",
        "            task = asyncio.create_task(handle(getting.result()))\n"
        "            in_flight.add(task)\n            await asyncio.wait({task})"),
        "handles requests concurrently", "req-3 arrived at 3 s but was never started"),
    "a TaskGroup for the requests": ('''
import asyncio

async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    async with asyncio.TaskGroup() as tg:
        stopping = asyncio.create_task(stop.wait())
        while True:
            getting = asyncio.create_task(requests.get())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                getting.cancel()
                break
            tg.create_task(handle(getting.result()))
    await cleanup()
    return {}
''', "a failing request does not stop the server", "ServiceError: req-1 is unavailable"),
    "cleanup before the drain": (variant_of(
        "        pending = set()\n", "        await cleanup()\n        pending = set()\n")
        .replace("    finally:\n        await cleanup()\n", "    finally:\n        pass\n"),
        "cleans up after the last request", "cleanup ran at 5.55 s while 2 request(s) were "
                                            "still running"),
    "forgets the cleanup": (variant_of("        await cleanup()\n", "        pass\n"),
                            "cleans up after the last request", "cleanup was never called"),
    "cleanup not awaited": (variant_of("        await cleanup()\n", "        cleanup()\n"),
                            "every coroutine awaited", "never awaited"),
    "failures counted as completed": (variant_of(
        "    failed = sum(1 for t in in_flight if not t.cancelled() and t.exception() is not None)",
        "    failed = 0"), "returns the counts", "'completed': 5, 'failed': 0"),
    "time.sleep while draining": (variant_of("        pending = set()\n",
                                             "        pending = set()\n        time.sleep(0.1)\n")
                                  .replace("import asyncio", "import asyncio, time"),
                                  "never blocks the event loop", "time.sleep(0.1) in serve()"),
    "stub": ('''
async def serve(requests, handle, stop, drain_timeout_s, cleanup):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


DIAGNOSIS = {
    'cancels the stragglers but does not wait for them': 'cancelled but not awaited',
    'drains the stragglers one after another': 'stragglers drained one after another',
    'never stops': 'waits forever',
    'checks stop only between requests': 'accepts after the signal',
    'polls the stop event with a timeout': 'deadline measured late',
    'cancels at once, no drain': 'no drain',
    'drains without a deadline': 'no drain deadline',
    'stragglers left running': 'stragglers left running',
    'sleeps out the whole drain timeout': 'sits out the drain timeout',
    'handles one request at a time': 'one at a time',
    'a TaskGroup for the requests': 'stopped by a failure',
    'cleanup before the drain': 'cleanup before the drain',
    'forgets the cleanup': 'cleanup never awaited',
    'cleanup not awaited': 'forgotten await',
    'failures counted as completed': 'wrong counts',
    'time.sleep while draining': 'blocked the loop',
    'stub': 'not written',
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, ALTERNATIVE], ids=["reference", "alternative"])
@pytest.mark.parametrize("seed", [None, 21, 22])
def test_correct_shutdowns_pass(code, variant, seed):
    report = check(define(code, "serve"), variant=variant, seed=seed)
    assert report.passed, report.text()
    assert len(report.findings) == 9


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_shutdown_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "serve"))
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["checks stop only between requests", "drains without a deadline",
                                  "stragglers left running", "sleeps out the whole drain timeout",
                                  "cleanup before the drain", "a TaskGroup for the requests",
                                  "drains the stragglers one after another"])
@pytest.mark.parametrize("seed", [None, 21, 22])
def test_hidden_variant_rejects_them_too(name, seed):
    code, prop, _ = WRONG[name]
    report = check(define(code, "serve"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()


def test_scenarios_are_unambiguous():
    """No request arrives during the cleanup or exactly at the stop or the deadline."""
    from asynclab.checks.nb19_production import CLEANUP_S
    for variant, seed in (("public", None), ("hidden", None), ("hidden", 21), ("hidden", 22),
                          ("hidden", 23)):
        for sc in scenarios(variant, seed):
            end = sc.drained_at()
            for at in sc.arrivals.values():
                assert not end < at <= end + CLEANUP_S
                assert at not in (sc.stop_at, sc.deadline)
        main, _, several = scenarios(variant, seed)
        assert len(several.expected()["cancelled"]) >= 2
        counts = main.counts()
        assert all(counts[k] >= 1 for k in counts), counts


def test_report_text_is_deterministic():
    fn = define(WRONG["drains without a deadline"][0], "serve")
    assert check(fn).text() == check(fn).text()


def test_a_stub_gets_only_not_written_yet():
    report = check(define(WRONG["stub"][0], "serve"))
    assert [(f.prop, f.passed) for f in report.findings] == [("written", False)], report.text()
