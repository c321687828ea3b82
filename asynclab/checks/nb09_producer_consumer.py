"""Checks for notebook 09_producer_consumer: a bounded queue, several consumers, a clean stop."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field

from asynclab.checking import Report, common_findings, observe, plural, require_coroutine_function

NOTEBOOK = "09_producer_consumer"
TOLERANCE_S = 1e-3


@dataclass
class Line:
    """A fake production line: ``produce(i)`` makes item i, ``process(item)`` consumes it."""

    produce_s: float
    process_s: float
    produced: list[str] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    started: int = 0
    max_backlog: int = 0  # produced but not yet taken by a consumer

    async def produce(self, i: int) -> str:
        await asyncio.sleep(self.produce_s)
        item = f"item-{i}"
        self.produced.append(item)
        self.max_backlog = max(self.max_backlog, len(self.produced) - self.started)
        return item

    async def process(self, item: str) -> None:
        self.started += 1
        await asyncio.sleep(self.process_s)
        self.processed.append(item)


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


def scenario(variant: str) -> Scenario:
    if variant == "public":
        return Scenario(count=20, num_consumers=3, maxsize=4, produce_s=0.1, process_s=1.0)
    return Scenario(count=31, num_consumers=4, maxsize=2, produce_s=0.05, process_s=0.7)


def check_process_items(fn, *, variant: str = "public") -> Report:
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
    sc = scenario(variant)
    line = Line(sc.produce_s, sc.process_s)
    still_running: list[str] = []

    async def call():
        result = await fn(line.produce, sc.count, line.process, num_consumers=sc.num_consumers,
                          maxsize=sc.maxsize)
        me = asyncio.current_task()
        still_running.extend(sorted(t.get_coro().__qualname__.rpartition(".")[2]
                                    for t in asyncio.all_tasks()
                                    if t is not me and not t.done()))
        return result

    obs = observe(call, name="process_items", namespaces=(getattr(fn, "__globals__", {}),))
    report.timeline = obs.timeline
    report.findings.extend(common_findings("process_items", obs))
    if obs.hang is not None or obs.error is not None:
        return report

    expected = [f"item-{i}" for i in range(sc.count)]
    seen = Counter(line.processed)
    lost = [i for i in expected if seen[i] == 0]
    twice = [i for i in expected if seen[i] > 1]
    report.add("every item processed once", not lost and not twice,
               f"all {sc.count} items were processed exactly once" if not lost and not twice else
               f"{len(lost)} item(s) never processed (first: {lost[0] if lost else '-'}), "
               f"{len(twice)} processed more than once (first: {twice[0] if twice else '-'})",
               "Each item must go through the queue once and be taken by exactly one consumer; "
               "make sure the producer puts every item before the stop signals.")

    result = obs.result
    counts_ok = (isinstance(result, (list, tuple)) and len(result) == sc.num_consumers
                 and all(isinstance(n, int) for n in result) and sum(result) == sc.count)
    report.add("per-consumer counts returned", counts_ok,
               f"returned {list(result)}: {sc.num_consumers} counts adding up to {sc.count}"
               if counts_ok else
               f"returned {result!r}; expected a list of {sc.num_consumers} counts adding up to "
               f"{sc.count}",
               "Have each consumer return how many items it processed, and return those numbers "
               "in consumer order (task.result() after the TaskGroup, or gather).")

    limit = sc.maxsize + 1
    bounded = line.max_backlog <= limit
    report.add("queue is bounded (backpressure)", bounded,
               f"the producer stayed at most {plural(line.max_backlog, 'item')} ahead of the "
               f"consumers (maxsize {sc.maxsize})" if bounded else
               f"the producer ran {line.max_backlog} items ahead of the consumers; with "
               f"maxsize={sc.maxsize} it can be at most {limit} ahead",
               "Create the queue with asyncio.Queue(maxsize=maxsize), so that put() waits while "
               "the queue is full.")

    fast = obs.elapsed <= sc.upper_bound_s() + TOLERANCE_S
    one_by_one = sc.count * (sc.produce_s + sc.process_s)
    report.add("consumers work at the same time", fast,
               f"finished in {obs.elapsed:.1f} virtual s with {sc.num_consumers} consumers"
               if fast else
               f"took {obs.elapsed:.1f} virtual s; {sc.num_consumers} consumers working at the same "
               f"time finish within {sc.upper_bound_s():.1f} s (one item at a time: "
               f"{one_by_one:.1f} s)",
               "Start the producer and every consumer as tasks (a TaskGroup) so that they run "
               "together, and let each consumer loop until it is told to stop.")

    report.add("consumers stopped", not still_running,
               "no consumer or producer task was left running" if not still_running else
               f"{plural(len(still_running), 'task')} still running when process_items returned "
               f"({', '.join(still_running[:3])}): they never stopped",
               "Send one sentinel per consumer (or join() the queue, then cancel the consumers and "
               "wait for them) before returning.")
    return report


EXERCISES = {"process_items": check_process_items}
