"""Checks for notebook 07_taskgroup_cancellation: fetch all or nothing, and always clean up."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, replace

from asynclab.checking import (hidden_rng, Ending, Report, add_new, describe_error, ending_of, observe,
                               plural, require_coroutine_function, safe_findings, seconds,
                               short_repr, varied)
from asynclab.fakes import Call, FakeService, ServiceError, Releases

NOTEBOOK = "07_taskgroup_cancellation"
TOLERANCE_S = 1e-3
ALWAYS = 10**9  # a failing key fails on every call
NAME = "fetch_all_or_nothing"
OUTCOME_WORDS = {"ok": "finished", "error": "failed", "cancelled": "cancelled"}


@dataclass
class Run:
    """One run: the fake service, the releases, and how the learner's call ended."""

    what: str  # "where every fetch succeeded", ...
    service: FakeService
    releases: Releases
    ending: Ending | None = None

    def calls(self) -> list[Call]:
        """The fetches in the order they started; at the same instant, in the order of the keys.

        (A TaskGroup cancels its tasks in set order, so tasks that go on after being
        cancelled restart in an order that changes from run to run: reports must not.)
        """
        order = {key: i for i, key in enumerate(self.service.latency_s_map)}
        return sorted(self.service.calls, key=lambda c: (c.start, order.get(c.key, len(order))))

    def look(self) -> dict:
        running = [c for c in self.calls() if c.outcome == "running"]
        return {"running": [c.key for c in running],
                # of those, the ones whose task was told to cancel (cancel() without a wait)
                "cancel_asked": [c.key for c in running
                                 if c.task is not None and c.task.cancelling()],
                "released": list(self.releases.log)}


@dataclass(frozen=True)
class Scenario:
    latency_s: dict[str, float]
    failing: str  # the key whose fetch fails in the second run
    cancel_at_s: float  # when the caller cancels, in the third run

    @property
    def keys(self) -> list[str]:
        return list(self.latency_s)

    @property
    def cancel_later_s(self) -> float:
        """A second instant for the caller to cancel: some fetches done, the others running."""
        ordered = sorted(set(self.latency_s.values()))
        middle = len(ordered) // 2
        return (ordered[middle - 1] + ordered[middle]) / 2


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        return Scenario({"/profile": 2.0, "/orders": 3.0, "/stock": 1.0, "/prices": 4.0,
                         "/reviews": 2.5, "/ads": 1.5}, "/stock", 0.5)
    # Hidden, drawn from the seed: 5 to 9 keys; the failing one is the fastest, so that the
    # others are still running when it fails; the caller cancels while every fetch runs.
    rng = hidden_rng(variant, seed)
    count = rng.randint(5, 9)
    latencies = {f"/hidden/{i}": round(rng.uniform(2.5, 6.0), 2) for i in range(count)}
    failing = rng.choice(list(latencies))
    latencies[failing] = round(rng.uniform(1.2, 2.2), 2)
    return Scenario(latencies, failing, round(rng.uniform(0.3, 1.1), 2))


