"""Lesson 19: asyncio's debug mode names the step that held the event loop too long.

    python 19_debug_mode.py                        # debug mode off: nothing is reported
    PYTHONASYNCIODEBUG=1 python 19_debug_mode.py   # debug mode on (python -X dev turns it on too)

`handle_request` blocks the loop with time.sleep(0.2). In debug mode, asyncio times every step
of every task and logs a warning for each one longer than loop.slow_callback_duration. Debug
mode has a price, measured at the end: it records where every callback was scheduled from.
"""

import asyncio
import logging
import re
import time

SLOW_CALLBACK_S = 0.05


class Collect(logging.Handler):
    """Keep asyncio's log messages, to print them in a short, stable form."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


async def handle_request():
    await asyncio.sleep(0.01)
    time.sleep(0.2)  # the bug: a blocking call on the event loop
    await asyncio.sleep(0.01)


async def switch_time(rounds=5_000):
    """Seconds per task switch (two tasks passing the turn with sleep(0))."""
    async def spin():
        for _ in range(rounds):
            await asyncio.sleep(0)
    started = time.perf_counter()
    await asyncio.gather(spin(), spin())
    return (time.perf_counter() - started) / (2 * rounds)


def summary(message):
    """'Executing <Task ... name='x' ...> took 0.201 seconds' -> a line without addresses."""
    name = re.search(r"name='([^']+)'", message)
    took = re.search(r"took ([0-9.]+) seconds", message)
    if not (name and took):
        return message
    seconds = float(took.group(1))
    took_text = "0.2 s or more" if seconds >= 0.19 else f"{seconds:.3f} s"
    return f"a step of task '{name.group(1)}' took {took_text} (the limit is {SLOW_CALLBACK_S:g} s)"


async def main():
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = SLOW_CALLBACK_S
    collect = Collect()
    logging.getLogger("asyncio").addHandler(collect)
    await asyncio.create_task(handle_request(), name="handle-request")

    print(f"debug mode: {'on' if loop.get_debug() else 'off'}")
    slow = [m for m in collect.messages if " took " in m]
    for message in slow:
        print("  asyncio warned:", summary(message))
    if not slow:
        print("  nothing reported, although handle_request blocked the loop for 0.2 s")
    if loop.get_debug():
        with_debug = await switch_time()
        loop.set_debug(False)
        without = await switch_time()
        print(f"  a task switch is at least twice as slow in debug mode: {with_debug > 2 * without}")


if __name__ == "__main__":
    asyncio.run(main())
