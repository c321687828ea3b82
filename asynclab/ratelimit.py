"""A rate limiter for calls to a service: a few at once, and not too often.

Lesson 18 tests it, and its exercise asks the learner to write the tests that
tell this class apart from broken versions of it (``asynclab.checks.nb18_testing_async``).
Real services state both kinds of limit ("at most 3 requests at a time, at most
4 per second"); ``aiometer``'s ``max_at_once`` and ``max_per_second`` are the
same two knobs.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``max_at_once`` callers inside at a time; entries at least ``1/max_per_s`` s apart.

    Use it as ``async with limiter: ...`` around each call, or as
    ``await limiter.acquire()`` ... ``limiter.release()``. What it guarantees:

    1. At no moment are more than ``max_at_once`` callers inside. Callers that
       may go in do go in: with enough callers waiting, ``max_at_once`` are
       inside at the same time (the limit is used, not just respected).
    2. Two callers never go in less than ``1 / max_per_s`` seconds apart, on the
       event loop's clock. The first caller goes in at once. An idle limiter
       saves up no credit: after a pause, one caller goes in at once and the
       next one waits the full interval (no burst).
    3. The slot is given back when the ``async with`` block ends, whether it
       returns, raises or is cancelled.
    4. A caller cancelled while it waits (for a slot or for its turn) gives
       back everything it held: it leaves no slot taken.
    5. Waiting never blocks the event loop.
    """

    def __init__(self, max_per_s: float, max_at_once: int) -> None:
        if max_per_s <= 0:
            raise ValueError("max_per_s must be positive")
        if max_at_once < 1:
            raise ValueError("max_at_once must be at least 1")
        self.max_per_s = max_per_s
        self.max_at_once = max_at_once
        self._interval_s = 1.0 / max_per_s
        self._slots = asyncio.Semaphore(max_at_once)
        self._turn = asyncio.Lock()  # callers with a slot take their turns one by one
        self._last_start: float | None = None  # loop time at which the last caller went in

    async def acquire(self) -> None:
        """Wait for a slot, then for this caller's turn; give the slot back if cancelled."""
        await self._slots.acquire()
        try:
            await self._wait_for_turn()
        except BaseException:
            self._slots.release()
            raise

    async def _wait_for_turn(self) -> None:
        async with self._turn:
            loop = asyncio.get_running_loop()
            if self._last_start is not None:
                ready_at = self._last_start + self._interval_s
                while (now := loop.time()) < ready_at:
                    await asyncio.sleep(ready_at - now)
            self._last_start = loop.time()

    def release(self) -> None:
        """Give a slot back (once per ``acquire``)."""
        self._slots.release()

    async def __aenter__(self) -> "RateLimiter":
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(max_per_s={self.max_per_s!r}, "
                f"max_at_once={self.max_at_once!r})")
