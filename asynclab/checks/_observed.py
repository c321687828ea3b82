"""Helpers shared by the checks of notebooks 01-04 (candidates for ``asynclab.checking``).

``basic_findings`` is ``checking.common_findings`` with two gaps closed:

* when the learner's function raises and no coroutine was left un-awaited,
  ``common_findings`` (0.1.0) indexes an empty list and crashes the check; here
  the run is reported as "runs without error" with the learner's line;
* a never-awaited coroutine that is not what the function returned was
  reported as "returned ... instead of the finished result", which is wrong
  when the function did return a proper value; it is reported here as
  "every coroutine awaited", naming the coroutine. A coroutine or future
  returned *as the result* is reported as "returns a value, not an awaitable".
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import traceback
import warnings
from dataclasses import replace
from typing import Any

from asynclab.checking import Finding, Observation, _describe_error, common_findings

__all__ = ["basic_findings", "describe_error", "awaitable_name", "close_if_coroutine"]

AWAIT_HINT = ("Calling a coroutine function only creates a coroutine object; put `await` in "
              "front of it, or hand it to asyncio.create_task / asyncio.gather.")


def describe_error(exc: BaseException) -> str:
    """``"ValueError: bad (in my_fn(), line 3)"``: the error and the learner's innermost line."""
    return _describe_error(exc)


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
                              "to see where it fails."))
        usable = replace(obs, error=None, result=None)
    if usable.hang is None and usable.error is None and inspect.isawaitable(usable.result):
        what = awaitable_name(usable.result)
        close_if_coroutine(usable.result)
        prefix.append(Finding("returns a value, not an awaitable", False,
                              f"{fn_name} returned {what} instead of the finished result: "
                              "a forgotten `await`",
                              "You returned something that still has to be awaited: write "
                              "`return await ...`, not `return ...`."))
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
                              f"awaited, so they never ran: {names}", AWAIT_HINT)
        findings.append(finding)
    return prefix + findings


def _with_coroutines_held_by_the_error(obs: Observation) -> Observation:
    """Also count the coroutines that only the error's traceback still kept alive.

    A learner's error can leave un-awaited coroutines in the local variables of
    its frames (``asyncio.wait([coro(), ...])`` raising TypeError); they would
    only warn much later, outside the check. Clearing the frames' locals (the
    code and line numbers stay, for the report) lets them be collected now.
    """
    if obs.error is None or obs.error.__traceback__ is None:
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
