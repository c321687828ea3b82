"""Checks for notebook 12_under_the_hood: one iteration of a tiny event loop.

This exercise is plain synchronous logic (the loop itself), so it is judged
by driving the learner's ``run_once`` with a fake clock and a fake selector,
not on virtual time.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any, Callable

from asynclab.checking import Finding, Report

NOTEBOOK = "12_under_the_hood"


class World:
    """A fake clock and selector, and a log of what ran."""

    def __init__(self, now: float, io_after: dict[float, list[str]] | None = None) -> None:
        self.now = now
        self.log: list[str] = []
        self.select_timeouts: list[float | None] = []
        self.io_after = io_after or {}
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    def select(self, timeout: float | None) -> list[Callable[[], None]]:
        """Record the timeout; time passes by it (a fake wait); return ready I/O callbacks."""
        self.select_timeouts.append(timeout)
        if timeout is not None and timeout > 0:
            self.now += timeout
        return [self.callback(name) for name in self.io_after.get(timeout or 0.0, [])]

    def callback(self, name: str, then: Callable[[], None] | None = None) -> Callable[[], None]:
        def run() -> None:
            self.log.append(name)
            if then is not None:
                then()
        run.__name__ = name
        return run

    def timer(self, deadline: float, name: str) -> tuple[float, int, Callable[[], None]]:
        return (deadline, next(self._seq), self.callback(name))


def _case(fn: Any, world: World, ready: deque, timers: list) -> str | None:
    """Run one iteration; None when it ran, else the error as text."""
    try:
        fn(ready, timers, world.clock, world.select)
    except Exception as exc:  # the learner's bug, reported as a finding
        return f"{type(exc).__name__}: {exc}"
    return None


def check_run_once(fn, *, variant: str = "public") -> Report:
    """Judge ``run_once(ready, timers, clock, select)``.

    Properties: the select timeout (0 with work ready, the time to the nearest
    timer otherwise, never negative, None with nothing scheduled); due timers
    moved to the ready queue in deadline order, later ones kept; I/O callbacks
    run; callbacks scheduled during the iteration wait for the next one.
    """
    report = Report("run_once")
    if not callable(fn):
        report.findings.append(Finding("defined", False, "run_once is not a function",
                                       "Define it with `def run_once(ready, timers, clock, select):`."))
        return report
    shift = 0.0 if variant == "public" else 100.0

    # 1. Work ready: poll without waiting.
    world = World(now=1.0 + shift)
    ready = deque([world.callback("a"), world.callback("b")])
    timers = [world.timer(5.0 + shift, "t")]
    error = _case(fn, world, ready, timers)
    if error:
        report.add("runs", False, f"run_once raised {error}", "Run it by hand on a tiny example.")
        return report
    ok = world.select_timeouts == [0] and world.log == ["a", "b"]
    report.add("polls when work is ready", ok,
               "with callbacks ready it called select(0) and ran them" if ok else
               f"with 2 callbacks ready: select timeouts {world.select_timeouts}, ran {world.log}",
               "When the ready queue is not empty, do not wait: select(0).")

    # 2. Only timers: sleep exactly until the nearest one; run it; keep the later one.
    world = World(now=1.0 + shift)
    timers = [world.timer(5.0 + shift, "late"), world.timer(3.0 + shift, "soon")]
    heapq.heapify(timers)
    ready = deque()
    _case(fn, world, ready, timers)
    timeout = world.select_timeouts[0] if world.select_timeouts else "not called"
    ok = timeout == 2.0 and world.log == ["soon"] and [t[0] for t in timers] == [5.0 + shift]
    report.add("waits until the nearest timer", ok,
               "it waited 2 s for the nearest timer, ran it, and kept the later one" if ok else
               f"nearest timer 2 s away: select({timeout}), ran {world.log}, timers left "
               f"{[t[0] - shift for t in timers]}",
               "Wait for timers[0][0] - clock() (the heap's smallest deadline), then move every "
               "timer whose deadline has passed to the ready queue with heapq.heappop.")

    # 3. Overdue timers: never a negative timeout; all due ones in deadline order.
    world = World(now=10.0 + shift)
    timers: list = []
    for deadline in (1.0, 5.0, 2.0, 6.0, 30.0):  # a valid heap whose list order is not sorted
        heapq.heappush(timers, world.timer(deadline + shift, f"t{deadline:g}"))
    _case(fn, world, deque(), timers)
    ok = world.select_timeouts == [0] and world.log == ["t1", "t2", "t5", "t6"]
    report.add("overdue timers run at once, in deadline order", ok,
               "four overdue timers: select(0), then all ran, earliest first" if ok else
               f"four overdue timers (t1, t2, t5, t6): select timeouts {world.select_timeouts}, "
               f"ran {world.log}",
               "Clamp the timeout at 0 (max(0, ...)) and pop due timers from the heap, which "
               "gives them in deadline order.")

    # 4. Nothing scheduled: wait for I/O without a timeout; run what I/O made ready.
    world = World(now=0.0, io_after={0.0: ["socket readable"]})
    world.io_after = {}
    captured: list[float | None] = []

    def select_forever(timeout):
        captured.append(timeout)
        return [world.callback("socket readable")]

    try:
        fn(deque(), [], world.clock, select_forever)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    ok = error is None and captured == [None] and world.log == ["socket readable"]
    report.add("blocks on I/O when nothing is scheduled", ok,
               "no work and no timers: it called select(None) and ran the I/O callback" if ok else
               f"no work and no timers: select timeouts {captured}, ran {world.log}"
               + (f", raised {error}" if error else ""),
               "With nothing ready and no timers, only I/O can wake the loop: select(None), then "
               "run the callbacks it returns.")

    # 5. A callback that schedules another: the new one waits for the next iteration.
    world = World(now=0.0)
    ready = deque()
    ready.append(world.callback("parent", then=lambda: ready.append(world.callback("child"))))
    _case(fn, world, ready, [])
    ok = world.log == ["parent"] and len(ready) == 1
    report.add("new callbacks wait for the next iteration", ok,
               "a callback scheduled during the iteration was left for the next one" if ok else
               f"ran {world.log}: a callback scheduled during this iteration ran in it too",
               "Count the ready callbacks before running them (n = len(ready)) and run only "
               "those n; otherwise a callback that keeps rescheduling itself starves the I/O.")
    return report


EXERCISES = {"run_once": check_run_once}
