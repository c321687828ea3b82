"""Helpers for checks that observe several runs of one function (notebooks 06 and 07).

Candidates for ``asynclab.checking``:

* ``safe_findings`` is ``common_findings`` without its crash: when the learner's
  function raises and no coroutine was left un-awaited, ``common_findings``
  (0.1.0) indexes an empty list. Here the error is reported as
  "runs without error" with the learner's line, and the rest is judged as usual.
* ``add_new`` adds findings to a report, skipping properties it already has, so
  that a blocking call seen in three runs is reported once.
* ``ending_of`` records how and when the learner's call ended (returned, raised,
  cancelled) and snapshots, in that same step, what was still going on: a
  run_virtual loop cancels left-over tasks when it closes, so looking only at the
  end of the run would make "never cancelled" look like "cancelled at the right
  moment". It can also cancel the call after a while, as a caller would.
* ``describe_error`` names the first error inside an ExceptionGroup (with the
  learner's line), not just the group.

``safe_findings`` patches the same crash as ``_observed.basic_findings`` (checks
01-04); the fix belongs in ``checking.common_findings`` itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

from asynclab.checking import Finding, Observation, Report, _describe_error, common_findings
from asynclab.timeline import traced

__all__ = ["safe_findings", "add_new", "describe_error", "Ending", "ending_of", "seconds",
           "short_repr"]


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
                        "where it fails.")
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
