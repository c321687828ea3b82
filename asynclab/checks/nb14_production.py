"""Checks for notebook 14_production: a graceful shutdown with a drain deadline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from asynclab.checking import Report, common_findings, observe, require_coroutine_function
from asynclab.fakes import FakeService

NOTEBOOK = "14_production"
TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Scenario:
    arrivals: dict[str, float]  # request -> arrival time
    latency_s: dict[str, float]
    stop_at: float
    drain_timeout_s: float

    @property
    def deadline(self) -> float:
        return self.stop_at + self.drain_timeout_s

    def expected(self) -> dict[str, list[str]]:
        """Which requests complete, are cancelled at the deadline, or never start."""
        out: dict[str, list[str]] = {"completed": [], "cancelled": [], "not_started": []}
        for req, arrived in self.arrivals.items():
            if arrived > self.deadline:
                continue  # arrives after serve has returned
            if arrived > self.stop_at:
                out["not_started"].append(req)
            elif arrived + self.latency_s[req] <= self.deadline:
                out["completed"].append(req)
            else:
                out["cancelled"].append(req)
        return out


def scenario(variant: str) -> Scenario:
    if variant == "public":
        latency = [1.0, 1.0, 10.0, 2.0, 1.0, 2.5, 1.0, 1.0]
        return Scenario({f"req-{i}": float(i) for i in range(8)},
                        {f"req-{i}": t for i, t in enumerate(latency)},
                        stop_at=5.5, drain_timeout_s=3.0)
    latency = [0.5, 7.0, 1.5, 0.5, 3.0, 0.25, 9.0, 1.0, 2.0, 0.5]
    return Scenario({f"r{i}": i * 0.75 for i in range(10)},
                    {f"r{i}": t for i, t in enumerate(latency)},
                    stop_at=4.6, drain_timeout_s=2.0)


def check_serve(fn, *, variant: str = "public") -> Report:
    """Judge ``serve(requests, handle, stop, drain_timeout_s)``.

    Properties: each request handled as soon as it arrives (concurrently); no
    request started after ``stop`` is set; requests in flight at the stop and
    finishing within the drain timeout complete; the others are cancelled at
    the drain deadline, not before and not never; ``serve`` returns right
    after, with the right counts; no hang, no blocking call.
    """
    report = Report("serve")
    bad = require_coroutine_function("serve", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant)
    service = FakeService(sc.latency_s)
    outcome: dict[str, object] = {}

    async def run() -> object:
        loop = asyncio.get_running_loop()
        requests: asyncio.Queue = asyncio.Queue()
        stop = asyncio.Event()

        async def feed() -> None:
            for req, at in sorted(sc.arrivals.items(), key=lambda kv: kv[1]):
                await asyncio.sleep(at - loop.time())
                requests.put_nowait(req)

        async def signal() -> None:
            await asyncio.sleep(sc.stop_at)
            stop.set()  # what a SIGTERM handler would do

        helpers = [asyncio.create_task(feed(), name="requests arriving"),
                   asyncio.create_task(signal(), name="SIGTERM")]
        result = await fn(requests, service.fetch, stop, sc.drain_timeout_s)
        outcome["returned_at"] = loop.time()
        outcome["running"] = sorted(c.key for c in service.calls if c.outcome == "running")
        for task in helpers:
            task.cancel()
        return result

    obs = observe(run, name="serve", namespaces=(getattr(fn, "__globals__", {}),), max_virtual_s=600)
    report.timeline = obs.timeline
    report.findings.extend(common_findings("serve", obs))
    if obs.hang is not None or obs.error is not None:
        return report

    expected = sc.expected()
    late = [c.key for c in service.calls if c.start > sc.stop_at + TOLERANCE_S]
    report.add("stops accepting at the signal", not late,
               f"no request was started after the stop signal at {sc.stop_at:g} s" if not late else
               f"{late[0]} was started at {service.calls_for(late[0])[0].start:g} s, after the stop "
               f"signal at {sc.stop_at:g} s",
               "Once `stop` is set, take no more requests from the queue.")

    def started_at(req: str) -> str:
        calls = service.calls_for(req)
        return f"was started at {calls[0].start:g} s" if calls else "was never started"

    delayed = [req for req, at in sc.arrivals.items() if at <= sc.stop_at
               and (not service.calls_for(req) or abs(service.calls_for(req)[0].start - at) > TOLERANCE_S)]
    report.add("handles requests concurrently", not delayed,
               "every request was started the moment it arrived" if not delayed else
               f"{delayed[0]} arrived at {sc.arrivals[delayed[0]]:g} s but {started_at(delayed[0])}",
               "Start a task per request (create_task) instead of awaiting each handler before "
               "taking the next request.")

    unfinished = [r for r in expected["completed"]
                  if not service.calls_for(r) or service.calls_for(r)[0].outcome != "ok"]
    report.add("in-flight requests are drained", not unfinished,
               "requests that could finish before the drain deadline finished" if not unfinished
               else f"{unfinished[0]} could finish before the drain deadline "
                    f"({sc.deadline:g} s) but did not",
               "After the stop signal, wait for the running handlers (asyncio.wait with a "
               "timeout) instead of cancelling them at once.")

    stragglers = expected["cancelled"]
    wrong = []
    still_running = outcome.get("running") or []
    for req in stragglers:
        calls = service.calls_for(req)
        if not calls:
            wrong.append(f"{req} was never started")
        elif req in still_running:
            wrong.append(f"{req} was still running when serve returned")
        elif calls[0].outcome == "ok":
            wrong.append(f"{req} ran to its end at {calls[0].end:g} s: no drain deadline")
        elif abs(calls[0].end - sc.deadline) > TOLERANCE_S:
            wrong.append(f"{req} was cancelled at {calls[0].end:g} s, not at the drain deadline "
                         f"({sc.deadline:g} s)")
    report.add("stragglers cancelled at the deadline", not wrong,
               f"the {len(stragglers)} request(s) still running at {sc.deadline:g} s were cancelled "
               "then" if not wrong else wrong[0],
               "After the drain timeout, cancel the handlers that are still running and wait for "
               "them to finish cancelling.")

    returned = outcome.get("returned_at")
    prompt = isinstance(returned, float) and returned <= sc.deadline + TOLERANCE_S
    report.add("returns by the deadline", prompt,
               f"serve returned at {returned:g} s, by the drain deadline" if prompt else
               f"serve returned at {returned:g} s; the drain deadline was {sc.deadline:g} s",
               "Never wait longer than drain_timeout_s after the stop signal.")

    want = {k: len(v) for k, v in expected.items()}
    report.add("returns the counts", obs.result == want,
               f"returned {want}" if obs.result == want else
               f"returned {obs.result!r}, expected {want}",
               "Return {'completed': ..., 'cancelled': ..., 'not_started': ...}; not_started is "
               "what is left in the queue.")
    return report


EXERCISES = {"serve": check_serve}
