"""Lessons 12 and 13 as a script: enrich records through a rate-limited, flaky HTTP API.

Starts the course's lab API on 127.0.0.1 (a free port), then fetches every record with
one aiohttp.ClientSession, a timeout per request, a limiter that allows at most RATE_PER_S
requests in any one-second window, and retries with exponential backoff and jitter
(or the server's Retry-After on a 429).

    python 13_rate_limited_client.py
"""

import asyncio
import random
import time

import aiohttp

from asynclab.labserver import LabAPI, LabServer

RECORDS = 150
API_LIMIT_PER_S = 100
RATE_PER_S = 90  # a little under the API's limit: the server counts arrivals, not departures
TIMEOUT_S = 1.0


class WindowLimiter:
    """At most `rate_per_s` requests start in any one-second window."""

    def __init__(self, rate_per_s):
        self._permits = asyncio.Semaphore(rate_per_s)

    async def acquire(self):
        await self._permits.acquire()
        asyncio.get_running_loop().call_later(1.0, self._permits.release)


def is_transient(exc):
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, (aiohttp.ClientConnectionError, TimeoutError))


def retry_wait_s(exc, attempt, base_s):
    """Retry-After (seconds) when the server sent it, else doubling backoff with 10% jitter."""
    headers = getattr(exc, "headers", None) or {}
    if "Retry-After" in headers:
        return float(headers["Retry-After"])
    return base_s * 2 ** (attempt - 1) * (1 + random.random() / 10)


async def get_record(session, limiter, record_id, *, attempts=4, base_s=0.1):
    for attempt in range(1, attempts + 1):
        await limiter.acquire()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                async with session.get(f"/records/{record_id}") as resp:
                    resp.raise_for_status()
                    return await resp.json()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            await asyncio.sleep(retry_wait_s(exc, attempt, base_s))


async def main():
    api = LabAPI(latency_s=0.05, failure_rate=0.05, slow_rate=0.02, slow_s=5.0,
                 rate_limit=API_LIMIT_PER_S, seed=3)
    limiter = WindowLimiter(RATE_PER_S)
    started = time.perf_counter()
    async with LabServer(api) as server, aiohttp.ClientSession(server.url) as session:
        results = await asyncio.gather(
            *(get_record(session, limiter, i) for i in range(RECORDS)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, Exception)]
    print(f"{RECORDS} records in {elapsed:.1f} s: {RECORDS - len(failed)} enriched, "
          f"{len(failed)} failed")
    print("the API answered:", dict(sorted(api.statuses().items())),
          "(429: too many requests, 499: the client gave up, 503: try again)")


if __name__ == "__main__":
    asyncio.run(main())
