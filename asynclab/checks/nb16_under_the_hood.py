"""Checks for notebook 16_under_the_hood: one iteration of a tiny event loop.

``run_once(ready, timers, clock, select)`` is plain synchronous logic (the
loop itself), so it is not run on virtual time. The check hands it a fake
clock and a fake ``select`` and plays six situations, each a single
iteration: work ready, only timers, overdue timers, only I/O, a callback that
schedules another, and ready work, I/O and a due timer together. Time moves
only when ``select`` is asked to wait, so the verdict depends on nothing but
what the learner's code did, in what order.

Busy-waiting cannot hang the check: the fake clock refuses to be read more
than ``MAX_CLOCK_READS`` times in one iteration. ``time.sleep`` is caught (and
skipped) by ``asynclab.blocking``'s detector.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from asynclab.blocking import BlockingDetector
from asynclab.checking import Finding, Report, _describe_error, hidden_rng, varied
from asynclab.fakes import MAX_CLOCK_READS, BusyWait, World

NOTEBOOK = "16_under_the_hood"


@dataclass(frozen=True)
class Numbers:
    """The times used by one variant of the check."""

    start: float  # the clock when an iteration begins
    soon: float  # delay of the nearest timer in the "only timers" situation
    late: float  # delay of the later timer there
    overdue: tuple[float, ...]  # deadlines before `late_start` (a heap not sorted as a list)
    not_due: float  # a deadline after it
    late_start: float


NUMBERS = {
    "public": Numbers(start=1.0, soon=2.0, late=4.0, overdue=(1.0, 5.0, 2.0, 6.0, 2.0),
                      not_due=30.0, late_start=10.0),
    "hidden": Numbers(start=100.0, soon=0.75, late=1.25, overdue=(91.0, 97.5, 93.0, 99.0, 95.0, 93.0),
                      not_due=180.0, late_start=100.0),
}


def numbers(variant: str, seed: int | None = None) -> Numbers:
    """The public numbers; hidden: drawn from ``seed`` (multiples of 1/8: exact differences)."""
    if variant == "public":
        return NUMBERS["public"]
    rng = hidden_rng(variant, seed)
    start = float(rng.randint(10, 500))
    soon = rng.randint(1, 15) / 8
    overdue = [start - rng.randint(1, 40) / 2 for _ in range(rng.randint(4, 6))]
    overdue.append(rng.choice(overdue))  # two timers due together: kept in the order added
    while overdue == sorted(overdue):  # a heap is not a sorted list
        rng.shuffle(overdue)
    return Numbers(start=start, soon=soon, late=soon + rng.randint(1, 16) / 8,
                   overdue=tuple(overdue), not_due=start + rng.randint(10, 100), late_start=start)


def _labels(deadlines: tuple[float, ...]) -> list[str]:
    """``t2``, ``t5``, ``t2 #2``: one label per timer, numbered when deadlines repeat."""
    seen: list[str] = []
    out = []
    for deadline in deadlines:
        label = f"t{deadline:g}"
        out.append(label + (f" #{seen.count(label) + 1}" if label in seen else ""))
        seen.append(label)
    return out


def _names(log: list[str]) -> str:
    return "[" + ", ".join(log) + "]"


class _Stop(Exception):
    """The learner's function failed in a way that ends the check (already reported)."""


def _play(fn: Any, report: Report, world: World, ready: deque, timers: list,
          detector: BlockingDetector) -> None:
    """Run one iteration; on an error or a sleep, report it and stop the check."""
    before = len(detector.calls)
    try:
        fn(ready, timers, world.clock, world.select)
    except NotImplementedError:
        report.findings.append(Finding(
            "written", False, "run_once is not written yet (it raised NotImplementedError).",
            "Replace the `raise NotImplementedError` line in the answer cell with your code, run "
            "that cell, then run this check again.", "not written"))
        raise _Stop from None
    except BusyWait as exc:
        report.add("never busy-waits", False,
                   f"{exc}: it spins instead of letting select wait",
                   "Do not loop until a deadline comes: compute the timeout once and pass it to "
                   "select(timeout), which sleeps until I/O arrives or the timeout passes.",
                   "busy wait")
        raise _Stop from None
    except Exception as exc:  # the learner's bug, reported as a finding
        report.add("runs without error", False, f"run_once raised {_describe_error(exc)}",
                   "Run it by hand on a tiny example: a deque of two lambdas, an empty timer "
                   "list, clock=lambda: 0.0 and select=lambda timeout: [].", "raised an error")
        raise _Stop from None
    slept = detector.calls[before:]
    if slept:
        report.add("waits in select, not in time.sleep", False,
                   f"it called {slept[0].where()} instead of passing the timeout to select",
                   "The loop must wait in select(timeout): a sleep cannot be cut short when a "
                   "socket becomes ready.", "sleeps instead of select")
        raise _Stop