def _keys(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _contains_service_error(exc: BaseException | None) -> bool:
    if isinstance(exc, ServiceError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(ServiceError) is not None
    return False


@varied
def check_fetch_all_or_nothing(fn, *, variant: str = "public",
                               seed: int | None = None) -> Report:
    """Judge ``fetch_all_or_nothing(keys, fetch, release)``.

    Three runs on virtual time: every fetch succeeds (a dict of all results, all
    fetches at once); one fetch fails (the error reaches the caller at that very
    moment, every other fetch cancelled, none started again); the caller cancels
    (CancelledError propagates), at two instants (before any fetch is done, and when
    some are). In every run each fetch is followed by exactly one
    ``release(key)`` once it has ended, before the function returns or raises. No
    blocking call.
    """
    report = Report(NAME)
    bad = require_coroutine_function(NAME, fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    namespaces = (getattr(fn, "__globals__", {}),)
    limit_s = 20 * max(sc.latency_s.values())

    def run(what: str, failures: dict[str, int], **how) -> tuple[Run, object]:
        r = Run(what, FakeService(sc.latency_s, failures), Releases())

        async def call():
            r.ending = await ending_of(lambda: fn(sc.keys, r.service.fetch, r.releases.release),
                                       r.look, name=NAME, **how)
            return r.ending

        return r, call

    # The run where one fetch fails: its timeline is the one the learner sees.
    failing, call = run(f"where {sc.failing} failed", {sc.failing: ALWAYS}, catch=(Exception,))
    obs = observe(call, name="caller", namespaces=namespaces, max_virtual_s=limit_s)
    report.timeline = obs.timeline
    ending = failing.ending if obs.hang is None and obs.error is None else None
    early = safe_findings(NAME, replace(obs, result=ending and ending.value))
    for finding in early:
        if finding.prop == "finishes" and obs.hang is not None and obs.hang.reason != "wall-limit":
            finding.message = f"in the run {failing.what}: {finding.message}"
            finding.hint = ("A task that catches CancelledError (or BaseException, or uses a bare "
                            "`except:`) and tries again never ends, and the TaskGroup waits for "
                            "it forever. Re-raise CancelledError, and do not retry here.")
            finding.diagnosis = "swallowed cancellation"
    add_new(report, early)
    if ending is None or any(not f.passed for f in report.findings
                             if f.prop != "never blocks the event loop"):
        return report

    succeeding, call = run("where every fetch succeeded", {})
    ok_obs = observe(call, name="caller", namespaces=namespaces, max_virtual_s=limit_s)
    cancelled, call = run(f"that its caller cancelled at {seconds(sc.cancel_at_s)}", {},
                          cancel_after_s=sc.cancel_at_s, catch=(Exception,))
    cancel_obs = observe(call, name="caller", namespaces=namespaces, max_virtual_s=limit_s)
    # The caller cancels at a second instant too, when some fetches are done: code that
    # returns what it has (or swallows the cancellation only then) shows there.
    later = replace(sc, cancel_at_s=sc.cancel_later_s)
    cancelled_later, call = run(f"that its caller cancelled at {seconds(later.cancel_at_s)}", {},
                                cancel_after_s=later.cancel_at_s, catch=(Exception,))
    later_obs = observe(call, name="caller", namespaces=namespaces, max_virtual_s=limit_s)

    _judge_success(report, sc, succeeding, ok_obs)
    _judge_failure(report, sc, failing)
    _judge_caller_cancel(report, sc, cancelled, cancel_obs)
    if all(f.passed for f in report.findings if f.prop in ("cancellation from the caller propagates",
                                                           "a cancelled fetch stays cancelled")):
        second = Report(NAME, [f for f in report.findings
                               if f.prop == "a cancelled fetch stays cancelled"])
        _judge_caller_cancel(second, later, cancelled_later, later_obs)
        for finding in second.findings:
            if not finding.passed:
                report.findings[:] = [f for f in report.findings if f.prop != finding.prop]
                report.findings.append(finding)
    runs = (succeeding, failing, cancelled, cancelled_later)
    _judge_releases(report, [r for r in runs if r.ending is not None])
    for other in (ok_obs, cancel_obs, later_obs):
        add_new(report, [f for f in safe_findings(NAME, replace(other, result=None))
                         if f.prop == "never blocks the event loop"])
    return report


def _problem(obs, r: Run) -> str | None:
    """Why a run cannot be judged (it hung or raised), in a sentence; None when it can."""
    if r.ending is not None and obs.hang is None and obs.error is None:
        return None
    failure = next((f for f in safe_findings(NAME, replace(obs, result=None)) if not f.passed),
                   None)
    return f"in the run {r.what}: {failure.message if failure else 'it did not end'}"


def _judge_success(report: Report, sc: Scenario, r: Run, obs) -> None:
    problem = _problem(obs, r)
    expected = {k: FakeService.result_for(k) for k in sc.keys}
    if problem:
        report.add("all results when every fetch succeeds", False, problem,
                   "Run your function by hand with fetches that all succeed to see where it fails.",
                   "raised an error")
        return
    got = r.ending.value
    report.add("all results when every fetch succeeds", got == expected,
               f"it returned the data of all {len(expected)} keys" if got == expected else
               f"it returned {short_repr(got)}; expected a dict of all {len(expected)} keys to their data",
               "Return a dict that maps each key to what `await fetch(key)` returned "
               "(`task.result()` of each task, after the TaskGroup block).", "wrong results")
    slowest, total = max(sc.latency_s.values()), sum(sc.latency_s.values())
    peak, took = r.service.max_in_flight, r.ending.at
    concurrent = took <= slowest + TOLERANCE_S and peak == len(sc.keys)
    report.add("fetches run concurrently", concurrent,
               f"all {len(sc.keys)} fetches ran at once and it finished in {seconds(slowest)}"
               if concurrent else
               f"it took {took:.1f} virtual s with at most {plural(peak, 'fetch')} in flight; all "
               f"at once takes {seconds(slowest)} (one at a time: {seconds(total)})",
               "Start every fetch as a task inside `async with asyncio.TaskGroup() as tg:` "
               "(`tg.create_task(...)`), then read the results after the block.",
               "one after another")


def _judge_failure(report: Report, sc: Scenario, r: Run) -> None:
    ending = r.ending
    calls = r.calls()
    failed = [c for c in calls if c.outcome == "error"]
    fail_at = failed[0].end if failed else sc.latency_s[sc.failing]
    at = seconds(fail_at)
    ended = {"returned": "returned", "raised": "raised", "cancelled": "ended"}.get(ending.how, "ended")

    # 1. The error reaches the caller.
    hint = ("Let the error propagate: the TaskGroup raises an ExceptionGroup that contains it. "
            "Do not catch it, or re-raise it (`except*` handlers can log and `raise`).")
    if _contains_service_error(ending.error):
        ok, msg = True, f"the ServiceError of {sc.failing} reached the caller"
    elif ending.how == "returned":
        ok, msg = False, (f"it returned {short_repr(ending.value)} although {sc.failing} failed: "
                          "the error was lost")
    elif ending.how == "raised":
        ok, msg = False, (f"it raised {describe_error(ending.error)} instead of the ServiceError "
                          f"of {sc.failing}")
        hint = "Your own code raised this error; read it, and fix the line it names."
    else:
        ok, msg = False, f"it ended with CancelledError instead of the ServiceError of {sc.failing}"
        hint = ("Asking a cancelled task for its result (`task.result()`) raises CancelledError. "
                "A TaskGroup raises the failure for you; by hand, raise the failed task's "
                "exception before you read any result.")
    report.add("the error reaches the caller", ok, msg, hint,
               "" if ok else "error swallowed" if ending.how == "returned" else
               ("raised an error" if isinstance(ending.error, (TypeError, AttributeError, NameError,
                                                              UnboundLocalError, KeyError))
                else "error replaced") if ending.how == "raised" else
               "cancelled instead of failing")

    # 2. The other fetches are cancelled at once.
    running = ending.seen.get("running", [])
    siblings = [c for c in calls if c.key != sc.failing and c.start <= fail_at + TOLERANCE_S]
    ran_on = [c for c in siblings if c.outcome == "ok" and c.end is not None
              and c.end > fail_at + TOLERANCE_S]
    asked = ending.seen.get("cancel_asked", [])
    if running and set(running) <= set(asked):
        ok, msg = False, (f"when it {ended} at {seconds(ending.at)}, {plural(len(running), 'fetch')} "
                          f"{'was' if len(running) == 1 else 'were'} cancelled but still running "
                          f"({_keys(running)}): nobody waited for them to end")
    elif running:
        ok, msg = False, (f"when it {ended} at {seconds(ending.at)}, {plural(len(running), 'fetch')} "
                          f"{'was' if len(running) == 1 else 'were'} still running "
                          f"({_keys(running)}): the other fetches were not cancelled")
    elif ending.at > fail_at + TOLERANCE_S and ran_on:
        ok, msg = False, (f"the error reached the caller at {seconds(ending.at)}, "
                          f"{seconds(ending.at - fail_at)} after {sc.failing} failed at {at}: "
                          f"the other fetches ran to their end ({_keys([c.key for c in ran_on])}) "
                          "instead of being cancelled")
    elif ending.at > fail_at + TOLERANCE_S:
        ok, msg = False, (f"it {ended} at {seconds(ending.at)}, {seconds(ending.at - fail_at)} "
                          f"after {sc.failing} failed at {at}")
    else:
        stopped = [c for c in siblings if c.outcome == "cancelled"]
        ok, msg = True, (f"when {sc.failing} failed at {at}, the other "
                         f"{plural(len(stopped), 'fetch')} still running "
                         f"{'was' if len(stopped) == 1 else 'were'} cancelled at once" if stopped
                         else f"nothing else was running when {sc.failing} failed at {at}")
    waited_not = bool(running) and set(running) <= set(asked)
    report.add("the other fetches are cancelled at once", ok, msg,
               "You cancel the other tasks, but `task.cancel()` only asks: wait for them to end "
               "(`await asyncio.wait(tasks)`) before raising, or let a TaskGroup do both."
               if waited_not else
               "Use `async with asyncio.TaskGroup() as tg:` and `tg.create_task(...)`: the first "
               "failure cancels the other tasks. A plain `gather` leaves them running, and "
               "`gather(return_exceptions=True)` waits for all of them.",
               "cancelled but not awaited" if waited_not else
               "siblings left running" if running or ran_on else "slow to fail")

    # 3. Nothing starts again after the cancellation, and a cancelled fetch's task ends cancelled.
    if _judge_restarts(report, r, fail_at, f"after {sc.failing} failed at {at}", sc.failing):
        _judge_swallowed(report, r, f"when {sc.failing} failed")


def _judge_swallowed(report: Report, r: Run, when: str) -> None:
    """A task whose fetch was cancelled must itself end cancelled, not return a value.

    A per-key coroutine that catches CancelledError and returns (or raises something
    else) looks right from outside: the TaskGroup still raises, the results are not
    used. But the cancellation stops there: whoever awaits that task thinks it finished,
    and code after the except (a retry, a log, the next step) goes on running.
    """
    swallowed = [c for c in r.calls() if c.outcome == "cancelled" and c.task is not None
                 and c.task.done() and not c.task.cancelled()]
    if not swallowed:
        return
    prop = "a cancelled fetch stays cancelled"
    if any(f.prop == prop and not f.passed for f in report.findings):
        return  # already judged a failure in another run
    report.findings[:] = [f for f in report.findings if f.prop != prop]
    call = swallowed[0]
    exc = call.task.exception()
    how = ("returned a value" if exc is None else f"raised {type(exc).__name__}")
    report.add("a cancelled fetch stays cancelled", False,
               f"{when}, the fetch of {call.key} was cancelled, but its task {how} instead of "
               "ending cancelled: the cancellation was swallowed"
               + (f" (and {plural(len(swallowed) - 1, 'other')})" if len(swallowed) > 1 else ""),
               "Your per-key coroutine catches CancelledError and carries on. Let it end the "
               "task: re-raise it (a bare `raise` in that except block), and do the cleanup in "
               "`finally:`, which runs either way.", "swallowed cancellation")


def _judge_restarts(report: Report, r: Run, since: float, when: str, failing: str | None) -> bool:
    """A failure when a fetch started after ``since`` (a cancelled task that went on)."""
    seen: set[str] = set()
    again = []
    for call in r.calls():
        if call.start > since + TOLERANCE_S or call.key in seen:
            again.append(call)
        seen.add(call.key)
    if not again:
        return report.add("a cancelled fetch stays cancelled", True,
                          f"no fetch started again {when}")
    # A sibling that went on after being cancelled matters more than a retried failure.
    again.sort(key=lambda c: (c.key == failing, c.start))
    first = again[0]
    retried = first.key == failing
    msg = (f"{first.key} was fetched again at {seconds(first.start)}, {when}" +
           (": it was retried" if retried else
            ": a task caught its CancelledError and went on"))
    hint = ("Do not retry here: the exercise is all or nothing." if retried else
            "When you catch CancelledError (or BaseException, or use a bare `except:`), re-raise "
            "it: a task that swallows it keeps running, and the TaskGroup waits for it.")
    return report.add("a cancelled fetch stays cancelled", False, msg, hint,
                      "retried a failure" if retried else "swallowed cancellation")


def _judge_caller_cancel(report: Report, sc: Scenario, r: Run, obs) -> None:
    prop = "cancellation from the caller propagates"
    at = seconds(sc.cancel_at_s)
    hint = ("Never catch CancelledError without re-raising it: `except BaseException`, a bare "
            "`except:` or `except asyncio.CancelledError: return ...` hide the caller's "
            "cancellation. A TaskGroup passes it on to its tasks and re-raises it for you.")
    problem = _problem(obs, r)
    if problem:
        report.add(prop, False, problem, hint, "fails when cancelled")
        return
    ending = r.ending
    running = ending.seen.get("running", [])
    late = [c for c in r.calls() if c.start > sc.cancel_at_s + TOLERANCE_S]
    if ending.how == "cancelled" and not running and not late \
            and ending.at <= sc.cancel_at_s + TOLERANCE_S:
        report.add(prop, True, f"cancelled by its caller at {at}, it cancelled every fetch and let "
                   "CancelledError through")
        _judge_swallowed(report, r, f"cancelled by its caller at {at}")
    elif running:
        report.add(prop, False, f"cancelled by its caller at {at}, it ended while "
                   f"{plural(len(running), 'fetch')} ({_keys(running)}) were still running",
                   "Start the fetches in a TaskGroup: when the block is cancelled, it cancels "
                   "every task and waits for them.", "siblings left running")
    elif late:
        report.add(prop, False, f"cancelled by its caller at {at}, it went on: "
                   f"{late[0].key} was fetched at {seconds(late[0].start)}", hint,
                   "swallowed cancellation")
    elif ending.how == "returned":
        report.add(prop, False, f"cancelled by its caller at {at}, it returned "
                   f"{short_repr(ending.value)} instead of letting CancelledError through: the "
                   "cancellation was swallowed", hint, "swallowed cancellation")
    elif ending.how == "raised":
        report.add(prop, False, f"cancelled by its caller at {at}, it raised "
                   f"{describe_error(ending.error)} instead of CancelledError", hint,
                   "cancellation replaced")
    else:
        report.add(prop, False, f"cancelled by its caller at {at}, it only ended at "
                   f"{seconds(ending.at)}", hint, "slow to cancel")


def _release_problem(r: Run) -> str | None:
    """What is wrong with the releases of one run, in a sentence; None when all is right."""
    released = r.ending.seen.get("released", [])
    done = [c for c in r.calls() if c.end is not None and c.end <= r.ending.at + TOLERANCE_S
            and c.key not in r.ending.seen.get("running", [])]
    fetched = Counter(c.key for c in r.calls())
    times: dict[str, list[float]] = {}
    for key, t in released:
        times.setdefault(key, []).append(t)
    order = {key: i for i, key in enumerate(r.service.latency_s_map)}
    times = dict(sorted(times.items(), key=lambda kv: order.get(kv[0], len(order))))
    never = [k for k in times if k not in fetched]
    if never:
        return f"in the run {r.what}, {never[0]} was released but never fetched"
    twice = [k for k, ts in times.items() if len(ts) > fetched[k]]
    if twice:
        return (f"in the run {r.what}, {twice[0]} was released {len(times[twice[0]])} times for "
                f"{plural(fetched[twice[0]], 'fetch')}")
    # Pair the n-th fetch of a key with the n-th release of that key.
    nth: Counter[str] = Counter()
    missing, early = [], []
    for call in r.calls():  # in the order they started
        index = nth[call.key]
        nth[call.key] += 1
        if call not in done:
            continue
        released_at = times.get(call.key, [])
        if index >= len(released_at):
            missing.append(call)
        elif released_at[index] < call.end - TOLERANCE_S:
            early.append((call, released_at[index]))
    if missing:
        outcomes = Counter(OUTCOME_WORDS.get(c.outcome, c.outcome) for c in missing)
        why = ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items()))
        return (f"in the run {r.what}, {plural(len(missing), 'fetch')} "
                f"{'was' if len(missing) == 1 else 'were'} never released "
                f"({_keys([c.key for c in missing])}; {why})")
    if early:
        call, t = early[0]
        return (f"in the run {r.what}, {call.key} was released at {seconds(t)}, before its fetch "
                f"ended at {seconds(call.end)}")
    return None


def _judge_releases(report: Report, runs: list[Run]) -> None:
    problem = next((p for p in map(_release_problem, runs) if p), None)
    diagnosis = ("" if problem is None else "released without a fetch" if "never fetched" in problem
                 else "released twice" if " times for " in problem
                 else "released too early" if "before its fetch ended" in problem
                 else "never releases")
    hints = {
        "released without a fetch": "Release only the keys you fetched, once each fetch ends.",
        "released twice": "Release each fetch once: in one `finally:` block around "
                          "`await fetch(key)`, and nowhere else.",
        "released too early": "Release a key after its fetch has ended: in a `finally:` block "
                              "around `await fetch(key)`, not before the fetch is awaited.",
        "never releases": "Call release(key) in a `finally:` block around `await fetch(key)`, so "
                          "that it runs whether the fetch returns, fails or is cancelled. "
                          "`except Exception:` does not see CancelledError.",
    }
    report.add("every fetch released", problem is None,
               "every fetch was released once, after it ended, in every run"
               if problem is None else problem, hints.get(diagnosis, ""), diagnosis)


EXERCISES = {"fetch_all_or_nothing": check_fetch_all_or_nothing}
