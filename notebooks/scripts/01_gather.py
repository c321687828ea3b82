"""Lesson 01 as a script: two waits that overlap.

Run it with:  python 01_gather.py
"""

import asyncio
import time


async def task_a():
    print("A: started")
    await asyncio.sleep(2)
    print("A: done")


async def task_b():
    print("B: started")
    await asyncio.sleep(1)
    print("B: done")


async def main():
    started = time.perf_counter()
    await asyncio.gather(task_a(), task_b())
    elapsed = time.perf_counter() - started
    print(f"both done after about {round(elapsed)} s, not 3 s")


if __name__ == "__main__":
    asyncio.run(main())
