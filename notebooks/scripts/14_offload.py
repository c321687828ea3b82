"""Lesson 14 as a script: keep the event loop free while blocking and CPU work run elsewhere.

A heartbeat task ticks every 50 ms. Meanwhile a blocking library call runs in a thread
(asyncio.to_thread) and pure-Python CPU jobs run in a process pool (run_in_executor), one
worker per core. At the end the script says how long the heartbeat ever had to wait.

The `if __name__ == "__main__":` guard at the bottom is required with process pools: a
worker started with "spawn" (macOS, Windows) imports this file, and must not run main() again.

    python 14_offload.py
"""

import asyncio
import concurrent.futures
import os
import time

from asynclab.workloads import count_primes, legacy_download

JOBS = 4
LIMIT = 40_000


async def heartbeat(beats, period_s=0.05):
    loop = asyncio.get_running_loop()
    while True:
        beats.append(loop.time())
        await asyncio.sleep(period_s)


async def main():
    loop = asyncio.get_running_loop()
    beats = []
    beat = asyncio.create_task(heartbeat(beats))
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(JOBS, os.cpu_count() or 1)) as pool:
        page, counts = await asyncio.gather(
            asyncio.to_thread(legacy_download, "/report"),
            asyncio.gather(*(loop.run_in_executor(pool, count_primes, LIMIT) for _ in range(JOBS))),
        )
    beat.cancel()
    elapsed = time.perf_counter() - started
    gap_ms = max(b - a for a, b in zip(beats, beats[1:])) * 1000
    print(f"downloaded {page!r} and counted primes below {LIMIT:,} {JOBS} times: {counts[0]:,} "
          f"each, in {elapsed:.2f} s")
    print(f"the heartbeat ticked {len(beats)} times; its longest wait was {gap_ms:.0f} ms "
          f"(planned: 50 ms)")


if __name__ == "__main__":
    asyncio.run(main())
