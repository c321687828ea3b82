"""Checks for notebook 19_production: a graceful shutdown with a drain deadline and cleanup.

``serve(requests, handle, stop, drain_timeout_s, cleanup)`` is played a small day
at a service on virtual time: requests arrive in a queue, one of them fails,
one is far too slow, and a "SIGTERM" sets ``stop`` while some are in flight;
more requests arrive after it. The check records, on the virtual clock, when
each request started and ended and how, when the cleanup ran and what was
still running then, and when ``serve`` returned, with what was still running
at that moment (the virtual-time runner cancels leftovers afterwards, which
would otherwise hide a server that never cancelled its stragglers).

A second, shorter day has no straggler: every request in flight finishes soon
after the signal, and ``serve`` must then return without waiting out the rest
of the drain timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from asynclab.checking import (Report, describe_error, hidden_rng, observe,
                               require_coroutine_function, safe_findings, varied)
from asynclab.fakes import FakeService, ServiceError

NOTEBOOK = "19_production"
TOLERANCE_S = 1e-3
CLEANUP_S = 0.25  # the fake cleanup (closing a pool) takes this long
KEYS = ("completed", "failed", "cancelled", "not_started")


@dataclass(frozen=True)
class Scenario:
    arrivals: dict[str, float]  # request -> arrival time
    latency_s: dict[str, float]
    failing: tuple[str, ...]  # requests whose handler raises at the end of its latency
    stop_at: float
    drain_timeout_s: float

    @property
    def deadline(self) -> float:
        return self.stop_at + self.drain_timeout_s

    def in_flight_at_stop(self) -> list[str]:
        return [r for r, at in self.arrivals.items()
                if at <= self.stop_at < at + self.latency_s[r]]

    def drained_at(self) -> float:
        """When the drain ends: the last in-flight request's end, or the deadline."""
        ends = [self.arrivals[r] + self.latency_s[r] for r in self.in_flight_at_stop()]
        return min(max(ends, default=self.stop_at), self.deadline)

    def expected(self) -> dict[str, list[str]]:
        """Which requests complete, fail, are cancelled at the deadline, or are never started."""
        out: dict[str, list[str]] = {k: [] for k in KEYS}
        for req, arrived in self.arrivals.items():
            if arrived > self.drained_at() + CLEANUP_S:
                continue  # arrives after serve has returned
            if arrived > self.stop_at:
                out["not_started"].append(req)
            elif arrived + self.latency_s[req] > self.deadline:
                out["cancelled"].append(req)
            elif req in self.failing:
                out["failed"].append(req)
            else:
                out["completed"].append(req)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.expected().items()}


def scenarios(variant: str, seed: int | None = None) -> tuple[Scenario, Scenario, Scenario]:
    """(the main day, with a straggler; a short day whose in-flight work all ends early;
    a day with several stragglers, which must all be cancelled at the same deadline)."""
    if variant == "public":
        latency = [1.0, 1.0, 10.0, 2.0, 1.0, 2.5, 1.0, 1.0]
        main = Scenario({f"req-{i}": float(i) for i in range(8)},
                        {f"req-{i}": t for i, t in enumerate(latency)}, ("req-1",),
                        stop_at=5.55, drain_timeout_s=3.0)
        short = Scenario({"a": 0.0, "b": 1.0, "c": 4.0}, {"a": 0.5, "b": 3.5, "c": 1.0}, (),
                         stop_at=3.0, drain_timeout_s=5.0)
        stragglers = Scenario({"s1": 0.0, "s2": 0.5, "s3": 1.0, "s4": 1.5},
                              {"s1": 30.0, "s2": 0.75, "s3": 30.0, "s4": 30.0}, (),
                              stop_at=2.0, drain_timeout_s=3.0)
        return main, short, stragglers
    rng = hidden_rng(variant, seed)
    return _hidden_main(rng), _hidden_short(rng), _hidden_stragglers(rng)


