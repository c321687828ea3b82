"""Checks for notebook 03_tasks: a heartbeat task that runs alongside the work and is stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from asynclab.checking import (Finding, Report, basic_findings, close_if_coroutine,
                               closing_unstarted, describe_error, hidden_rng, observe,
                               require_coroutine_function, varied)
from asynclab.fakes import MAX_BEATS, WorkFailed, Watch, make_fakes

NOTEBOOK = "03_tasks"
TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Scenario:
    work_s: float
    fail_after_s: float
    interval_s: float


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        return Scenario(work_s=9.0, fail_after_s=5.0, interval_s=2.0)
    rng = hidden_rng(variant, seed)  # hidden: several beats during the work, drawn from the seed
    interval_s = rng.choice([1.5, 2.5, 3.0, 4.0])
    work_s = interval_s * rng.randint(3, 6) + rng.choice([0.5, 1.5])
    return Scenario(work_s=work_s, fail_after_s=interval_s * rng.randint(2, 3) + 0.5,
                    interval_s=interval_s)


def _run(fn, sc: Scenario, fail: bool) -> tuple[Any, Watch]:
    watch = Watch()
    work, beat = make_fakes(sc.fail_after_s if fail else sc.work_s, fail, watch)

    async def call_and_watch() -> Any:
        loop = asyncio.get_running_loop()
        before = asyncio.all_tasks()
        try:
            return await closing_unstarted(lambda: fn(work, beat, sc.interval_s))
        finally:
            watch.returned_at = loop.time()
            left = [t for t in asyncio.all_tasks() - before if not t.done()]
            watch.left_cancelling = sum(1 for t in left if t.cancelling())
            watch.left_running = len(left) - watch.left_cancelling
            if left:  # let a leaked heartbeat show itself: does it keep beating?
                await asyncio.sleep(3 * sc.interval_s)

    obs = observe(call_and_watch, name="run_with_heartbeat",
                  namespaces=(getattr(fn, "__globals__", {}),),
                  max_virtual_s=40 * sc.interval_s + sc.work_s)
    return obs, watch


def _hang_finding(obs, watch: Watch, sc: Scenario) -> Finding:
    if not watch.work_calls:
        return Finding("finishes", False,
                       f"run_with_heartbeat did not finish: beat() was called {len(watch.beats)} "
                       "times and work() never started: the code awaited the endless heartbeat "
                       "loop itself",
                       "`await heartbeat()` waits for the loop to end, and it never does. Start it "
                       "with `asyncio.create_task(...)` instead, then `await work()`.",
                       "awaits the endless loop")
    if watch.work_end is not None:
        return Finding("finishes", False,
                       f"work() finished after {watch.work_end:g} s, but run_with_heartbeat never "
                       "returned: it kept waiting for the heartbeat, which never ends by itself",
                       "Do not wait for the heartbeat to finish (gather, or `await task` without "
                       "cancelling it): cancel it with `task.cancel()` when the work is done, "
                       "then await it.", "waits for the endless loop")
    return Finding("finishes", False, f"run_with_heartbeat did not finish: {obs.hang}",
                   "Something waits forever: the heartbeat must stop when the work is done.",
                   "waits forever")


def _silences(beats: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without a beat."""
    inside = [b for b in beats if start - TOLERANCE_S <= b <= end + TOLERANCE_S]
    marks = [start, *inside, end]
    return max(b - a for a, b in zip(marks, marks[1:]))


def _stopped(report: Report, prop: str, watch: Watch, sc: Scenario) -> None:
    after = [b for b in watch.beats if b > (watch.returned_at or 0) + TOLERANCE_S]
    stops_after_success = any(f.prop == "heartbeat stopped after the work" and f.passed
                              for f in report.findings)
    if watch.left_running:
        more = (f"; beat() was called {len(after)} more times afterwards" if after else "")
        report.add(prop, False,
                   f"the heartbeat task was still running when run_with_heartbeat "
                   f"returned{more}",
                   "You stop the heartbeat when the work succeeds, but a failing work() skips "
                   "that code: move the cancel (and the await of the task) into a `finally:` "
                   "block." if stops_after_success else
                   "Keep the task that create_task returns, and when the work is over (in a "
                   "`finally:` block, so that it also happens when the work fails) call "
                   "`task.cancel()` and then await the task.",
                   "no finally" if stops_after_success else "heartbeat never cancelled")
    elif watch.left_cancelling:
        report.add(prop, False,
                   "the heartbeat task was cancelled but not awaited: it had not finished "
                   "stopping when run_with_heartbeat returned",
                   "`task.cancel()` only asks the task to stop. Await the task afterwards "
                   "(catching asyncio.CancelledError) so that it has really stopped.",
                   "cancelled but not awaited")
    else:
        report.add(prop, True, "no task was left running, no beat came after the return")


