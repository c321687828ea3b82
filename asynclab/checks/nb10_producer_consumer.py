"""Checks for notebook 10_producer_consumer: a bounded queue, several consumers, a clean stop.

The learner's queue is never inspected: backpressure is judged by behaviour,
how far the producer ran ahead of the consumers (items made but not yet taken
to be processed), so an unbounded queue is caught whatever class it is. A run
that hangs (one sentinel for three consumers, a consumer with no way to stop,
a ``join()`` waiting for sentinels never marked done) is reported with the
tasks that were still waiting when time stopped.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass

from asynclab.checking import (Observation, Report, common_findings, hidden_rng, observe, plural,
                               require_coroutine_function, varied)
from asynclab.fakes import Line
from asynclab.timeline import active_timeline

NOTEBOOK = "10_producer_consumer"
TOLERANCE_S = 1e-3
DEADLOCK_HINT = ("Every consumer needs its own way to stop: put one sentinel per consumer after "
                 "the last item, or call queue.join() and then cancel the consumers. If you both "
                 "send sentinels and call join(), call task_done() once for every get(), "
                 "sentinels included.")


def _task_name(task: asyncio.Task) -> str:
    """The name of a task's row in the active timeline (its coroutine's), else the task's name.

    Under ``trace()`` a task's coroutine is the timeline's wrapper, which has no
    name of its own; the active timeline's record knows the learner's name
    (``asynclab.timeline.active_timeline()``).
    """
    timeline = active_timeline()
    if timeline is not None:
        for record in timeline.records:
            if record.task is task:
                record.resolve_name()
                return record.name
    return task.get_name()


@dataclass(frozen=True)
class Scenario:
    count: int
    num_consumers: int
    maxsize: int
    produce_s: float
    process_s: float

    def upper_bound_s(self) -> float:
        """A generous finish time for a working pipeline: consumers kept busy from the start."""
        return (self.num_consumers + 1) * self.produce_s + \
            math.ceil(self.count / self.num_consumers) * self.process_s

    def one_by_one_s(self) -> float:
        return self.count * (self.produce_s + self.process_s)

    def time_limit_s(self) -> float:
        """Virtual seconds after which the run counts as stuck: twice the one-at-a-time time."""
        return float(math.ceil(2 * self.one_by_one_s()))


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        return Scenario(count=20, num_consumers=3, maxsize=4, produce_s=0.1, process_s=1.0)
    rng = hidden_rng(variant, seed)  # hidden: other sizes, drawn from the seed
    return Scenario(count=rng.randint(15, 35), num_consumers=rng.randint(2, 5),
                    maxsize=rng.randint(2, 5), produce_s=rng.choice([0.05, 0.1]),
                    process_s=rng.choice([0.5, 0.7, 1.0]))


def still_waiting(obs: Observation, limit_s: float) -> str:
    """``"consumer (2 tasks), process_items"``: the rows that had not ended when time stopped."""
    if obs.timeline is None:
        return ""
    names = obs.timeline.names()
    # Rows created at the limit belong to the clean-up after the run, not to the learner's code.
    stuck = Counter(name for name, rec in zip(names, obs.timeline.records)
                    if rec.created < limit_s - TOLERANCE_S
                    and (rec.ended is None or rec.ended >= limit_s - TOLERANCE_S))
    return ", ".join(name if n == 1 else f"{name} ({n} tasks)" for name, n in stuck.items())


def _not_items_finding(report: Report, line: Line) -> None:
    if line.not_items:
        report.add("every coroutine awaited", False,
                   f"process() was given {line.not_items[0]} instead of an item "
                   f"({plural(len(line.not_items), 'time')}): a forgotten `await`",
                   "`queue.get()` is a coroutine: write `item = await queue.get()` (and "
                   "`await queue.put(item)`).", "forgotten await")


def _duplicates(line: Line) -> list[str]:
    seen = Counter(line.processed)
    return [item for item, n in seen.items() if n > 1]


@varied
def check_process_items(fn, *, variant: str = "public",
                        seed: int | None = None) -> Report:
    """Judge ``process_items(produce, count, process, num_consumers=3, maxsize=5)``.

    Properties: every item processed exactly once; per-consumer counts
    returned; the producer never more than ``maxsize + 1`` items ahead of the
    consumers (a bounded queue); the consumers work at the same time; every
    consumer stopped when the function returned; no blocking call, no hang.
    """
    report = Report("process_items")
    bad = require_coroutine_function("process_items", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    line = Line(sc.produce_s, sc.process_s)
    left_running: list[str] = []

    async def call():
        result = await fn(line.produce, sc.count, line.process, num_consumers=sc.num_consumers,
                          maxsize=sc.maxsize)
        me = asyncio.current_task()
        left_running.extend(sorted(_task_name(t) for t in asyncio.all_tasks()
                                   if t is not me and not t.done()))
        return result

    limit_s = sc.time_limit_s()
    obs = observe(call, name="process_items", namespaces=(getattr(fn, "__globals__", {}),),
                  max_virtual_s=limit_s)
    report.timeline = obs.timeline
    common = common_findings("process_items", obs)

    if obs.hang is not None:
        finding = common[0]
        waiting = still_waiting(obs, limit_s) if obs.hang.reason != "wall-limit" else ""
        if waiting:
            finding.message += f"; still waiting when time stopped: {waiting}"
        if obs.hang.reason == "deadlock":
            finding.hint = DEADLOCK_HINT
        report.findings.append(finding)
        _not_items_finding(report, line)
        twice = _duplicates(line)
        if twice:
            report.add("every item processed once", False,
                       f"{twice[0]} was processed {Counter(line.processed)[twice[0]]} times",
                       "Start one producer; each item must go through the queue once.",
                       "item processed twice")
        return report

    report.findings.extend(common)
    if obs.error is not None:
        return report
    _not_items_finding(report, line)

    expected = [f"item-{i}" for i in range(sc.count)]
    seen = Counter(line.processed)
    lost = [i for i in expected if seen[i] == 0]
    twice = [i for i in expected if seen[i] > 1]
    if not lost and not twice:
        msg = f"all {sc.count} items were processed exactly once"
    else:
        parts = []
        if lost:
            parts.append(f"{len(lost)} item(s) never processed (first: {lost[0]})")
        if twice:
            parts.append(f"{len(twice)} processed more than once ({twice[0]}: "
                         f"{seen[twice[0]]} times)")
        msg = "; ".join(parts)
    report.add("every item processed once", not lost and not twice, msg,
               "More than one producer puts the same items: start exactly one producer, and "
               "num_consumers consumers." if twice else
               "Each item must go through the queue once and be taken by exactly one consumer: "
               "one producer, every put() awaited, and every item put before the stop signals.",
               "item processed twice" if twice else "items lost")

    result = obs.result
    counts_ok = (isinstance(result, (list, tuple)) and len(result) == sc.num_consumers
                 and all(isinstance(n, int) for n in result) and sum(result) == sc.count)
    report.add("per-consumer counts returned", counts_ok,
               f"returned {list(result)}: {sc.num_consumers} counts adding up to {sc.count}"
               if counts_ok else
               f"returned {result!r}; expected a list of {sc.num_consumers} counts adding up to "
               f"{sc.count}",
               "Have each consumer return how many items it processed, and return those numbers "
               "in consumer order (task.result() after the TaskGroup, or gather).", "wrong counts")

    ahead_limit = sc.maxsize + 1
    bounded = line.max_backlog <= ahead_limit
    report.add("queue is bounded (backpressure)", bounded,
               f"the producer stayed at most {plural(line.max_backlog, 'item')} ahead of the "
               f"consumers (maxsize {sc.maxsize})" if bounded else
               f"the producer ran {line.max_backlog} items ahead of the consumers; with "
               f"maxsize={sc.maxsize} it can be at most {ahead_limit} ahead (the {sc.maxsize} in "
               "the queue and the one it is putting)",
               "Create the queue with asyncio.Queue(maxsize=maxsize), so that put() waits while "
               "the queue is full, and make each item just before putting it.", "queue unbounded")

    fast = obs.elapsed <= sc.upper_bound_s() + TOLERANCE_S
    report.add("consumers work at the same time", fast,
               f"finished in {obs.elapsed:.1f} virtual s with {sc.num_consumers} consumers"
               if fast else
               f"took {obs.elapsed:.1f} virtual s; {sc.num_consumers} consumers working at the same "
               f"time finish within {sc.upper_bound_s():.1f} s (one item at a time: "
               f"{sc.one_by_one_s():.1f} s)",
               "Start the producer and every consumer as tasks (a TaskGroup) so that they run "
               "together, and let each consumer loop until it is told to stop.",
               "consumers one after another")

    report.add("consumers stopped", not left_running,
               "no consumer or producer task was left running" if not left_running else
               f"{plural(len(left_running), 'task')} still running when process_items returned "
               f"({', '.join(left_running[:3])}): they never stopped",
               "Send one sentinel per consumer (or join() the queue, then cancel the consumers and "
               "wait for them) before returning.", "consumers never stopped")
    return report


EXERCISES = {"process_items": check_process_items}
