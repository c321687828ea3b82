"""Lesson 14 as a script: a worker pool that shuts down gracefully on SIGTERM or SIGINT.

Run it with:  python 14_graceful_shutdown.py
then press Ctrl-C (SIGINT) or `kill -TERM <pid>`. Run with --demo (the default when no
terminal is attached) to have it send itself SIGTERM after a moment.

The shutdown sequence: stop accepting work, let running jobs finish within a drain
deadline, cancel what is still running, clean up, exit 0.
"""

import asyncio
import os
import signal
import sys

DRAIN_TIMEOUT_S = 1.0


async def job(n: int) -> None:
    # Most jobs are quick; every third one is slow and will outlive the drain deadline.
    await asyncio.sleep(5.0 if n % 3 == 2 else 0.5)


async def main(demo: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if demo:
        loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)

    running = [asyncio.create_task(job(n)) for n in range(6)]  # the work in flight
    await stop.wait()  # serve until a signal arrives
    print(f"SIGTERM received: stop accepting; {len(running)} jobs in flight")

    done, pending = await asyncio.wait(running, timeout=DRAIN_TIMEOUT_S)
    print(f"{len(done)} jobs finished within the {DRAIN_TIMEOUT_S:g} s drain deadline")
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    print(f"{len(pending)} slow jobs cancelled; cleaned up; exiting with status 0")


if __name__ == "__main__":
    asyncio.run(main(demo="--demo" in sys.argv or not sys.stdin.isatty()))
