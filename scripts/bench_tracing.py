"""How much does tracing cost? Prints the traced/untraced time ratio of a 10,000-task workload.

    make bench        (or: .venv/bin/python scripts/bench_tracing.py)

The workload is what the lessons trace: 10,000 tasks on a real event loop, each
awaiting a few zero-length sleeps and one short timer, as I/O-bound code does.
Each variant runs several times in alternation; the medians are compared. Times are the
process's CPU time (the workload never waits long), so that other processes on a shared
machine do not blur the ratio.
This is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from asynclab.timeline import trace

TASKS = 10_000
ROUNDS = 7


async def worker(i: int) -> int:
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.sleep(0.001)
    return i


async def workload(traced: bool) -> float:
    started = time.process_time()
    if traced:
        with trace() as timeline:
            await asyncio.gather(*(worker(i) for i in range(TASKS)))
        assert len(timeline.records) == TASKS
    else:
        await asyncio.gather(*(worker(i) for i in range(TASKS)))
    return time.process_time() - started


def main() -> None:
    plain, traced = [], []
    for _ in range(ROUNDS):
        plain.append(asyncio.run(workload(False)))
        traced.append(asyncio.run(workload(True)))
    p, t = statistics.median(plain), statistics.median(traced)
    print(f"{TASKS:,} tasks, median of {ROUNDS} runs each")
    print(f"  untraced: {p * 1000:7.1f} ms")
    print(f"  traced:   {t * 1000:7.1f} ms")
    print(f"  overhead ratio (traced / untraced): {t / p:.2f}x")


if __name__ == "__main__":
    main()
