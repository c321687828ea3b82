"""Record what asyncio tasks do over time, and draw it as a timeline.

``trace()`` installs a task factory on the running loop for the duration of a
``with`` block. Every task created inside the block (directly, or by ``gather``,
``TaskGroup``, ``wait_for`` ...) gets its coroutine wrapped in a thin driver that
notes, on the loop's own clock, each moment the task starts running and each
moment it gives control back. Between two such moments the task was *running*;
between a suspension and the next resume it was *waiting*.

The loop's clock is used on purpose: on a real loop it is ``time.monotonic``; on
a virtual-time loop (``asynclab.vtime``) it is the virtual clock, so the same
timeline shows minutes of virtual sleeping that took milliseconds.

Guarantees:

* Tracing does not change scheduling: the wrapper forwards every value sent
  and every exception thrown to the real coroutine, and yields exactly what it
  yields.
* The previous task factory (if any) is restored when the block exits, even on
  error, and is still used to build the tasks while tracing.
* Tasks are recorded in the order they were created, which is the row order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

__all__ = ["TaskRecord", "Timeline", "trace", "traced", "active_timeline"]

# What ended a task. "running" means the trace ended before the task did.
FINISHED, FAILED, CANCELLED, RUNNING = "finished", "failed", "cancelled", "running"


@dataclass(slots=True)
class TaskRecord:
    """One task's life: when it was created, when it ran, and how it ended."""

    name: str
    created: float
    # (start, end) of each stretch during which the task's code ran.
    steps: list[tuple[float, float]] = field(default_factory=list)
    outcome: str = RUNNING
    ended: float | None = None
    error: str | None = None
    task: Any = field(default=None, repr=False, compare=False)
    coro: Any = field(default=None, repr=False, compare=False)

    def resolve_name(self) -> None:
        """Take the task's own name when it was given one (``create_task(..., name=...)``).

        Python 3.11 and 3.12 name a task after the factory returns, only when a
        name was given; CPython 3.13.0 calls ``task.set_name(name)`` even when
        ``name`` is None, which names it ``"None"``: that is not a name.
        """
        if self.task is not None:
            given = self.task.get_name()
            if not given.startswith("Task-") and given != "None":
                self.name = given

    def settle(self) -> None:
        """At the end of the trace: note a task that was cancelled before its first step.

        Such a task never touched its coroutine; it is closed here, or Python
        would later warn that it "was never awaited" although it was handed
        to a task. References to the task and coroutine are then dropped.
        """
        self.resolve_name()
        coro, task = self.coro, self.task
        self.coro = self.task = None
        if (self.outcome == RUNNING and task is not None and task.done()
                and inspect.iscoroutine(coro)
                and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED):
            coro.close()
            self.outcome = CANCELLED if task.cancelled() else FAILED
            self.ended = self.created

    @property
    def started(self) -> float | None:
        return self.steps[0][0] if self.steps else None

    @property
    def duration(self) -> float | None:
        """Seconds from the first step to the end, or None if it never ended."""
        if self.ended is None or not self.steps:
            return None
        return self.ended - self.steps[0][0]


def _stop(rec: TaskRecord, start: float, end: float, exc: BaseException | None) -> None:
    """Record the last step and how the coroutine ended (``exc`` None: it returned)."""
    rec.ended = end
    rec.steps.append((start, end))
    if exc is None:
        rec.outcome = FINISHED
        return
    rec.outcome = CANCELLED if isinstance(exc, asyncio.CancelledError) else FAILED
    rec.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@types.coroutine
def _timed_steps(coro: Any, rec: TaskRecord, clock: Callable[[], float]) -> Any:
    """Drive ``coro`` one step at a time, timing each step; yield what it yields.

    This is the hot path of tracing, so it is a generator: resuming a generator
    frame costs less than a Python method call per step, and the native
    coroutine that awaits it (``_traced``) keeps asyncio's fast path for tasks.
    Values sent and exceptions thrown in are passed on unchanged.
    """
    steps = rec.steps
    send, throw = coro.send, coro.throw
    value: Any = None
    error: BaseException | None = None
    while True:
        start = clock()
        try:
            if error is None:
                future = send(value)
            else:
                future, error = throw(error), None
        except StopIteration as done:
            _stop(rec, start, clock(), None)
            return done.value
        except BaseException as exc:
            _stop(rec, start, clock(), exc)
            raise
        steps.append((start, clock()))
        try:
            value = yield future
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # CancelledError and friends, thrown in by the task
            error = exc


async def _traced(coro: Any, rec: TaskRecord, clock: Callable[[], float]) -> Any:
    return await _timed_steps(coro, rec, clock)


_ACTIVE: contextvars.ContextVar["Timeline | None"] = contextvars.ContextVar(
    "asynclab_active_timeline", default=None
)


@functools.lru_cache(maxsize=1024)
def _short_name(qualname: str) -> str:
    return qualname.rpartition("<locals>.")[2]


def _coro_name(coro: Any) -> str:
    """``"FakeService.fetch"`` or ``"two_waits"``: the qualified name without ``<locals>``."""
    name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    return _short_name(name or type(coro).__name__)


