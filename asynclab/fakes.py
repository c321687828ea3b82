"""Fake I/O services that record what a learner's code did to them.

Exercises take their I/O as a parameter (a ``fetch`` coroutine, a client), so a
check can hand in one of these and then read off, on the loop's clock, how many
calls were in flight at once, when each started and ended, which ones were
cancelled, and in what order things happened.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Mapping

__all__ = ["Call", "FakeService", "ServiceError"]


class ServiceError(ConnectionError):
    """A failure the fake service was told to raise."""


@dataclass
class Call:
    """One call to a fake service."""

    key: str
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"
    task: object = None  # the asyncio task the call ran in (to see how that task ended)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class FakeService:
    """An async service whose latency and failures the check decides.

    ``latency_s`` maps a key to the virtual seconds a call takes (or is a
    function of the key); ``failures`` maps a key to how many of its first calls
    raise ``ServiceError``. ``fetch(key)`` returns ``result_for(key)``.

    Guarantees: every call is recorded in ``calls`` in the order it started, and
    ``max_in_flight`` is the largest number of calls that were running at once
    (a call that ends and one that starts at the same instant do not overlap).
    """

    def __init__(self, latency_s: Mapping[str, float] | Callable[[str], float],
                 failures: Mapping[str, int] | None = None) -> None:
        self._latency = latency_s
        self._failures = dict(failures or {})
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        # (time, in-flight count) after every change, for plots.
        self.history: list[tuple[float, int]] = [(0.0, 0)]

    @property
    def latency_s_map(self) -> dict[str, float]:
        """The configured latencies (empty when latency is a function)."""
        return {} if callable(self._latency) else dict(self._latency)

    @staticmethod
    def result_for(key: str) -> str:
        return f"data from {key}"

    def latency(self, key: str) -> float:
        if callable(self._latency):
            return float(self._latency(key))
        return float(self._latency[key])

    def _change(self, delta: int) -> None:
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.history.append((asyncio.get_running_loop().time(), self.in_flight))

    async def fetch(self, key: str) -> str:
        """Take ``latency(key)`` virtual seconds, then return or raise as configured."""
        loop = asyncio.get_running_loop()
        call = Call(str(key), loop.time(), task=asyncio.current_task())
        self.calls.append(call)
        self._change(+1)
        try:
            await asyncio.sleep(self.latency(key))
            if self._failures.get(key, 0) > 0:
                self._failures[key] -= 1
                call.outcome = "error"
                raise ServiceError(f"{key} is unavailable")
            call.outcome = "ok"
            return self.result_for(key)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            call.end = loop.time()
            self._change(-1)

    # -- reading ---------------------------------------------------------
    def calls_for(self, key: str) -> list[Call]:
        return [c for c in self.calls if c.key == key]

    def in_flight_series(self) -> tuple[list[float], list[int]]:
        """Times and in-flight counts, ready for a step plot."""
        times = [t for t, _ in self.history]
        counts = [n for _, n in self.history]
        return times, counts