def _hidden_main(rng: Any) -> Scenario:
    """A day drawn from ``rng`` with the public day's shape (checked, so any seed works)."""
    while True:
        n = rng.randint(8, 11)
        step = rng.choice([0.5, 0.75, 1.0])
        latency = [rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]) for _ in range(n)]
        for i in rng.sample(range(n // 2), rng.randint(1, 2)):
            latency[i] = rng.choice([8.0, 9.0, 12.0])  # stragglers, started early
        arrivals = {f"r{i}": i * step for i in range(n)}
        lat = {f"r{i}": t for i, t in enumerate(latency)}
        failing = tuple(sorted(rng.sample([r for r in lat if lat[r] < 4], 2)))
        stop_at = round(arrivals[f"r{n // 2 + 1}"] + rng.choice([0.05, 0.3, 0.55]), 2)
        sc = Scenario(arrivals, lat, failing, stop_at, rng.choice([1.5, 1.8, 2.5, 3.0]))
        ends = {r: arrivals[r] + lat[r] for r in arrivals}
        flight = sc.in_flight_at_stop()
        if (any(ends[r] < sc.deadline - 0.1 for r in flight)  # one drains in time
                and any(ends[r] > sc.deadline + 0.1 for r in flight)  # one straggles
                and any(at > stop_at for at in arrivals.values())  # some arrive after
                and all(abs(e - sc.deadline) > 0.05 for e in ends.values())
                and not any(sc.drained_at() - 0.05 < at <= sc.drained_at() + CLEANUP_S + 0.05
                            or at in (sc.stop_at, sc.deadline) for at in arrivals.values())):
            return sc


def _hidden_short(rng: Any) -> Scenario:
    stop_at = rng.choice([1.5, 2.0, 3.0])
    drain = rng.choice([4.0, 5.0])
    return Scenario({"x": 0.25, "y": 0.5, "z": stop_at + 1.0},
                    {"x": 1.0, "y": stop_at + rng.choice([0.25, 0.75, 1.5]) - 0.5, "z": 0.5}, (),
                    stop_at=stop_at, drain_timeout_s=drain)


def _hidden_stragglers(rng: Any) -> Scenario:
    count = rng.randint(2, 4)
    arrivals = {f"slow-{i}": i * 0.5 for i in range(count)}
    latency = {r: 40.0 for r in arrivals}
    arrivals["quick"], latency["quick"] = 0.25, 1.0
    return Scenario(arrivals, latency, (), stop_at=count * 0.5 + 0.25,
                    drain_timeout_s=rng.choice([1.5, 2.0, 3.0]))


@dataclass
class Day:
    """What happened when ``serve`` ran through one scenario."""

    service: FakeService
    obs: Any
    returned_at: float | None = None
    running_at_return: tuple[str, ...] = ()
    cancel_asked: tuple[str, ...] = ()  # of those, the ones whose task was told to cancel
    cleanups: tuple[tuple[float, int], ...] = ()  # (start time, handlers running then)
    cleanup_done_at: float | None = None
    cleanup_while_cancelling: int = 0  # handlers told to cancel, not ended, when cleanup began


def play(fn: Any, sc: Scenario) -> Day:
    service = FakeService(sc.latency_s, failures={r: 1 for r in sc.failing})
    day = Day(service, None)
    cleanups: list[tuple[float, int]] = []

    async def cleanup() -> None:
        loop = asyncio.get_running_loop()
        cleanups.append((loop.time(), service.in_flight))
        day.cleanup_while_cancelling = sum(1 for c in service.calls if c.outcome == "running"
                                           and c.task is not None and c.task.cancelling())
        await asyncio.sleep(CLEANUP_S)  # closing a connection pool
        day.cleanup_done_at = loop.time()

    async def run() -> object:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_about_unretrieved)
        requests: asyncio.Queue = asyncio.Queue()
        stop = asyncio.Event()

        async def arrive() -> None:
            for req, at in sorted(sc.arrivals.items(), key=lambda kv: kv[1]):
                await asyncio.sleep(at - loop.time())
                requests.put_nowait(req)

        async def sigterm() -> None:
            await asyncio.sleep(sc.stop_at)
            stop.set()  # what a SIGTERM handler does

        helpers = [asyncio.create_task(arrive(), name="requests arriving"),
                   asyncio.create_task(sigterm(), name="SIGTERM")]
        await asyncio.sleep(0)  # both start now, so that cancelling them later closes them
        try:
            return await fn(requests, service.fetch, stop, sc.drain_timeout_s, cleanup)
        finally:
            day.returned_at = loop.time()
            day.running_at_return = tuple(c.key for c in service.calls if c.outcome == "running")
            day.cancel_asked = tuple(c.key for c in service.calls if c.outcome == "running"
                                     and c.task is not None and c.task.cancelling())
            for task in helpers:
                task.cancel()

    day.obs = observe(run, name="serve", max_virtual_s=600.0,
                      namespaces=(getattr(fn, "__globals__", {}),))
    day.cleanups = tuple(cleanups)
    return day


def _quiet_about_unretrieved(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A learner's task that failed and was never awaited would log a traceback below the
    check's verdict, long after it; the failing request is judged by the check instead."""
    if "never retrieved" not in context.get("message", ""):
        loop.default_exception_handler(context)


def _took_down(error: BaseException | None) -> bool:
    """Did a request's own failure escape from serve (directly or in an ExceptionGroup)?"""
    if isinstance(error, ServiceError):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_took_down(e) for e in error.exceptions)
    return False


@varied
def check_serve(fn, *, variant: str = "public",
                seed: int | None = None) -> Report:
    """Judge ``serve(requests, handle, stop, drain_timeout_s, cleanup)``.

    Properties: each request handled as soon as it arrives (concurrently); a
    failing request does not stop the server; no request started after
    ``stop`` is set; requests in flight at the stop that can finish within the
    drain timeout complete; the others are cancelled at the drain deadline,
    not before and not never; ``cleanup`` awaited once, after every handler
    ended; ``serve`` returns right after the cleanup, without waiting out the
    drain timeout when everything finished early; the right counts; no hang,
    no blocking call.
    """
    report = Report("serve")
    bad = require_coroutine_function("serve", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc, short, several = scenarios(variant, seed)
    day = play(fn, sc)
    obs, service = day.obs, day.service
    report.timeline = obs.timeline

    early = safe_findings("serve", obs)
    for finding in early:
        if finding.prop == "finishes" and obs.hang is not None and obs.hang.reason == "deadlock":
            finding.hint = ("serve never returned after the stop signal: it waits for a request "
                            "that never comes. Wait for whichever comes first, the next request "
                            "or `stop` (asyncio.wait with FIRST_COMPLETED).")
        if finding.prop == "runs without error" and _took_down(obs.error):
            finding.prop = "a failing request does not stop the server"
            finding.diagnosis = "stopped by a failure"
            finding.message = (f"one request's error escaped from serve: "
                               f"{describe_error(obs.error)}")
            finding.hint = ("Start each request with asyncio.create_task and collect its outcome "
                            "later; a TaskGroup (or an awaited gather) cancels everything at the "
                            "first failure, and a server must survive a failing request.")
    report.findings.extend(early)
    if obs.hang is not None or obs.error is not None:
        return report

    def started(req: str) -> str:
        calls = service.calls_for(req)
        return f"was started at {calls[0].start:g} s" if calls else "was never started"

    # 1. Concurrency: every request that arrived before the stop started at once.
    delayed = [r for r, at in sc.arrivals.items() if at <= sc.stop_at
               and (not service.calls_for(r) or abs(service.calls_for(r)[0].start - at) > TOLERANCE_S)]
    report.add("handles requests concurrently", not delayed,
               "every request was started the moment it arrived" if not delayed else
               f"{delayed[0]} arrived at {sc.arrivals[delayed[0]]:g} s but {started(delayed[0])}",
               "Start a task per request (asyncio.create_task) instead of awaiting each handler "
               "before taking the next request.", "one at a time")

    # 2. Survives a failing request (it did not raise, see above); the failure is counted below.
    failed_ok = all(service.calls_for(r) for r in sc.failing)
    report.add("a failing request does not stop the server", failed_ok,
               f"the server kept serving after {', '.join(sc.failing)} failed" if failed_ok else
               f"{sc.failing[0]} was never started", "Keep serving when one request fails.",
               "stopped by a failure")

    # 3. Stop accepting at the signal.
    late = [c for c in service.calls if c.start > sc.stop_at + TOLERANCE_S]
    report.add("stops accepting at the signal", not late,
               f"no request was started after the stop signal at {sc.stop_at:g} s" if not late else
               f"{late[0].key} was started at {late[0].start:g} s, after the stop signal at "
               f"{sc.stop_at:g} s",
               "Once `stop` is set, take no more requests from the queue. Checking `stop` only "
               "between requests is too late: the next `await requests.get()` still takes one. "
               "Wait for whichever comes first, a request or the stop signal.",
               "accepts after the signal")

    # 4. Drain: in-flight requests that can finish before the deadline do.
    expected = sc.expected()
    cut_short = [r for r in expected["completed"] + expected["failed"]
                 if not service.calls_for(r) or service.calls_for(r)[0].outcome == "cancelled"]
    report.add("in-flight requests are drained", not cut_short,
               f"the {len(sc.in_flight_at_stop())} requests in flight at the signal were given "
               f"until {sc.deadline:g} s, and those that could finish did" if not cut_short else
               f"{cut_short[0]} could finish by the drain deadline ({sc.deadline:g} s) but "
               + (f"was cancelled at {service.calls_for(cut_short[0])[0].end:g} s"
                  if service.calls_for(cut_short[0]) else "was never started"),
               "After the stop signal, give the running handlers up to drain_timeout_s to finish "
               "(asyncio.wait with a timeout) before cancelling anything.", "no drain")

    # 5. Stragglers cancelled exactly at the deadline.
    wrong = []
    for req in expected["cancelled"]:
        call = service.calls_for(req)[0] if service.calls_for(req) else None
        if call is None:
            wrong.append(f"{req} was never started")
        elif req in day.running_at_return:
            wrong.append(f"{req} was cancelled, but still running when serve returned: nobody "
                         "waited for it to end" if req in day.cancel_asked else
                         f"{req} was still running when serve returned: nobody cancelled it")
        elif call.outcome == "ok":
            wrong.append(f"{req} ran to its end at {call.end:g} s: no drain deadline")
        elif call.end is not None and abs(call.end - sc.deadline) > TOLERANCE_S:
            wrong.append(f"{req} was cancelled at {call.end:g} s, not at the drain deadline "
                         f"({sc.stop_at:g} + {sc.drain_timeout_s:g} = {sc.deadline:g} s)")
    if not wrong:
        wrong_several, late_several = _several_stragglers(fn, several)
    else:
        wrong_several, late_several = [], False
    if wrong:
        diagnosis = ("stragglers left running" if "nobody cancelled it" in wrong[0] else
                     "cancelled but not awaited" if "nobody waited" in wrong[0] else
                     "no drain deadline" if "no drain deadline" in wrong[0] else
                     "straggler never started" if "never started" in wrong[0] else
                     "deadline measured late")
    elif wrong_several:
        diagnosis = ("stragglers drained one after another" if late_several else
                     "stragglers left running")
    else:
        diagnosis = ""
    hints = {
        "stragglers drained one after another":
            "One deadline for all of them: wait for every handler at once "
            "(`asyncio.wait(tasks, timeout=drain_timeout_s)`), then cancel those not done. "
            "Waiting for each in turn with the full timeout gives every straggler its own "
            "deadline.",
        "stragglers left running": "At the drain deadline, cancel the handlers still running "
                                   "and wait for them (gather(..., return_exceptions=True)).",
        "cancelled but not awaited": "`task.cancel()` only asks: wait for the cancelled "
                                     "handlers to end (`await asyncio.gather(*pending, "
                                     "return_exceptions=True)`) before the cleanup.",
        "no drain deadline": "Give the handlers at most drain_timeout_s after the stop signal: "
                             "`asyncio.wait(tasks, timeout=...)`, then cancel the rest.",
    }
    report.add("stragglers cancelled at the deadline", not wrong and not wrong_several,
               f"the {len(expected['cancelled'])} request(s) still running at {sc.deadline:g} s "
               "were cancelled then, and on a day with several stragglers all were cancelled "
               "at the one deadline" if not wrong and not wrong_several else
               (wrong or wrong_several)[0],
               hints.get(diagnosis,
                         "At the drain deadline, cancel the handlers still running and wait for "
                         "them (gather(..., return_exceptions=True)). Measure the deadline from "
                         "the moment `stop` was set: polling `stop` with a timeout notices it "
                         "late."), diagnosis)

    # 6. Cleanup: once, after every handler ended.
    if not day.cleanups:
        ok, msg = False, "cleanup was never called" + (
            " (or never awaited)" if obs.never_awaited else "")
    elif len(day.cleanups) > 1:
        ok, msg = False, f"cleanup was called {len(day.cleanups)} times"
    elif day.cleanups[0][1]:
        ok, msg = False, (f"cleanup ran at {day.cleanups[0][0]:g} s while "
                          f"{day.cleanups[0][1]} request(s) were still running")
    elif day.cleanup_done_at is None:
        ok, msg = False, "cleanup was started but serve returned before it finished"
    else:
        ok, msg = True, f"cleanup ran once, at {day.cleanups[0][0]:g} s, after the last request"
    diagnosis = ("" if ok else "cleanup never awaited" if not day.cleanups else
                 "cleanup twice" if len(day.cleanups) > 1 else
                 "cancelled but not awaited" if day.cleanups[0][1]
                 and day.cleanup_while_cancelling >= day.cleanups[0][1] else
                 "cleanup before the drain" if day.cleanups[0][1] else "cleanup not finished")
    report.add("cleans up after the last request", ok, msg,
               "You cancel the stragglers, but `task.cancel()` only asks: wait for them to end "
               "(`await asyncio.gather(*pending, return_exceptions=True)`) before the cleanup."
               if diagnosis == "cancelled but not awaited" else
               "`await cleanup()` once, at the very end: after the drain and the cancellations, "
               "when no request is running any more (a `finally:` block makes sure it runs).",
               diagnosis)

    # 7. Returns promptly: right after the cleanup, at the deadline at the latest.
    latest = sc.deadline + CLEANUP_S
    prompt = day.returned_at is not None and day.returned_at <= latest + TOLERANCE_S
    report.add("returns by the deadline", prompt,
               f"serve returned at {day.returned_at:g} s (drain deadline {sc.deadline:g} s, then "
               f"{CLEANUP_S:g} s of cleanup)" if prompt else
               f"serve returned at {day.returned_at:g} s; the drain deadline was "
               f"{sc.deadline:g} s (plus {CLEANUP_S:g} s of cleanup)",
               "Never wait longer than drain_timeout_s after the stop signal.", "returns late")

    # 8. The counts.
    want = sc.counts()
    report.add("returns the counts", obs.result == want,
               f"returned {want}" if obs.result == want else
               f"returned {obs.result!r}, expected {want}",
               "Return {'completed': ..., 'failed': ..., 'cancelled': ..., 'not_started': ...}; "
               "a failed request raised, a cancelled one was cut at the deadline, not_started is "
               "what is left in the queue.", "wrong counts")

    # 9. A short day: everything in flight ends early; serve must not sit out the timeout.
    quick = play(fn, short)
    expected_end = short.drained_at() + CLEANUP_S
    on_time = quick.obs.hang is None and quick.obs.error is None and \
        quick.returned_at is not None and quick.returned_at <= expected_end + TOLERANCE_S
    report.add("returns as soon as the work is drained", on_time,
               f"with nothing left to wait for at {short.drained_at():g} s, it returned at "
               f"{quick.returned_at:g} s" if on_time else
               f"the last request in flight ended at {short.drained_at():g} s, but serve returned "
               f"at {quick.returned_at:g} s (stop at {short.stop_at:g} s, drain timeout "
               f"{short.drain_timeout_s:g} s)" if quick.returned_at is not None else
               "on a second, shorter day serve did not return",
               "Do not sleep for the whole drain timeout: wait for the handlers *with* a timeout "
               "(asyncio.wait(tasks, timeout=...)), which returns as soon as they are all done.",
               "sits out the drain timeout")
    return report


def _several_stragglers(fn: Any, sc: Scenario) -> tuple[list[str], bool]:
    """A day with several stragglers: all must be cancelled at the one drain deadline.

    Returns what went wrong (empty when nothing did), and whether a straggler was cut
    later than the deadline (each given a drain timeout of its own, one after another).
    """
    day = play(fn, sc)
    if day.obs.hang is not None or day.obs.error is not None:
        return [], False
    wrong, late = [], False
    for req in sc.expected()["cancelled"]:
        calls = day.service.calls_for(req)
        if not calls:
            continue
        call = calls[0]
        if req in day.running_at_return:
            wrong.append(f"on a day with {len(sc.expected()['cancelled'])} stragglers, {req} was "
                         "still running when serve returned")
        elif call.end is not None and call.end > sc.deadline + TOLERANCE_S:
            late = True
            wrong.append(f"on a day with {len(sc.expected()['cancelled'])} stragglers (stop at "
                         f"{sc.stop_at:g} s, drain timeout {sc.drain_timeout_s:g} s), {req} was "
                         f"cancelled at {call.end:g} s, {call.end - sc.deadline:g} s after the "
                         f"deadline ({sc.deadline:g} s)")
    return wrong, late


EXERCISES = {"serve": check_serve}
