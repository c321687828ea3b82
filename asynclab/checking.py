"""The machinery behind every exercise check: run, observe, judge, report.

A check runs the learner's coroutine function on virtual time (``run_virtual``)
inside ``trace()`` and a blocking-call detector, against fake I/O it controls,
and then judges *behaviour*: what was returned, how long it took on the virtual
clock, how many calls overlapped, what was cancelled, what blocked the loop.
The verdict depends only on virtual time and on the order of events, so it is
the same on an idle laptop and on a loaded CI machine.

``Report`` is what a check cell shows: one line per property, what was observed
when it failed, a hint, and the timeline of the learner's own run.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from asynclab.blocking import BlockingCall
from asynclab.timeline import Timeline, trace, traced
from asynclab.vtime import HangError, run_virtual

__all__ = ["Finding", "Observation", "Report", "observe", "common_findings"]

PASS_MARK, FAIL_MARK = "PASS", "FAIL"


@dataclass
class Finding:
    """One property of the learner's code, judged."""

    prop: str  # short name of the property, e.g. "limit respected"
    passed: bool
    message: str  # what was observed, in a sentence
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"property": self.prop, "passed": self.passed, "message": self.message,
                "hint": self.hint}


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
        try:
            run = run_virtual(traced_call, max_virtual_s=max_virtual_s,
                              wall_limit_s=wall_limit_s, namespaces=namespaces)
        except HangError as exc:
            obs.hang = exc
        else:
            obs.result, obs.error, obs.elapsed = run.result, run.error, run.elapsed
            obs.blocking_calls = run.blocking_calls
        gc.collect()  # surfaces "coroutine ... was never awaited" warnings now
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
        findings.append(Finding("finishes", False, f"{fn_name} did not finish: {obs.hang}",
                                hints[obs.hang.reason]))
        return findings
    if isinstance(obs.error, NotImplementedError):
        findings.append(Finding("written", False, f"{fn_name} is not written yet "
                                "(it raised NotImplementedError).",
                                "Replace the `raise NotImplementedError` line in the answer cell "
                                "with your code, run that cell, then run this check again."))
        return findings
    if obs.error is not None:
        findings.append(Finding("runs without error", False,
                                f"{fn_name} raised {_describe_error(obs.error)}",
                                "Read the error above; run your function by hand on a small "
                                "input to see where it fails."))
    pending = _awaitables_in(obs.result)
    if pending:
        findings.append(Finding("every coroutine awaited", False,
                                f"the result holds {len(pending)} un-awaited object(s) where values "
                                f"belong, e.g. a {pending[0]}: a forgotten `await`",
                                "Calling a coroutine function only creates a coroutine object; "
                                "`await` it to get its value."))
    elif inspect.isawaitable(obs.result):
        what = (f"coroutine object {obs.result.__qualname__}()" if inspect.iscoroutine(obs.result)
                else f"{type(obs.result).__name__} object")
        if inspect.iscoroutine(obs.result):
            obs.result.close()  # reported here; no "never awaited" warning later
        findings.append(Finding("returns a value, not an awaitable", False,
                                f"{fn_name} returned a {what} instead of the finished result",
                                "You returned something that still has to be awaited: "
                                "`return await ...`, not `return ...`."))
    elif obs.never_awaited:
        findings.append(Finding("every coroutine awaited", False,
                                f"{len(obs.never_awaited)} coroutine(s) were created but never "
                                f"awaited, so they never ran: {obs.never_awaited[0]}",
                                "Calling a coroutine function only creates a coroutine object; "
                                "put `await` in front of it, or hand it to create_task/gather."))
    if obs.blocking_calls:
        first = obs.blocking_calls[0]
        more = f" (and {len(obs.blocking_calls) - 1} more)" if len(obs.blocking_calls) > 1 else ""
        findings.append(Finding("never blocks the event loop", False,
                                f"blocking call on the event loop: {first.where()}{more}",
                                "A blocking call stops every other task. Use "
                                "`await asyncio.sleep(...)` instead of time.sleep, and "
                                "`await asyncio.to_thread(...)` for blocking functions."))
    return findings


def require_coroutine_function(fn_name: str, fn: Any) -> Finding | None:
    """A failure finding when ``fn`` is not an ``async def`` function."""
    if not callable(fn):
        return Finding("defined", False, f"{fn_name} is not a function (it is "
                       f"{type(fn).__name__}).", f"Define it with `async def {fn_name}(...)`.")
    if not asyncio.iscoroutinefunction(fn):
        return Finding("is a coroutine function", False,
                       f"{fn_name} is a plain function, not a coroutine function.",
                       f"Define it with `async def {fn_name}(...)` so that it can await.")
    return None


class Report:
    """The verdict on one exercise: findings, and the timeline of the learner's run."""

    def __init__(self, exercise: str, findings: list[Finding] | None = None,
                 timeline: Timeline | None = None) -> None:
        self.exercise = exercise
        self.findings: list[Finding] = list(findings or [])
        self.timeline = timeline

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.passed for f in self.findings)

    def add(self, prop: str, passed: bool, message: str, hint: str = "") -> bool:
        self.findings.append(Finding(prop, passed, message, "" if passed else hint))
        return passed

    def text(self) -> str:
        """Deterministic plain text: the same on every run of the same code."""
        failed = [f for f in self.findings if not f.passed]
        head = (f"{self.exercise}: all {len(self.findings)} checks passed" if self.passed
                else f"{self.exercise}: {len(failed)} of {len(self.findings)} checks failed")
        lines = [head]
        for f in self.findings:
            lines.append(f"  [{PASS_MARK if f.passed else FAIL_MARK}] {f.prop}: {f.message}")
            if not f.passed and f.hint:
                lines.append(f"         hint: {f.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "passed": self.passed,
                "findings": [f.to_dict() for f in self.findings]}

    def __repr__(self) -> str:
        return self.text()

    def _ipython_display_(self) -> None:
        print(self.text())
        if self.timeline is not None and self.timeline.records:
            self.timeline.show(title=f"your {self.exercise}: what each task did")
