"""The machinery behind every exercise check: run, observe, judge, report.

A check runs the learner's coroutine function on virtual time (``run_virtual``)
inside ``trace()`` and a blocking-call detector, against fake I/O it controls,
and then judges *behaviour*: what was returned, how long it took on the virtual
clock, how many calls overlapped, what was cancelled, what blocked the loop.
The verdict depends only on virtual time and on the order of events, so it is
the same on an idle laptop and on a loaded CI machine.

What asyncio leaves to chance is settled on purpose: ``varied`` runs a check
more than once, first as scheduled, then with timers due at the same instant
fired in reverse order and sets of tasks iterated newest first (and, for the
hidden variant, in an order drawn from the seed). Code that depends on luck
fails in one of the runs, every time, and the report names that run. Hidden
inputs are drawn from ``hidden_rng(variant, seed)``.

Each failed ``Finding`` carries a *diagnosis* (what the code did: "swallowed
cancellation", "blocked the loop", "results in set order", ...), decided from
the observation before its hint is chosen, so that a hint never asks for what
the code already does.

``Report`` is what a check cell shows: one line per property, what was observed
when it failed, a hint, and the timeline of the learner's own run (``Finding`` and
``Report`` live in ``asynclab.findings``, which the grader reads without the rest).

Shared helpers for the checks live here too (``basic_findings``,
``safe_findings``, ``ending_of``, ``closing_unstarted``, ...); the fake
services live in ``asynclab.fakes``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import random
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

from asynclab.blocking import HELD, BlockingCall
from asynclab.findings import FAIL_MARK, PASS_MARK, Finding, Report
from asynclab.timeline import Timeline, trace, traced
from asynclab.vtime import HangError, Variation, run_virtual, varied_runs

__all__ = ["Finding", "Observation", "Report", "observe", "common_findings", "basic_findings",
           "safe_findings", "add_new", "describe_error", "awaitable_name", "close_if_coroutine",
           "closing_unstarted", "still_pending", "Ending", "ending_of", "seconds", "short_repr",
           "plural", "require_coroutine_function", "varied", "variations", "hidden_rng",
           "blocking_finding"]

@dataclass
class Observation:
    """What happened when the learner's coroutine ran once on virtual time."""

    result: Any = None
    error: BaseException | None = None
    hang: HangError | None = None
    elapsed: float = 0.0
    timeline: Timeline | None = None
    blocking_calls: list[BlockingCall] = field(default_factory=list)
    never_awaited: list[str] = field(default_factory=list)
    error_frames_cleared: bool = False  # observe() already collected what the error held

    @property
    def completed(self) -> bool:
        return self.hang is None and self.error is None


def observe(make_call: Callable[[], Awaitable[Any]], *, name: str = "your function",
            namespaces: tuple[dict, ...] = (), max_virtual_s: float = 3600.0,
            wall_limit_s: float = 5.0) -> Observation:
    """Run ``make_call()`` once on virtual time and record everything a check needs.

    The call itself is the timeline's first row (``name``); every task it
    creates gets a row of its own.
    """
    obs = Observation()

    async def traced_call() -> Any:
        with trace() as timeline:
            obs.timeline = timeline
            return await traced(make_call(), name=name)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        # Everything older than the run is set aside (gc.freeze), so that the collection
        # below only looks at what the run made: a few milliseconds instead of a sweep of
        # the whole kernel's heap.
        gc.freeze()
        try:
            try:
                run = run_virtual(traced_call, max_virtual_s=max_virtual_s,
                                  wall_limit_s=wall_limit_s, namespaces=namespaces)
            except HangError as exc:
                obs.hang = exc
            else:
                obs.result, obs.error, obs.elapsed = run.result, run.error, run.elapsed
                obs.blocking_calls = run.blocking_calls
            if obs.error is not None and obs.error.__traceback__ is not None:
                # Coroutines that only the error's frames still hold (`asyncio.wait([coro()])`
                # raising TypeError) would warn much later, outside the check; the frames keep
                # their code and line numbers for the report.
                traceback.clear_frames(obs.error.__traceback__)
                obs.error_frames_cleared = True
            gc.collect()  # surfaces "coroutine ... was never awaited" warnings now
        finally:
            gc.unfreeze()
    obs.never_awaited = sorted({str(w.message) for w in caught
                                if "was never awaited" in str(w.message)})
    if obs.timeline is not None and obs.timeline.t1 is None:
        obs.timeline.t1 = obs.timeline.t0 + obs.elapsed
    return obs


