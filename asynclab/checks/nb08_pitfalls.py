"""Checks for notebook 08_pitfalls: a blocking call moved off the loop, a cancellation kept alive."""

from __future__ import annotations

import asyncio
import threading

from asynclab.blocking import blocking
from asynclab.checking import Report, common_findings, observe, require_coroutine_function

NOTEBOOK = "08_pitfalls"
BARRIER_WAIT_S = 2.0  # real seconds a correct solution never waits: all calls meet at once


class LegacyDirectory:
    """A blocking, thread-safe lookup: ``lookup(key)`` returns ``"value of <key>"``.

    Each call waits at a barrier for ``parties`` calls to be running at the same
    time, so overlap is judged by what threads really did, not by any clock. A
    call that waits in vain (the calls ran one after another) gives up after
    ``BARRIER_WAIT_S`` real seconds and is noted as not overlapping.
    """

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties)
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.overlapped = True
        self._lock = threading.Lock()

        def legacy_lookup(key: str) -> str:
            return self._lookup(key)

        self.lookup = blocking(legacy_lookup)

    def _lookup(self, key: str) -> str:
        with self._lock:
            self.calls.append(key)
            self.threads.add(threading.get_ident())
        try:
            self.barrier.wait(timeout=BARRIER_WAIT_S)
        except threading.BrokenBarrierError:
            self.overlapped = False
        return f"value of {key}"


def check_lookup_all(fn, *, variant: str = "public") -> Report:
    """Judge ``lookup_all(keys, legacy_lookup)``.

    Properties: the values in key order; the blocking function never called
    on the event loop's thread; the calls run at the same time (in threads);
    each key looked up once.
    """
    report = Report("lookup_all")
    bad = require_coroutine_function("lookup_all", fn)
    if bad:
        report.findings.append(bad)
        return report
    keys = ["ada", "alan", "grace", "linus"] if variant == "public" else ["k1", "k2", "k3"]
    directory = LegacyDirectory(len(keys))
    obs = observe(lambda: fn(list(keys), directory.lookup), name="lookup_all",
                  namespaces=(getattr(fn, "__globals__", {}),), wall_limit_s=BARRIER_WAIT_S * 3)
    report.timeline = obs.timeline
    report.findings.extend(common_findings("lookup_all", obs))
    if obs.hang is not None or obs.error is not None:
        return report
    expected = [f"value of {k}" for k in keys]
    got = list(obs.result) if isinstance(obs.result, (list, tuple)) else obs.result
    report.add("values in key order", got == expected,
               f"returned the {len(keys)} values in key order" if got == expected else
               f"returned {got!r}, expected {expected}",
               "Return a list with one value per key, in the order of the keys.")
    twice = sorted({k for k in directory.calls if directory.calls.count(k) > 1})
    report.add("each key looked up once", not twice and len(directory.calls) == len(keys),
               "each key was looked up exactly once" if not twice and len(directory.calls) == len(keys)
               else f"{len(directory.calls)} lookups for {len(keys)} keys",
               "Call legacy_lookup once per key.")
    if not obs.blocking_calls:
        report.add("lookups run at the same time", directory.overlapped,
                   f"all {len(keys)} lookups ran at the same time, in worker threads"
                   if directory.overlapped else
                   "the lookups ran in threads, but one after another",
                   "Start every `asyncio.to_thread(legacy_lookup, key)` first, then await them "
                   "together with asyncio.gather.")
    return report


class Job:
    """A job that takes ``duration_s`` and a cleanup that must run, recording both."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.cleanups = 0
        self.finished = False

    async def run(self) -> str:
        await asyncio.sleep(self.duration_s)
        self.finished = True
        return "job done"

    async def cleanup(self) -> None:
        await asyncio.sleep(0.1)  # closing a connection takes a moment
        self.cleanups += 1


def check_guarded_work(fn, *, variant: str = "public") -> Report:
    """Judge ``guarded_work(job, cleanup)``.

    Properties: returns the job's result, with cleanup run once; when the
    caller cancels, cleanup still runs once and the cancellation propagates
    (the task ends cancelled); a timeout around it fires on time.
    """
    report = Report("guarded_work")
    bad = require_coroutine_function("guarded_work", fn)
    if bad:
        report.findings.append(bad)
        return report
    cancel_at = 1.0 if variant == "public" else 2.5
    namespaces = (getattr(fn, "__globals__", {}),)

    ok_job = Job(3.0)
    ok = observe(lambda: fn(ok_job.run, ok_job.cleanup), name="guarded_work", namespaces=namespaces)
    report.timeline = ok.timeline
    report.findings.extend(common_findings("guarded_work", ok))
    if ok.hang is not None or ok.error is not None:
        return report
    right = ok.result == "job done" and ok_job.cleanups == 1
    report.add("result and cleanup", right,
               "returned the job's result and ran cleanup once" if right else
               f"returned {ok.result!r} and ran cleanup {ok_job.cleanups} time(s)",
               "Return what `await job()` returned, and await cleanup() in a `finally:` block.")

    cancelled_job = Job(60.0)
    outcome: dict[str, object] = {}

    async def cancel_it():
        task = asyncio.create_task(fn(cancelled_job.run, cancelled_job.cleanup))
        await asyncio.sleep(cancel_at)
        task.cancel()
        try:
            outcome["value"] = await task
        except asyncio.CancelledError:
            pass
        outcome["cancelled"] = task.cancelled()
        outcome["at"] = asyncio.get_running_loop().time()

    obs = observe(cancel_it, name="caller cancels", namespaces=namespaces, max_virtual_s=600)
    if obs.hang is not None:
        report.add("cancellation propagates", False, f"after being cancelled, it did not finish: "
                   f"{obs.hang}", "Re-raise CancelledError after cleaning up: `raise`.")
        return report
    report.add("cleanup runs on cancellation", cancelled_job.cleanups == 1,
               f"cancelled at {cancel_at:g} s, it ran cleanup once" if cancelled_job.cleanups == 1 else
               f"cancelled, it ran cleanup {cancelled_job.cleanups} time(s)",
               "Put `await cleanup()` in a `finally:` block: `except Exception` does not catch "
               "CancelledError.")
    propagated = outcome.get("cancelled") is True
    report.add("cancellation propagates", propagated,
               "the task ended cancelled, as its caller asked" if propagated else
               f"the caller cancelled it, but it ended normally (returned {outcome.get('value')!r}): "
               "the CancelledError was swallowed",
               "Never end a coroutine normally after CancelledError: clean up, then `raise`.")

    timed_job = Job(60.0)
    timing: dict[str, object] = {}

    async def with_timeout():
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(cancel_at):
                await fn(timed_job.run, timed_job.cleanup)
        except TimeoutError:
            timing["timed_out"] = True
        timing["at"] = loop.time()

    obs = observe(with_timeout, name="under a timeout", namespaces=namespaces, max_virtual_s=600)
    fired = obs.hang is None and timing.get("timed_out") is True
    report.add("a timeout around it works", fired,
               f"a {cancel_at:g}-second timeout around it fired, after the cleanup" if fired else
               "a timeout around it did not fire: the cancellation it sends was swallowed",
               "asyncio.timeout works by cancelling the task; a swallowed CancelledError "
               "breaks every timeout and TaskGroup above your code.")
    return report


EXERCISES = {"lookup_all": check_lookup_all, "guarded_work": check_guarded_work}
