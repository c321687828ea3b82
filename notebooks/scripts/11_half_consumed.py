"""Lesson 11: when does a half-consumed async generator run its `finally`?

    python 11_half_consumed.py

Three consumers leave the same kind of generator with `break` after its first item:

1. one keeps the generator object: its `finally` runs only when asyncio.run() shuts the loop
   down (asyncio.run calls loop.shutdown_asyncgens(), which closes every async generator
   still alive);
2. one drops it: CPython frees it at once, and the loop's finalizer hook schedules its
   aclose() as a new task, which runs a little later, while the consumer has moved on;
3. one closes it with contextlib.aclosing: the `finally` runs at once, in the consumer's own
   task, before the next line.

The output is the same on CPython 3.11, 3.12 and 3.13.
"""

import asyncio
from contextlib import aclosing

consumer = None  # the task of main(), set when it starts
phase = "main() is running"
kept = []


async def numbers(label):
    try:
        for n in range(3):
            yield n
    finally:
        task = "the consumer's own task" if asyncio.current_task() is consumer else "another task"
        print(f"    finally of generator {label}: runs in {task}, while {phase}")


async def main():
    global consumer, phase
    consumer = asyncio.current_task()

    gen = numbers(1)
    async for n in gen:
        break
    kept.append(gen)  # still referenced after main() returns
    print("1: left the loop with break; the generator is kept")

    gen = numbers(2)
    async for n in gen:
        break
    del gen  # the last reference: CPython frees it now
    print("2: left the loop with break; the generator is dropped")
    await asyncio.sleep(0.1)
    print("2: 0.1 s later")

    async with aclosing(numbers(3)) as gen:
        async for n in gen:
            break
    print("3: left the loop with break, and the aclosing block")
    phase = "asyncio.run() shuts the loop down"


if __name__ == "__main__":
    asyncio.run(main())
    print("asyncio.run() has returned")
