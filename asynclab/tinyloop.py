"""A tiny event loop for lesson 16: generators, a timer heap and a selector.

It is the loop the lesson builds by hand, with the same four steps as
asyncio's ``BaseEventLoop._run_once``, split into one method each so that a
notebook can run them one at a time and look at the loop between them:

1. ``compute_timeout()``: 0 if callbacks are ready, else the time until the
   nearest timer, else ``None`` (only I/O can wake the loop);
2. ``poll_io(timeout)``: ask the selector which sockets are ready, waiting at
   most ``timeout``; their callbacks join the ready queue;
3. ``move_due_timers()``: pop every timer whose deadline has passed from the
   heap into the ready queue, earliest first;
4. ``run_ready()``: run the callbacks that are ready *now*, and only those.

``step()`` runs the four and returns an ``Iteration`` that says what each did;
``run()`` steps until nothing is left. Every task's running stretches are
recorded in a ``asynclab.timeline.Timeline`` (``loop.timeline.show()``).

Tasks are generators that yield requests to the loop:

* ``("sleep", seconds)``: resume me after ``seconds``;
* ``("read", sock)``: resume me when ``sock`` has data to read.

With ``virtual=True`` the loop keeps its own clock, which starts at 0: when
step 2 would wait, the selector is only polled and the clock jumps forward by
the timeout instead (the trick ``asynclab.run_virtual`` uses for whole asyncio
programs). Socket readiness is still the operating system's, so a socketpair
works the same on both clocks, and the printed times are exact.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from asynclab.timeline import CANCELLED, FAILED, FINISHED, TaskRecord, Timeline

__all__ = ["Handle", "Iteration", "TinyLoop", "TinyTask", "VirtualClock"]

# How long a virtual loop really waits for I/O when nothing else could ever wake it.
IO_WAIT_LIMIT_S = 5.0

Request = tuple[str, Any]


class VirtualClock:
    """A clock that only moves when told to: ``clock()`` reads it, ``advance_to(t)`` moves it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, when)


@dataclass
class Handle:
    """A callback waiting in the ready queue or the timer heap, with a label to print."""

    label: str
    callback: Callable[[], None] = field(repr=False)

    def __call__(self) -> None:
        self.callback()