@varied
def check_run_with_heartbeat(fn, *, variant: str = "public",
                             seed: int | None = None) -> Report:
    """Judge ``run_with_heartbeat(work, beat, interval_s)``.

    Properties: returns what ``work()`` returned, as soon as it returned; a
    heartbeat calls ``beat()`` at least every ``interval_s`` while the work runs
    (so it runs concurrently, as a task); the heartbeat task is cancelled and
    finished by the time the function returns, also when the work fails; the
    work's exception reaches the caller; work runs once; no blocking call.
    """
    report = Report("run_with_heartbeat")
    bad = require_coroutine_function("run_with_heartbeat", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)

    obs, watch = _run(fn, sc, fail=False)
    report.timeline = obs.timeline
    if obs.hang is not None:
        report.findings.append(_hang_finding(obs, watch, sc))
        return report
    if isinstance(obs.error, asyncio.CancelledError):
        report.add("runs without error", False,
                   f"run_with_heartbeat raised {describe_error(obs.error)}: awaiting a task you "
                   "cancelled raises CancelledError in the code that awaits it",
                   "Wrap `await task` in try/except asyncio.CancelledError (CancelledError is "
                   "not an Exception, so `except Exception` does not catch it).",
                   "cancellation not caught")
        return report
    early = basic_findings("run_with_heartbeat", obs)
    if watch.flood:  # the heartbeat spun without waiting; whatever else broke follows from it
        report.add("heartbeat waits between beats", False,
                   f"beat() was called {MAX_BEATS} times in "
                   f"{watch.beats[-1] - watch.beats[0]:g} virtual s: the heartbeat loop never "
                   "really waits between beats",
                   "Between two beats, `await asyncio.sleep(interval_s)`: that lets the loop run "
                   "the work meanwhile. time.sleep does not.", "never waits between beats")
        report.findings.extend(f for f in early if f.prop in ("never blocks the event loop",
                                                              "every coroutine awaited"))
        return report
    report.findings.extend(early)
    if obs.error is not None or any(not f.passed and f.prop == "returns a value, not an awaitable"
                                    for f in early):
        return report

    failing, f_watch = _run(fn, sc, fail=True)
    close_if_coroutine(failing.result)
    if failing.hang is not None:
        report.findings.append(_hang_finding(failing, f_watch, sc))
        return report

    # 1. The work's result, returned as soon as the work is done.
    expected = f"work done after {sc.work_s:g} s"
    report.add("returns the work's result", obs.result == expected,
               f"returned {expected!r}" if obs.result == expected else
               f"returned {obs.result!r}, expected {expected!r}",
               "Return what `await work()` gave you.", "wrong return value")
    ran = len(watch.work_calls)
    report.add("work runs once", ran == 1,
               "work() was called once" if ran == 1 else f"work() was called {ran} times",
               "Call work() exactly once and await it (or its task).",
               "work started twice" if ran > 1 else "work never started")
    late = (watch.returned_at or 0) - (watch.work_end or 0)
    if watch.work_end is not None:
        report.add("returns when the work is done", late <= TOLERANCE_S,
                   "returned the moment work() finished" if late <= TOLERANCE_S else
                   f"returned {late:g} s after work() had finished: it waited for the "
                   "heartbeat to wake up and notice",
                   "Stop the heartbeat with `task.cancel()`: that interrupts its sleep at once, "
                   "instead of waiting for it to check a flag.", "stops late")

    # 2. The heartbeat beats while the work runs.
    start = watch.work_calls[0] if watch.work_calls else 0.0
    end = watch.work_end if watch.work_end is not None else start
    during = [b for b in watch.beats if start - TOLERANCE_S <= b <= end + TOLERANCE_S]
    longest = _silences(watch.beats, start, end)
    if not watch.beats:
        ok, msg = False, f"beat() was never called during the {sc.work_s:g} s of work"
    elif not during:
        ok = False
        msg = (f"beat() was called {len(watch.beats)} time(s), but never while work() ran: the "
               "heartbeat and the work did not overlap")
    elif longest > sc.interval_s + TOLERANCE_S:
        ok = False
        msg = (f"the heartbeat went silent for {longest:g} s while work() ran; it should beat "
               f"at least every {sc.interval_s:g} s")
    else:
        ok = True
        msg = (f"beat() was called {len(during)} times during the {sc.work_s:g} s of work, "
               f"never more than {sc.interval_s:g} s apart")
    diagnosis = ("" if ok else "heartbeat never beats" if not watch.beats else
                 "heartbeat after the work" if not during else "heartbeat too slow")
    report.add("heartbeat runs during the work", ok, msg,
               "The heartbeat must beat every interval_s: `await asyncio.sleep(interval_s)` "
               "between two beats, no longer." if diagnosis == "heartbeat too slow" else
               "Start the heartbeat loop with `asyncio.create_task(...)` *before* awaiting "
               "work(); the loop does `await beat()` then `await asyncio.sleep(interval_s)`, "
               "forever.", diagnosis)

    # 3. Stopped, and finished, when the work is done.
    _stopped(report, "heartbeat stopped after the work", watch, sc)

    # 4. When the work fails: the error reaches the caller, the heartbeat stops too.
    if failing.error is not None and failing.error is f_watch.error:
        ok, msg = True, "the work's WorkFailed came out of run_with_heartbeat"
    elif failing.error is not None:
        ok = False
        msg = (f"when work() failed, run_with_heartbeat raised {describe_error(failing.error)} "
               "instead of the work's own error")
    else:
        ok = False
        msg = (f"when work() failed, run_with_heartbeat returned {failing.result!r}: the caller "
               "never learns that the work failed")
    report.add("the work's error reaches the caller", ok, msg,
               "Do not catch the work's exception; stop the heartbeat in a `finally:` block and "
               "let the error go on.",
               "" if ok else "error replaced" if failing.error is not None else "error swallowed")
    _stopped(report, "heartbeat stopped when the work fails", f_watch, sc)
    if failing.blocking_calls or failing.never_awaited:
        for finding in basic_findings("run_with_heartbeat", replace(failing, error=None,
                                                                    result=None)):
            if finding.prop not in {f.prop for f in report.findings}:
                report.findings.append(finding)
    failed = {f.prop for f in report.findings if not f.passed}
    if failed and failed <= {"heartbeat stopped when the work fails",
                             "the work's error reaches the caller"}:
        report.timeline = failing.timeline  # show the run that went wrong
    return report


EXERCISES = {"run_with_heartbeat": check_run_with_heartbeat}