class Timeline:
    """The recorded tasks of one ``trace()`` block, ready to draw or inspect."""

    def __init__(self, clock: Callable[[], float], virtual: bool = False):
        self.clock = clock
        self.virtual = virtual
        self.records: list[TaskRecord] = []
        self.t0 = clock()
        self.t1: float | None = None

    # -- recording -------------------------------------------------------
    def wrap(self, coro: Any, name: str | None = None) -> tuple[Any, TaskRecord]:
        """Wrap ``coro`` so that its steps are recorded as one row; returns (wrapped, record)."""
        rec = TaskRecord(name or _coro_name(coro), self.clock())
        rec.coro = coro
        self.records.append(rec)
        return _traced(coro, rec, self.clock), rec

    # -- reading ---------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds from the start of the trace to its end (or to now)."""
        end = self.t1 if self.t1 is not None else self.clock()
        return end - self.t0

    def _resolve_names(self) -> None:
        for record in self.records:
            record.resolve_name()

    def names(self) -> list[str]:
        self._resolve_names()
        return [r.name for r in self.records]

    def max_overlap(self) -> int:
        """The largest number of recorded tasks alive (started, not ended) at once."""
        events: list[tuple[float, int]] = []
        for r in self.records:
            if r.started is None:
                continue
            end = r.ended if r.ended is not None else float("inf")
            events.append((r.started, 1))
            events.append((end, -1))
        # At equal times, ends come before starts: a hand-over is not an overlap.
        events.sort(key=lambda e: (e[0], e[1]))
        best = now = 0
        for _, delta in events:
            now += delta
            best = max(best, now)
        return best

    def summary(self, digits: int = 2) -> str:
        """A short text summary; deterministic on virtual time."""
        unit = "virtual s" if self.virtual else "s"
        self._resolve_names()
        lines = [f"{len(self.records)} tasks, {self.elapsed:.{digits}f} {unit} in all"]
        for r in self.records:
            start = (r.started if r.started is not None else r.created) - self.t0
            end = "-" if r.ended is None else f"{r.ended - self.t0:.{digits}f}"
            lines.append(f"  {r.name:<24} {start:.{digits}f} -> {end}  {r.outcome}")
        return "\n".join(lines)

    # -- drawing ---------------------------------------------------------
    def figure(self, title: str | None = None, width: float = 7.0):
        """Draw the timeline as a matplotlib ``Figure`` (not shown, not registered with pyplot)."""
        from asynclab.plotting import draw_timeline

        self._resolve_names()
        return draw_timeline(self, title=title, width=width)

    def png(self, title: str | None = None) -> bytes:
        from asynclab.plotting import figure_png

        return figure_png(self.figure(title=title))

    def show(self, title: str | None = None) -> None:
        """Display the timeline in a notebook, as a PNG."""
        from asynclab.plotting import show

        show(self.figure(title=title))

    def __repr__(self) -> str:
        kind = "virtual" if self.virtual else "real"
        return f"<Timeline: {len(self.records)} tasks on {kind} time>"


def _fast_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock; ``time.monotonic`` itself when that is what ``loop.time`` returns.

    Calling the C function directly instead of the ``loop.time`` method keeps
    the per-step cost of tracing low (see scripts/bench_tracing.py).
    """
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


def _is_virtual(loop: asyncio.AbstractEventLoop) -> bool:
    return bool(getattr(loop, "looptime_on", False))


@contextlib.contextmanager
def trace() -> Iterator[Timeline]:
    """Record every task created on the running loop while the block runs.

    Use it inside a coroutine (or at the top level of a notebook cell)::

        with trace() as timeline:
            await asyncio.gather(task_a(), task_b())
        timeline.show()
    """
    loop = asyncio.get_running_loop()
    timeline = Timeline(_fast_clock(loop), virtual=_is_virtual(loop))
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        wrapped, record = timeline.wrap(coro, name=kwargs.get("name"))
        if previous is not None:
            task = previous(loop, wrapped, **kwargs)
        else:
            task = asyncio.Task(wrapped, loop=loop, **kwargs)
        # Python 3.11 sets a task's name only after the factory returns: read it later.
        record.task = task
        return task

    loop.set_task_factory(factory)
    token = _ACTIVE.set(timeline)
    try:
        yield timeline
    finally:
        _ACTIVE.reset(token)
        loop.set_task_factory(previous)
        timeline.t1 = loop.time()
        for record in timeline.records:
            record.settle()


def active_timeline() -> "Timeline | None":
    """The timeline of the ``trace()`` block the calling code runs in, or None outside one."""
    return _ACTIVE.get()


def traced(coro: Any, name: str | None = None) -> Any:
    """Give a coroutine that is awaited directly (not as a task) its own row.

    Inside a ``trace()`` block, ``await traced(step())`` records ``step`` like a
    task; outside one it returns the coroutine unchanged.
    """
    timeline = _ACTIVE.get()
    if timeline is None:
        return coro
    return timeline.wrap(coro, name=name)[0]