@dataclass
class TinyTask:
    """A generator driven by the loop, and how it ended."""

    name: str
    gen: Generator[Request, Any, Any] = field(repr=False)
    record: TaskRecord = field(repr=False)
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class Iteration:
    """What one turn of the loop did (times are seconds since the loop was made)."""

    number: int
    at: float
    timeout: float | None
    why: str
    waited: float
    io: list[str]
    timers: list[str]
    ran: list[str]

    def describe(self) -> str:
        timeout = "None" if self.timeout is None else f"{self.timeout:.3f}"
        lines = [f"iteration {self.number} at {self.at:.3f} s",
                 f"  1. timeout = {timeout}: {self.why}",
                 f"  2. select waited {self.waited:.3f} s; I/O ready: {_names(self.io)}",
                 f"  3. due timers moved to the ready queue: {_names(self.timers)}",
                 f"  4. ran: {_names(self.ran)}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _names(labels: list[str]) -> str:
    return ", ".join(labels) if labels else "none"


class TinyLoop:
    """A ready queue, a timer heap and a selector, turned one iteration at a time."""

    def __init__(self, *, virtual: bool = False,
                 selector: selectors.BaseSelector | None = None) -> None:
        self.virtual = virtual
        self.clock: Callable[[], float] = VirtualClock() if virtual else time.monotonic
        self.selector = selector if selector is not None else selectors.DefaultSelector()
        self.ready: deque[Handle] = deque()
        self.timers: list[tuple[float, int, Handle]] = []
        self.tasks: list[TinyTask] = []
        self.iterations: list[Iteration] = []
        self.timeline = Timeline(self.clock, virtual=virtual)
        self.t0 = self.timeline.t0
        self.turns = 0  # iterations completed, whether by step() or by the four steps by hand
        self._sequence = itertools.count()
        self._wake_at: float | None = None

    # -- scheduling ------------------------------------------------------
    def call_soon(self, callback: Callable[[], None], label: str) -> Handle:
        handle = Handle(label, callback)
        self.ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[[], None], label: str) -> Handle:
        """Run ``callback`` at loop time ``when``; ties keep the order they were scheduled in."""
        handle = Handle(label, callback)
        heapq.heappush(self.timers, (when, next(self._sequence), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None], label: str) -> Handle:
        return self.call_at(self.clock() + delay, callback, label)

    def add_reader(self, sock: Any, callback: Callable[[], None], label: str) -> Handle:
        """Run ``callback`` once, when ``sock`` becomes readable."""
        handle = Handle(label, callback)
        self.selector.register(sock, selectors.EVENT_READ, handle)
        return handle

    def spawn(self, gen: Generator[Request, Any, Any], name: str | None = None) -> TinyTask:
        """Start a generator as a task: its first step runs in the next iteration."""
        name = name or getattr(gen, "__name__", "task")
        record = TaskRecord(name, self.clock())
        self.timeline.records.append(record)
        task = TinyTask(name, gen, record)
        self.tasks.append(task)
        self.call_soon(lambda: self._resume(task), f"start {name}")
        return task

    def _resume(self, task: TinyTask) -> None:
        """Run ``task`` up to its next ``yield`` and obey the request it yields."""
        record, start = task.record, self.clock()
        try:
            kind, arg = next(task.gen)
        except StopIteration as stop:
            task.done, task.result = True, stop.value
            self._end(record, start, FINISHED)
            return
        except Exception as exc:  # a task's bug ends that task, not the loop (as in asyncio)
            task.done, task.error = True, exc
            self._end(record, start, FAILED, f"{type(exc).__name__}: {exc}")
            return
        record.add_step(start, self.clock())
        if kind == "sleep":
            self.call_later(arg, lambda: self._resume(task), f"wake {task.name}")
        elif kind == "read":
            self.add_reader(arg, lambda: self._resume(task), f"{task.name}: socket readable")
        else:
            task.gen.close()
            task.done, task.error = True, ValueError(f"unknown request {kind!r}")
            self._end(record, self.clock(), CANCELLED, f"unknown request {kind!r}")

    def _end(self, record: TaskRecord, start: float, outcome: str, error: str | None = None) -> None:
        end = self.clock()
        record.add_step(start, end)
        record.ended, record.outcome, record.error = end, outcome, error

    # -- the four steps of one iteration ---------------------------------
    def compute_timeout(self) -> tuple[float | None, str]:
        """Step 1: how long may ``select`` wait? Returns the timeout and why."""
        self._wake_at = None
        if self.ready:
            return 0.0, f"{len(self.ready)} callback(s) ready, so poll without waiting"
        if self.timers:
            when, _, handle = self.timers[0]
            self._wake_at = when
            return max(0.0, when - self.clock()), f"the nearest timer is '{handle.label}'"
        if self.selector.get_map():
            return None, "no callbacks, no timers: only I/O can wake the loop"
        return 0.0, "nothing scheduled at all"

    def poll_io(self, timeout: float | None) -> list[str]:
        """Step 2: wait for I/O (at most ``timeout``); ready sockets' callbacks join the queue."""
        watching = bool(self.selector.get_map())
        if self.virtual:
            events = self.selector.select(0) if watching else []
            if not events and timeout is None:
                events = self.selector.select(IO_WAIT_LIMIT_S)  # really wait: only I/O is left
                if not events:
                    raise RuntimeError("deadlock: every task waits for I/O that never came")
            elif not events and timeout:
                assert isinstance(self.clock, VirtualClock)
                self.clock.advance_to(self._wake_at if self._wake_at is not None
                                      else self.clock() + timeout)
        elif watching:
            events = self.selector.select(timeout)
        else:  # some selectors (Windows' select) refuse to wait on no sockets at all
            time.sleep(timeout or 0)
            events = []
        labels = []
        for key, _ in events:
            self.selector.unregister(key.fileobj)
            self.ready.append(key.data)
            labels.append(key.data.label)
        return labels

    def move_due_timers(self) -> list[str]:
        """Step 3: every timer whose deadline has passed joins the ready queue, earliest first."""
        now, labels = self.clock(), []
        while self.timers and self.timers[0][0] <= now:
            handle = heapq.heappop(self.timers)[2]
            self.ready.append(handle)
            labels.append(handle.label)
        return labels

    def run_ready(self) -> list[str]:
        """Step 4: run the callbacks ready now; those they schedule wait for the next turn."""
        labels = []
        for _ in range(len(self.ready)):
            handle = self.ready.popleft()
            labels.append(handle.label)
            handle()
        self.turns += 1
        return labels

    # -- whole iterations ------------------------------------------------
    def step(self) -> Iteration:
        """Run one iteration (the four steps) and say what it did."""
        at = self.clock()
        timeout, why = self.compute_timeout()
        before = self.clock()
        io = self.poll_io(timeout)
        waited = self.clock() - before
        timers = self.move_due_timers()
        ran = self.run_ready()
        iteration = Iteration(self.turns, at - self.t0, timeout, why, waited, io, timers, ran)
        self.iterations.append(iteration)
        return iteration

    def alive(self) -> bool:
        """Is anything left to do: a ready callback, a timer, a watched socket?"""
        return bool(self.ready or self.timers or self.selector.get_map())

    def run(self, max_iterations: int = 10_000) -> list[Iteration]:
        """Step until nothing is left; returns this run's iterations."""
        first = len(self.iterations)
        while self.alive():
            if len(self.iterations) - first >= max_iterations:
                raise RuntimeError(f"still busy after {max_iterations} iterations")
            self.step()
        self.timeline.t1 = self.clock()
        return self.iterations[first:]

    # -- looking at it ---------------------------------------------------
    def state(self) -> str:
        """The three data structures, in words (times relative to the loop's start)."""
        timers = [f"{handle.label} at {when - self.t0:.3f} s"
                  for when, _, handle in sorted(self.timers, key=lambda t: t[:2])]
        watching = [key.data.label for key in self.selector.get_map().values()]
        return "\n".join([f"  ready queue: {_names([h.label for h in self.ready])}",
                          f"  timer heap:  {_names(timers)}",
                          f"  selector:    {_names(watching)}"])

    def close(self) -> None:
        self.selector.close()

    def __enter__(self) -> "TinyLoop":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