def _describe_error(exc: BaseException) -> str:
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        if "asynclab" not in code.co_filename and "asyncio" not in code.co_filename:
            where = f" (in {code.co_name}(), line {tb.tb_lineno})"
        tb = tb.tb_next
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text + where


def _awaitables_in(result: Any) -> list[str]:
    """Describe coroutines/futures found inside a returned container (closing the coroutines)."""
    if isinstance(result, dict):
        items = list(result.values())
    elif isinstance(result, (list, tuple, set)):
        items = list(result)
    else:
        return []
    found = []
    for item in items:
        if inspect.iscoroutine(item):
            found.append(f"coroutine object {item.__qualname__}()")
            item.close()  # silence the "never awaited" warning: we report it ourselves
        elif inspect.isawaitable(item):
            found.append(f"{type(item).__name__} object")
    return found


def plural(n: int, word: str) -> str:
    """``plural(1, "fetch") == "1 fetch"``, ``plural(3, "fetch") == "3 fetches"``."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith(("s", "sh", "ch", "x")) else f"{n} {word}s"


def common_findings(fn_name: str, obs: Observation) -> list[Finding]:
    """The findings every exercise shares: finished, did not crash, did not block.

    An empty list means the run is usable for the exercise's own findings.
    Any finding returned here is a failure that makes the others meaningless,
    except blocking calls, which are reported alongside them.
    """
    findings: list[Finding] = []
    if obs.hang is not None:
        hints = {
            "deadlock": "Look for a task that waits on a queue, event or lock that nobody will "
                        "ever fill or release, for example a consumer with no way to stop.",
            "virtual-limit": "Something loops or waits far longer than the exercise needs: "
                             "a missing timeout, or a loop that never ends.",
            "wall-limit": "A loop that never reaches an `await` keeps the event loop from "
                          "doing anything else; make sure every loop awaits and ends.",
        }
        diagnosis = {"deadlock": "waits forever", "virtual-limit": "never ends",
                     "wall-limit": "never awaits"}[obs.hang.reason]
        findings.append(Finding("finishes", False, f"{fn_name} did not finish: {obs.hang}",
                                hints[obs.hang.reason], diagnosis))
        return findings
    if isinstance(obs.error, NotImplementedError):
        findings.append(Finding("written", False, f"{fn_name} is not written yet "
                                "(it raised NotImplementedError).",
                                "Replace the `raise NotImplementedError` line in the answer cell "
                                "with your code, run that cell, then run this check again.",
                                "not written"))
        return findings
    if obs.error is not None:
        findings.append(Finding("runs without error", False,
                                f"{fn_name} raised {_describe_error(obs.error)}",
                                "Read the error above; run your function by hand on a small "
                                "input to see where it fails.", "raised an error"))
    pending = _awaitables_in(obs.result)
    if pending:
        findings.append(Finding("every coroutine awaited", False,
                                f"the result holds {len(pending)} un-awaited object(s) where values "
                                f"belong, e.g. a {pending[0]}: a forgotten `await`",
                                "Calling a coroutine function only creates a coroutine object; "
                                "`await` it to get its value.", "forgotten await"))
    elif inspect.isawaitable(obs.result):
        what = (f"coroutine object {obs.result.__qualname__}()" if inspect.iscoroutine(obs.result)
                else f"{type(obs.result).__name__} object")
        if inspect.iscoroutine(obs.result):
            obs.result.close()  # reported here; no "never awaited" warning later
        findings.append(Finding("returns a value, not an awaitable", False,
                                f"{fn_name} returned a {what} instead of the finished result",
                                "You returned something that still has to be awaited: "
                                "`return await ...`, not `return ...`.", "returned an awaitable"))
    elif obs.never_awaited:
        findings.append(Finding("every coroutine awaited", False,
                                f"{len(obs.never_awaited)} coroutine(s) were created but never "
                                f"awaited, so they never ran: {obs.never_awaited[0]}",
                                "Calling a coroutine function only creates a coroutine object; "
                                "put `await` in front of it, or hand it to create_task/gather.",
                                "forgotten await"))
    if obs.blocking_calls:
        findings.append(blocking_finding(obs.blocking_calls))
    return findings


def blocking_finding(calls: list[BlockingCall]) -> Finding:
    """"never blocks the event loop", failed, with a hint that fits what blocked it."""
    first = calls[0]
    # Places, not calls: how many times a wait on a thread found the thread not done yet is
    # up to the threads; which lines block is up to the code.
    places = {(c.filename, c.lineno) for c in calls} - {(first.filename, first.lineno)}
    more = f" (and {plural(len(places), 'other line')})" if places else ""
    if first.what.startswith("time.sleep"):
        hint = ("time.sleep stops every other task while it sleeps; "
                "`await asyncio.sleep(...)` waits without blocking.")
    elif first.what == "a wait for another thread":
        hint = ("Waiting for a thread's result with `future.result()`, `executor.map(...)` or "
                "`event.wait()` freezes the loop until the thread is done; await it instead: "
                "`await loop.run_in_executor(...)`, `await asyncio.wrap_future(future)`, "
                "`await asyncio.to_thread(...)`.")
    elif first.what == HELD:
        hint = ("That line kept the loop's thread busy, so no other task could run: move slow "
                "work to a thread or process (`await asyncio.to_thread(...)`, "
                "`await loop.run_in_executor(...)`), or await between small pieces of it.")
    else:
        hint = ("A blocking function stops every other task while it runs; run it in a thread: "
                "`await asyncio.to_thread(...)` or `await loop.run_in_executor(...)`.")
    return Finding("never blocks the event loop", False,
                   f"blocking call on the event loop: {first.where()}{more}", hint,
                   "blocked the loop")


def require_coroutine_function(fn_name: str, fn: Any) -> Finding | None:
    """A failure finding when ``fn`` is not an ``async def`` function."""
    if not callable(fn):
        return Finding("defined", False, f"{fn_name} is not a function (it is "
                       f"{type(fn).__name__}).", f"Define it with `async def {fn_name}(...)`.",
                       "not a function")
    if not asyncio.iscoroutinefunction(fn):
        return Finding("is a coroutine function", False,
                       f"{fn_name} is a plain function, not a coroutine function.",
                       f"Define it with `async def {fn_name}(...)` so that it can await.",
                       "not async")
    return None


# -- shared by several checks (formerly checks/_observed.py and checks/_findings.py) --

AWAIT_HINT = ("Calling a coroutine function only creates a coroutine object; put `await` in "
              "front of it, or hand it to asyncio.create_task / asyncio.gather.")


def awaitable_name(value: Any) -> str:
    """``"a coroutine object fetch()"`` / ``"a Task object"``, never with a memory address."""
    if inspect.iscoroutine(value):
        return f"a coroutine object {value.__qualname__}()"
    return f"a {type(value).__name__} object"


def close_if_coroutine(value: Any) -> None:
    """Close a coroutine the check has reported itself, so Python does not warn about it later."""
    if inspect.iscoroutine(value):
        value.close()


def basic_findings(fn_name: str, obs: Observation) -> list[Finding]:
    """The findings every exercise shares (see the module docstring); empty when all is well.

    As with ``common_findings``, a failure here (other than blocking calls and
    un-awaited coroutines) makes the exercise's own findings meaningless.
    """
    prefix: list[Finding] = []
    obs = _with_coroutines_held_by_the_error(obs)
    if asyncio.isfuture(obs.result) and obs.result.done() and not obs.result.cancelled():
        obs.result.exception()  # retrieved: no "exception was never retrieved" log line later
    usable = obs
    if obs.hang is None and obs.error is not None \
            and not isinstance(obs.error, NotImplementedError) and not obs.never_awaited:
        prefix.append(Finding("runs without error", False,
                              f"{fn_name} raised {describe_error(obs.error)}",
                              "Read the error above; run your function by hand on a small input "
                              "to see where it fails.", "raised an error"))
        usable = replace(obs, error=None, result=None)
    if usable.hang is None and usable.error is None and inspect.isawaitable(usable.result):
        what = awaitable_name(usable.result)
        close_if_coroutine(usable.result)
        prefix.append(Finding("returns a value, not an awaitable", False,
                              f"{fn_name} returned {what} instead of the finished result: "
                              "a forgotten `await`",
                              "You returned something that still has to be awaited: write "
                              "`return await ...`, not `return ...`.", "returned an awaitable"))
        usable = replace(usable, result=None)
    findings = []
    for finding in common_findings(fn_name, usable):
        if finding.prop == "returns a value, not an awaitable":
            # common_findings' guess; the result itself was not awaitable (handled above).
            if any(f.prop == "every coroutine awaited" for f in findings):
                continue
            names = ", ".join(obs.never_awaited[:2])
            finding = Finding("every coroutine awaited", False,
                              f"{len(obs.never_awaited)} coroutine(s) were created but never "
                              f"awaited, so they never ran: {names}", AWAIT_HINT,
                              "forgotten await")
        findings.append(finding)
    return prefix + findings


def _with_coroutines_held_by_the_error(obs: Observation) -> Observation:
    """Also count the coroutines that only the error's traceback still kept alive.

    A learner's error can leave un-awaited coroutines in the local variables of
    its frames (``asyncio.wait([coro(), ...])`` raising TypeError); they would
    only warn much later, outside the check. Clearing the frames' locals (the
    code and line numbers stay, for the report) lets them be collected now.
    """
    if obs.error is None or obs.error.__traceback__ is None or obs.error_frames_cleared:
        return obs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        traceback.clear_frames(obs.error.__traceback__)
        gc.collect()
    found = {str(w.message) for w in caught if "was never awaited" in str(w.message)}
    if not found:
        return obs
    return replace(obs, never_awaited=sorted(set(obs.never_awaited) | found))


def still_pending(tasks: list[asyncio.Task]) -> list[asyncio.Task]:
    """The tasks that have not finished (``cancel()`` alone does not finish a task)."""
    return [task for task in tasks if not task.done()]


async def closing_unstarted(make_call: Any) -> Any:
    """Await ``make_call()`` while closing the coroutine of every task cancelled before it started.

    Under ``trace()``, a task's coroutine is wrapped; when such a task is
    cancelled before its first step, the wrapper ends without ever touching the
    learner's coroutine, and Python later warns that it "was never awaited",
    although it was handed to create_task. Without tracing there is no warning.
    This task factory (chained to the one already installed, i.e. trace's)
    closes those coroutines as their tasks finish, so that the check's
    "every coroutine awaited" finding only reports real forgotten awaits.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if inspect.iscoroutine(coro):
            task.add_done_callback(lambda _task, c=coro: c.close()
                                   if inspect.getcoroutinestate(c) == inspect.CORO_CREATED
                                   else None)
        return task

    loop.set_task_factory(factory)
    try:
        return await make_call()
    finally:
        loop.set_task_factory(previous)


def describe_error(exc: BaseException) -> str:
    """``"ValueError: bad (in my_fn(), line 3)"``: the error and the learner's innermost line.

    For an exception group, the first error inside it is described (with the group's size).
    """
    if isinstance(exc, BaseExceptionGroup):
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        count = len(exc.exceptions)
        return (f"{type(exc).__name__} of {count} error{'s' if count != 1 else ''}, the first: "
                f"{_describe_error(leaf)}")
    return _describe_error(exc)


def safe_findings(fn_name: str, obs: Observation) -> list[Finding]:
    """``common_findings`` that never crashes; empty when the run is usable."""
    if obs.hang is None and obs.error is not None and not obs.never_awaited \
            and not isinstance(obs.error, NotImplementedError):
        first = Finding("runs without error", False, f"{fn_name} raised {describe_error(obs.error)}",
                        "Read the error above; run your function by hand on a small input to see "
                        "where it fails.", "raised an error")
        return [first] + common_findings(fn_name, replace(obs, error=None, result=None))
    return common_findings(fn_name, obs)


def add_new(report: Report, findings: list[Finding]) -> None:
    """Add the findings whose property the report does not have yet."""
    have = {f.prop for f in report.findings}
    for finding in findings:
        if finding.prop not in have:
            report.findings.append(finding)
            have.add(finding.prop)


def short_repr(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis when longer."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def seconds(t: float) -> str:
    """``3.0 -> "3 s"``, ``4.5 -> "4.5 s"``: virtual times, rounded to the millisecond."""
    return f"{round(t, 3):g} s"


@dataclass
class Ending:
    """How the learner's call ended, and when (virtual seconds)."""

    how: str = "running"  # "returned", "raised", "cancelled" or "running"
    at: float = 0.0
    value: Any = None
    error: BaseException | None = None
    seen: dict[str, Any] = field(default_factory=dict)  # what `look()` saw at that moment


async def ending_of(call: Callable[[], Awaitable[Any]], look: Callable[[], dict[str, Any]],
                    *, catch: tuple[type[BaseException], ...] = (),
                    cancel_after_s: float | None = None, name: str = "call") -> Ending:
    """Await ``call()`` and record how and when it ended, and what ``look()`` saw right then.

    ``look()`` runs in the same step in which the call returns or raises, before
    any other task can run. The call gets a timeline row named ``name``. With
    ``cancel_after_s``, it runs as a task and is cancelled after that many
    seconds, as a caller would; otherwise it is awaited directly. Exceptions of the
    types in ``catch`` are recorded as ``"raised"``; others propagate, so that
    ``observe`` reports them (and a stub's NotImplementedError) as usual.
    """
    loop = asyncio.get_running_loop()
    ending = Ending()

    async def watched() -> Any:
        coro = call()
        if cancel_after_s is None:  # a task has a row of its own; a direct await needs one
            coro = traced(coro, name=name)
        try:
            return await coro
        finally:
            ending.at = loop.time()
            ending.seen = look()

    try:
        if cancel_after_s is None:
            ending.value = await watched()
        else:
            task = asyncio.create_task(watched(), name=name)
            await asyncio.wait({task}, timeout=cancel_after_s)
            if not task.done():
                task.cancel()
            ending.value = await task
        ending.how = "returned"
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # the check itself is being cancelled
            raise
        ending.how = "cancelled"
    except NotImplementedError:  # a stub: let observe report "not written yet"
        raise
    except catch as exc:
        ending.how, ending.error = "raised", exc
    return ending


# -- variations: the same verdict every time, for a reason ---------------------------------

DEFAULT_SEED = 20240611  # the hidden variant's inputs when no seed is given

_AS_SCHEDULED = Variation("everything happened as scheduled", identity="created")
_REVERSED = Variation("timers due at the same instant fired in reverse order and sets of "
                      "tasks were iterated newest first", ties="reversed", identity="reversed")


def variations(variant: str, seed: int | None) -> list[Variation]:
    """The runs a check makes, each the same every time.

    First as scheduled (timers due together in the heap's order, sets of tasks iterated in
    creation order), then with what asyncio leaves to chance reversed (which of two timers
    due together fires first, in which order a set of tasks is iterated); the hidden
    variant adds a third run whose order is drawn from ``seed``. Code whose outcome
    depends on that order fails in one of them, every time: no memory address decides.
    """
    runs = [_AS_SCHEDULED, _REVERSED]
    if variant != "public":
        rng = random.Random(DEFAULT_SEED if seed is None else seed)
        runs.append(Variation("timers due at the same instant and sets of tasks were ordered "
                              "at random (seeded)", ties="shuffled", identity="shuffled",
                              seed=rng.getrandbits(32)))
    return runs


def hidden_rng(variant: str, seed: int | None) -> random.Random:
    """Where a check draws its hidden inputs: ``Random(seed)``, a fixed default for None."""
    return random.Random(("hidden", DEFAULT_SEED if seed is None else seed, variant).__repr__())


def varied(check: Callable[..., Report]) -> Callable[..., Report]:
    """Run a check under every variation; the first failing run's report is the verdict.

    ``check(fn, *, variant, seed)`` runs its scenarios once. The wrapped check has the
    course's signature ``check(fn, *, variant="public", seed=None) -> Report``. A run
    that fails stops the others (wrong code costs one run); a run that fails after a
    passed one says, in its report, what that run did differently.
    """

    @functools.wraps(check)
    def run(fn: Any, *, variant: str = "public", seed: int | None = None) -> Report:
        first: Report | None = None
        for index, variation in enumerate(variations(variant, seed)):
            # The learner's own random numbers (a retry's jitter) are drawn from a seeded
            # `random` too, so that they cannot change the verdict from one check to the next.
            state = random.getstate()
            random.seed(variation.seed * 1009 + index)
            try:
                with varied_runs(variation):
                    report = check(fn, variant=variant, seed=seed)
            finally:
                random.setstate(state)
            if not report.passed:
                if index > 0:
                    report.variation = variation.name
                return report
            if first is None:
                first = report
        assert first is not None
        return first

    run.__wrapped_check__ = check  # type: ignore[attr-defined]
    return run

