"""Lesson 03 as a script: start three downloads as tasks, await them later.

Run it with:  python 03_tasks.py
"""

import asyncio
import time


async def download(name, seconds):
    await asyncio.sleep(seconds)  # stands for the network
    return f"{name}: {seconds} s"


async def main():
    started = time.perf_counter()
    # Each task starts running at the first await below; none waits for the others.
    users = asyncio.create_task(download("users", 0.4))
    orders = asyncio.create_task(download("orders", 0.2))
    products = asyncio.create_task(download("products", 0.3))
    print("three downloads scheduled; main goes on with its own work")

    results = [await users, await orders, await products]
    elapsed = time.perf_counter() - started
    print(results)
    print(f"all three done after about {elapsed:.1f} s (the slowest one), not 0.9 s")


if __name__ == "__main__":
    asyncio.run(main())
