"""Checks for notebook 09_pitfalls: a blocking call moved off the loop, a cancellation kept alive.

``lookup_all`` is judged with real worker threads, by counts and order only:
each lookup waits at a barrier that opens when every lookup is running at once,
so overlap is decided by what the threads did, never by a clock. A lookup
called on the event loop's own thread is recorded by ``@blocking`` and returns
at once (it must not freeze the check's loop at the barrier).

``guarded_work`` is judged on virtual time, four times: a job that succeeds, a
job that fails, a caller that cancels, and a timeout around it. Cleanup is
counted at the moment the learner's call ends, so cleanup left to a background
task does not count.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from asynclab.blocking import blocking
from asynclab.checking import (hidden_rng, Report, add_new, common_findings, describe_error, observe, plural,
                               require_coroutine_function, seconds, short_repr, varied)
from asynclab.fakes import BARRIER_WAIT_S, LegacyDirectory, JobFailed, Job

NOTEBOOK = "09_pitfalls"


def _shown(value: Any) -> str:
    """A short repr without memory addresses (a coroutine's repr has one)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", short_repr(value))


@varied
def check_lookup_all(fn, *, variant: str = "public",
                     seed: int | None = None) -> Report:
    """Judge ``lookup_all(keys, legacy_lookup)``.

    Properties: the values in key order; the blocking function never called
    on the event loop's thread; the lookups run at the same time (in threads);
    each key looked up once.
    """
    report = Report("lookup_all")
    bad = require_coroutine_function("lookup_all", fn)
    if bad:
        report.findings.append(bad)
        return report
    if variant == "public":
        keys = ["ada", "alan", "grace", "linus"]
    else:  # hidden: 3 to 6 keys drawn from the seed
        rng = hidden_rng(variant, seed)
        keys = [f"user-{n}" for n in rng.sample(range(100, 1000), rng.randint(3, 6))]
    directory = LegacyDirectory(len(keys))

    async def call() -> Any:
        directory.loop = asyncio.get_running_loop()
        return await fn(list(keys), directory.lookup)

    obs = observe(call, name="lookup_all",
                  namespaces=(getattr(fn, "__globals__", {}),), wall_limit_s=BARRIER_WAIT_S * 4)
    # No timeline in this report: the lookups wait in threads, in real time, while the virtual
    # clock stands still, so every row would be zero seconds wide.
    report.findings.extend(common_findings("lookup_all", obs))
    if directory.loop_held and not obs.blocking_calls and obs.hang is None:
        report.add("never blocks the event loop", False,
                   "the lookups ran in threads, but the event loop's thread sat waiting for "
                   "them: no other task could run meanwhile",
                   "Waiting for a thread's result with `future.result()` or `executor.map(...)` "
                   "freezes the loop; await it instead: `await asyncio.to_thread(...)` or "
                   "`await loop.run_in_executor(...)`, gathered.", "blocked the loop")
    if obs.hang is not None or obs.error is not None or any(not f.passed and "await" in f.prop
                                                            for f in report.findings):
        return report  # nothing ran, or the result is un-awaited coroutines: nothing to judge
    expected = [f"value of {k}" for k in keys]
    got = list(obs.result) if isinstance(obs.result, (list, tuple)) else obs.result
    in_other_order = (isinstance(got, list) and got != expected
                      and sorted(map(str, got)) == sorted(expected))
    report.add("values in key order", got == expected,
               f"returned the {len(keys)} values in key order" if got == expected else
               f"returned {_shown(got)}, expected {expected}",
               "Your values are right but not in the order of the keys: collect them in key "
               "order (asyncio.gather keeps it; a set or as_completed does not)."
               if in_other_order else
               "Return a list with one value per key, in the order of the keys "
               "(asyncio.gather keeps that order).",
               "results out of order" if in_other_order else "wrong results")
    once = sorted(directory.calls) == sorted(keys)
    twice = sorted({k for k in directory.calls if directory.calls.count(k) > 1})
    report.add("each key looked up once", once,
               "each key was looked up exactly once" if once else
               f"{plural(len(directory.calls), 'lookup')} for {plural(len(keys), 'key')}"
               + (f" ({twice[0]!r} more than once)" if twice else ""),
               "Call legacy_lookup once per key.",
               "looked up twice" if twice else "key never looked up")
    if directory.on_loop == 0 and once:
        report.add("lookups run at the same time", directory.overlapped,
                   f"all {len(keys)} lookups ran at the same time, in worker threads"
                   if directory.overlapped else
                   "the lookups ran in worker threads, but not all at the same time "
                   "(one after another?)",
                   "Create every `asyncio.to_thread(legacy_lookup, key)` first, then await them "
                   "together with asyncio.gather; awaiting each one in a loop runs them one "
                   "after another.", "one after another")
    return report


@dataclass
class Ended:
    """How the learner's call ended, and how many cleanups had finished by then."""

    how: str = "running"  # "returned", "raised", "cancelled", "timed out", "no timeout"
    value: Any = None
    error: BaseException | None = None
    at: float = 0.0
    cleanups: int = 0


@dataclass(frozen=True)
class GuardScenario:
    job_s: float
    cleanup_s: float
    cancel_at_s: float


def guard_scenario(variant: str, seed: int | None = None) -> GuardScenario:
    if variant == "public":
        return GuardScenario(job_s=3.0, cleanup_s=0.1, cancel_at_s=1.0)
    rng = hidden_rng(variant, seed)  # the caller cancels while the job runs
    job_s = rng.choice([2.5, 3.5, 4.5, 6.0])
    return GuardScenario(job_s=job_s, cleanup_s=rng.choice([0.05, 0.25, 0.5]),
                         cancel_at_s=round(rng.uniform(0.5, job_s - 0.5), 2))


def _cleanups(n: int) -> str:
    return "never ran cleanup" if n == 0 else f"ran cleanup {'once' if n == 1 else f'{n} times'}"


CANCEL_HINT = ("Put `await cleanup()` in a `finally:` block; it runs on success, on error and on "
               "cancellation. If you catch asyncio.CancelledError, end the handler with `raise`.")


@varied
def check_guarded_work(fn, *, variant: str = "public",
                       seed: int | None = None) -> Report:
    """Judge ``guarded_work(job, cleanup)``.

    Properties: returns the job's result after cleanup ran once; after the
    job's error, cleanup ran once and the same error reaches the caller; when
    the caller cancels, cleanup runs once before the task ends and the task
    ends cancelled; a timeout around it fires.
    """
    report = Report("guarded_work")
    bad = require_coroutine_function("guarded_work", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = guard_scenario(variant, seed)
    namespaces = (getattr(fn, "__globals__", {}),)

    # 1. The job succeeds.
    ok_job = Job(sc.job_s, sc.cleanup_s)
    ok_end = Ended()

    async def succeed() -> Any:
        ok_end.value = await fn(ok_job.run, ok_job.cleanup)
        ok_end.how, ok_end.cleanups = "returned", ok_job.cleanups
        return ok_end.value

    ok = observe(succeed, name="guarded_work", namespaces=namespaces, max_virtual_s=600)
    report.timeline = ok.timeline
    report.findings.extend(common_findings("guarded_work", ok))
    if ok.hang is not None or ok.error is not None:
        return report
    expected = f"job done in {sc.job_s:g} s"
    right = ok_end.value == expected and ok_end.cleanups == 1
    if right:
        msg = "returned the job's result, after running cleanup once"
    elif ok_end.value == expected:
        msg = f"returned the job's result, but {_cleanups(ok_end.cleanups)} before returning"
    else:
        msg = (f"returned {_shown(ok_end.value)} instead of the job's result {expected!r}, and "
               f"{_cleanups(ok_end.cleanups)} before returning")
    report.add("result and cleanup", right, msg,
               "Return what `await job()` returned, and `await cleanup()` (in a `finally:` block) "
               "before the function ends.",
               "wrong return value" if ok_end.value != expected else
               "no cleanup" if ok_end.cleanups == 0 else "cleanup twice")

    # 2. The job fails.
    bad_job = Job(sc.job_s, sc.cleanup_s, fail=True)
    bad_end = Ended()

    async def fail() -> None:
        try:
            bad_end.value = await fn(bad_job.run, bad_job.cleanup)
            bad_end.how = "returned"
        except Exception as exc:  # noqa: BLE001 - the learner's error is what we judge
            bad_end.how, bad_end.error = "raised", exc
        bad_end.cleanups = bad_job.cleanups

    failed = observe(fail, name="job fails", namespaces=namespaces, max_virtual_s=600)
    if failed.hang is not None:
        report.add("cleanup after an error, error passed on", False,
                   f"when the job failed, it did not finish: {failed.hang}",
                   "Do not retry or loop on errors here: let the job's error go to the caller, "
                   "after cleanup (try/finally).", "retries forever")
    else:
        add_new(report, common_findings("guarded_work", failed))
        passed_on = bad_end.how == "raised" and isinstance(bad_end.error, JobFailed)
        if bad_end.how == "returned":
            what = f"returned {_shown(bad_end.value)}: the job's error was swallowed"
        elif not passed_on:
            what = f"raised {describe_error(bad_end.error)} instead of the job's JobFailed"
        else:
            what = "the job's error reached the caller"
        right = passed_on and bad_end.cleanups == 1
        diagnosis = ("" if right else "error swallowed" if bad_end.how == "returned" else
                     "error replaced" if not passed_on else
                     "no cleanup after an error" if bad_end.cleanups == 0 else "cleanup twice")
        hints = {
            "error swallowed": "Let the job's error reach the caller: use try/finally (or "
                               "end your except block with a bare `raise`), not a return.",
            "error replaced": "Re-raise the job's own error (a bare `raise`), not a new one.",
            "no cleanup after an error": "Put `await cleanup()` in a `finally:` block: code "
                                         "after `await job()` does not run when the job fails.",
            "cleanup twice": "Run cleanup once: in the `finally:` block only.",
        }
        report.add("cleanup after an error, error passed on", right,
                   f"when the job failed, it {_cleanups(bad_end.cleanups)}; {what}",
                   hints.get(diagnosis, ""), diagnosis)

    # 3. The caller cancels.
    cancelled_job = Job(60.0, sc.cleanup_s)
    cancel_end = Ended()

    async def cancel_it() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(fn(cancelled_job.run, cancelled_job.cleanup),
                                   name="guarded_work")
        await asyncio.sleep(sc.cancel_at_s)
        task.cancel()
        try:
            cancel_end.value = await task
            cancel_end.how = "returned"
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # the check itself is being stopped
                raise
            cancel_end.how = "cancelled"
        except Exception as exc:  # noqa: BLE001
            cancel_end.how, cancel_end.error = "raised", exc
        cancel_end.at, cancel_end.cleanups = loop.time(), cancelled_job.cleanups

    obs = observe(cancel_it, name="caller cancels", namespaces=namespaces, max_virtual_s=600)
    if obs.hang is None:
        add_new(report, common_findings("guarded_work", obs))
    else:
        report.add("cancellation propagates", False,
                   f"cancelled at {seconds(sc.cancel_at_s)}, it did not stop: {obs.hang}",
                   "It swallowed the CancelledError and went on; after cleaning up, `raise` it.",
                   "swallowed cancellation")
        return report
    report.add("cleanup runs on cancellation", cancel_end.cleanups == 1,
               f"cancelled at {seconds(sc.cancel_at_s)}, it {_cleanups(cancel_end.cleanups)} "
               "before ending",
               "Cancellation is not an Exception: `except Exception:` does not see it, so that "
               "cleanup never runs. Put `await cleanup()` in a `finally:` block."
               if cancel_end.cleanups == 0 else CANCEL_HINT,
               "no cleanup on cancellation" if cancel_end.cleanups == 0 else "cleanup twice")
    if cancel_end.how == "cancelled":
        msg = "the task ended cancelled, as its caller asked"
    elif cancel_end.how == "returned":
        msg = (f"the caller cancelled it, but it returned {_shown(cancel_end.value)}: "
               "the CancelledError was swallowed")
    else:
        msg = (f"the caller cancelled it, but it raised {describe_error(cancel_end.error)} "
               "instead of letting the CancelledError through")
    report.add("cancellation propagates", cancel_end.how == "cancelled", msg,
               "Never end normally after a CancelledError: clean up, then `raise` it "
               "(a bare `except:` or `except BaseException:` swallows it too).",
               "swallowed cancellation" if cancel_end.how == "returned" else "cancellation replaced")

    # 4. A timeout around it.
    timed_job = Job(60.0, sc.cleanup_s)
    timed_end = Ended()

    async def with_timeout() -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(sc.cancel_at_s):
                await fn(timed_job.run, timed_job.cleanup)
            timed_end.how = "no timeout"
        except TimeoutError:
            timed_end.how = "timed out"
        timed_end.at = loop.time()

    obs = observe(with_timeout, name="under a timeout", namespaces=namespaces, max_virtual_s=600)
    if obs.hang is None:
        add_new(report, common_findings("guarded_work", obs))
    fired = obs.hang is None and timed_end.how == "timed out"
    if fired:
        msg = f"a {seconds(sc.cancel_at_s)} timeout around it fired"
    elif obs.hang is not None:
        msg = f"a {seconds(sc.cancel_at_s)} timeout around it did not stop it: {obs.hang}"
    else:
        msg = (f"a {seconds(sc.cancel_at_s)} timeout around it did not fire: the block ended "
               f"normally at {seconds(timed_end.at)}, because the cancellation it sends was "
               "swallowed")
    report.add("a timeout around it works", fired, msg,
               "asyncio.timeout works by cancelling the task; a swallowed CancelledError "
               "breaks every timeout and TaskGroup above your code.", "swallowed cancellation")
    return report


EXERCISES = {"lookup_all": check_lookup_all, "guarded_work": check_guarded_work}