@varied
def check_run_once(fn, *, variant: str = "public",
                   seed: int | None = None) -> Report:
    """Judge ``run_once(ready, timers, clock, select)``.

    Properties: the select timeout (0 with work ready, the time to the nearest
    timer otherwise, never negative, None with nothing scheduled); the loop
    waits in select (no busy-waiting, no time.sleep); due timers moved to the
    ready queue in deadline order, later ones kept; I/O callbacks run; ready
    callbacks, then I/O, then timers, oldest first; callbacks scheduled during
    the iteration wait for the next one.
    """
    report = Report("run_once")
    if not callable(fn):
        report.findings.append(Finding("defined", False, f"run_once is not a function (it is "
                                       f"{type(fn).__name__}).",
                                       "Define it with `def run_once(ready, timers, clock, select):`.",
                                       "not a function"))
        return report
    detector = BlockingDetector(loop_thread=threading.current_thread(),
                                namespaces=(getattr(fn, "__globals__", {}),))
    with detector:
        try:
            _judge(fn, report, numbers(variant, seed), detector)
        except _Stop:
            pass
    return report


def _judge(fn: Any, report: Report, n: Numbers, detector: BlockingDetector) -> None:
    # 1. Work ready: poll without waiting; run the ready callbacks in order; keep the timer.
    world = World(now=n.start)
    ready = deque([world.callback("a"), world.callback("b")])
    timers = [world.timer(n.start + n.late, "t")]
    _play(fn, report, world, ready, timers, detector)
    ok = world.select_calls == [0] and world.log == ["a", "b"] and len(timers) == 1
    report.add("polls when work is ready", ok,
               "with callbacks ready it called select(0) and ran them in order" if ok else
               f"with callbacks a, b ready and a timer {n.late:g} s away: {world.selects()}, ran "
               f"{_names(world.log)}, {len(timers)} timer(s) left",
               "With work ready, do not wait: select(0). Then run the ready callbacks oldest "
               "first (popleft), and leave the timer that is not due in the heap." if
               world.select_calls == [0] else
               "When the ready queue is not empty, the loop must not wait: call select(0).",
               "waits with work ready" if world.select_calls != [0] else
               "ready queue in the wrong order" if sorted(world.log) == ["a", "b"] else
               "ready callbacks not run" if len(world.log) < 2 else "due timers wrong")

    # 2. Only timers: wait exactly until the nearest one; run it; keep the later one.
    world = World(now=n.start)
    timers = [world.timer(n.start + n.late, "late"), world.timer(n.start + n.soon, "soon")]
    heapq.heapify(timers)
    _play(fn, report, world, deque(), timers, detector)
    ok = world.select_calls == [n.soon] and world.log == ["soon"] and \
        [t[0] for t in timers] == [n.start + n.late]
    diagnosis = ""
    if ok:
        msg = f"the nearest timer was {n.soon:g} s away: select({n.soon:g}), then it ran that " \
              "timer and kept the later one"
        hint = ""
    else:
        msg = (f"timers {n.soon:g} s and {n.late:g} s away, nothing ready: {world.selects()}, ran "
               f"{_names(world.log)}, {len(timers)} timer(s) left in the heap")
        if world.select_calls[:1] == [0]:
            hint = ("select(0) returns at once, so the loop spins and burns a CPU core. Wait "
                    "timers[0][0] - clock() seconds (the heap's nearest deadline, from the clock "
                    "you are given).")
            diagnosis = "busy wait"
        elif world.select_calls[:1] == [n.soon] and world.log == []:
            hint = ("After select returns, the nearest timer's deadline has come (deadline <= "
                    "clock()): move it to the ready queue and run it.")
            diagnosis = "due timer not run"
        elif world.select_calls[:1] == [n.soon]:
            hint = ("Move only the timers whose deadline has passed (deadline <= clock()); the "
                    "others stay in the heap for a later iteration.")
            diagnosis = "timers run before they are due"
        else:
            hint = ("With nothing ready, wait until the nearest timer: timers[0][0] - clock() "
                    "(the heap keeps the nearest deadline at index 0).")
            diagnosis = "wrong timeout"
    report.add("waits until the nearest timer", ok, msg, hint, diagnosis)

    # 3. Overdue timers: never a negative timeout; all due ones, in deadline order.
    world = World(now=n.late_start)
    timers = []
    for deadline, label in zip((*n.overdue, n.not_due), _labels((*n.overdue, n.not_due))):
        heapq.heappush(timers, world.timer(deadline, label))  # a heap not sorted as a list
    due_order = [label for _, _, label in sorted(
        (d, i, lab) for i, (d, lab) in enumerate(zip(n.overdue, _labels(n.overdue))))]
    _play(fn, report, world, deque(), timers, detector)
    ok = world.select_calls == [0] and world.log == due_order and \
        [t[0] for t in timers] == [n.not_due]
    report.add("overdue timers run at once, in deadline order", ok,
               f"{len(n.overdue)} overdue timers: select(0), then all ran, earliest first" if ok
               else f"{len(n.overdue)} overdue timers ({', '.join(due_order)}) and a later one: "
                    f"{world.selects()}, ran {_names(world.log)}",
               "Clamp the timeout at 0 (max(0, ...)): overdue timers must not make it negative."
               if any(isinstance(t, (int, float)) and t < 0 for t in world.select_calls) else
               "Pop due timers with heapq.heappop, which gives them in deadline order (ties in "
               "the order they were added); the list itself is not sorted.",
               "negative timeout" if any(isinstance(t, (int, float)) and t < 0
                                         for t in world.select_calls) else
               "timers out of order" if sorted(world.log) == sorted(due_order) else
               "due timers wrong")

    # 4. Nothing scheduled: wait for I/O without a timeout; run what I/O made ready.
    world = World(now=n.start, io_ready=["socket readable"])
    ready = deque()
    _play(fn, report, world, ready, [], detector)
    ok = world.select_calls == [None] and world.log == ["socket readable"] and not ready
    report.add("blocks on I/O when nothing is scheduled", ok,
               "no work and no timers: select(None), then it ran the I/O callback" if ok else
               f"no work and no timers, one socket becomes ready: {world.selects()}, ran "
               f"{_names(world.log)}",
               "With nothing ready and no timers, only I/O can wake the loop: select(None). "
               "Add the callbacks select returns to the ready queue and run them."
               if world.select_calls != [None] else
               "select returns the callbacks of the ready sockets: add them to the ready queue "
               "(ready.extend(...)) before running it.",
               "wrong timeout" if world.select_calls != [None] else "i/o callbacks dropped")

    # 5. A callback that schedules another: the new one waits for the next iteration.
    world = World(now=n.start)
    ready = deque()
    ready.append(world.callback("parent", then=lambda: ready.append(world.callback("child"))))
    _play(fn, report, world, ready, [], detector)
    ok = world.log == ["parent"] and len(ready) == 1
    report.add("new callbacks wait for the next iteration", ok,
               "a callback scheduled during the iteration was left for the next one" if ok else
               f"ran {_names(world.log)}: a callback scheduled during this iteration ran in it too"
               if "child" in world.log else
               f"ran {_names(world.log)}, {len(ready)} callback(s) left in the ready queue",
               "Count the ready callbacks before running them (n = len(ready)) and run only "
               "those n; a callback that keeps rescheduling itself would otherwise starve the I/O.",
               "runs new callbacks too" if "child" in world.log else "ready callbacks not run")

    # 6. Everything at once: ready work, a socket, an overdue timer; order and completeness.
    world = World(now=n.start, io_ready=["socket readable"])
    ready = deque([world.callback("ready before")])
    timers = [world.timer(n.start - 1.0, "overdue timer")]
    _play(fn, report, world, ready, timers, detector)
    want = ["ready before", "socket readable", "overdue timer"]
    ok = world.log == want and not ready and not timers
    report.add("ready work, then I/O, then timers, in one iteration", ok,
               "it ran " + _names(want) + " in that order" if ok else
               f"with a ready callback, a ready socket and an overdue timer: ran {_names(world.log)}"
               f", {len(ready)} callback(s) left in the ready queue",
               "Follow the four steps in order: timeout, select (append the I/O callbacks), move "
               "the due timers, and only then run everything in the ready queue, oldest first."
               if world.log != want[:len(world.log)] or len(world.log) < 3 else
               "Run every callback that is in the ready queue once I/O and timers were added.",
               "steps in the wrong order" if world.log != want[:len(world.log)] or len(world.log) < 3
               else "ready callbacks not run")


EXERCISES = {"run_once": check_run_once}
