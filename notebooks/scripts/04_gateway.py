"""Lesson 04 as a script: an API gateway's fan-out, one by one and all at once.

Run it with:  python 04_gateway.py
"""

import asyncio
import time

SERVICES = ["auth", "profile", "cart", "pricing", "stock"]


async def call_service(name):
    await asyncio.sleep(0.05)  # stands for a 50 ms network call
    return f"{name}: ok"


async def one_by_one():
    return [await call_service(name) for name in SERVICES]


async def all_at_once():
    return await asyncio.gather(*(call_service(name) for name in SERVICES))


async def main():
    for fan_out in (one_by_one, all_at_once):
        started = time.perf_counter()
        answers = await fan_out()
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"{fan_out.__name__:>11}: {len(answers)} answers in about {elapsed_ms:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
