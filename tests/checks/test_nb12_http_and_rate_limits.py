"""The RateLimiter check passes the references and rejects what learners write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from asynclab.checks.nb12_http_and_rate_limits import earliest_starts, limiter_scenario
from asynclab.labserver import busiest_window
from conftest import assert_diagnosed, define, failed_props

LIMITER_TAIL = '''
    async def __aenter__(self):
        await self.acquire()

    async def __aexit__(self, *exc):
        pass
'''

# The notebook's reference: a log of the starts of the last second.
SLIDING_LOG = '''
import asyncio
from collections import deque

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s
        self._starts = deque()

    async def acquire(self):
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._starts and self._starts[0] <= now - 1.0:
                self._starts.popleft()
            if len(self._starts) < self.rate_per_s:
                self._starts.append(now)
                return
            await asyncio.sleep(self._starts[0] + 1.0 - now)
''' + LIMITER_TAIL

# The lesson's limiter: permits that come back one second after they were taken.
TIMED_PERMITS = '''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self._permits = asyncio.Semaphore(rate_per_s)

    async def acquire(self):
        await self._permits.acquire()
        asyncio.get_running_loop().call_later(1.0, self._permits.release)
''' + LIMITER_TAIL

# Re-checking every 10 ms is slower than needed but within the tolerance.
POLLING = '''
import asyncio
from collections import deque

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s
        self._starts = deque()

    async def acquire(self):
        loop = asyncio.get_running_loop()
        while True:
            while self._starts and self._starts[0] <= loop.time() - 1.0:
                self._starts.popleft()
            if len(self._starts) < self.rate_per_s:
                self._starts.append(loop.time())
                return
            await asyncio.sleep(0.01)
''' + LIMITER_TAIL

LIMITER_WRONG = {
    "async with does not acquire": (SLIDING_LOG.replace(LIMITER_TAIL, '''
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass
'''), "`async with limiter:` keeps the limit too", "__aenter__ does not wait for a permit"),
    "no limit": ('''
class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s

    async def acquire(self):
        pass
''' + LIMITER_TAIL, "never above the limit", "10 requests started at the same moment (0.00 s)"),
    "if instead of while": ('''
import asyncio
from collections import deque

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s
        self._starts = deque()

    async def acquire(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._starts and self._starts[0] <= now - 1.0:
            self._starts.popleft()
        if len(self._starts) >= self.rate_per_s:
            await asyncio.sleep(self._starts[0] + 1.0 - now)
        self._starts.append(loop.time())
''' + LIMITER_TAIL, "never above the limit", "the limit is 4"),
    "locked pacer (sleeps holding the lock)": ('''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self.interval = 1 / rate_per_s
        self.last = float("-inf")
        self.lock = asyncio.Lock()

    async def acquire(self):
        loop = asyncio.get_running_loop()
        async with self.lock:
            wait = self.last + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.last = loop.time()
''' + LIMITER_TAIL, "no needless waiting", "the 2nd request to start began at 0.25 s, but the limit "
                                           "allowed it at 0.00 s"),
    "pacer without a lock": ('''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self.interval = 1 / rate_per_s
        self.last = float("-inf")

    async def acquire(self):
        loop = asyncio.get_running_loop()
        wait = self.last + self.interval - loop.time()
        self.last = loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
''' + LIMITER_TAIL, "never above the limit", "the limit is 4"),
    "token bucket of rate_per_s tokens": ('''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate = rate_per_s
        self.tokens = float(rate_per_s)
        self.updated = None

    async def acquire(self):
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self.updated is not None:
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)
''' + LIMITER_TAIL, "never above the limit", "7 requests started within one second"),
    "fixed calendar-second window": ('''
import asyncio, math

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate = rate_per_s
        self.second = None
        self.count = 0

    async def acquire(self):
        loop = asyncio.get_running_loop()
        while True:
            second = math.floor(loop.time())
            if second != self.second:
                self.second, self.count = second, 0
            if self.count < self.rate:
                self.count += 1
                return
            await asyncio.sleep(second + 1 - loop.time())
''' + LIMITER_TAIL, "never above the limit", "8 requests started within one second"),
    "semaphore never given back": ('''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self.sem = asyncio.Semaphore(rate_per_s)

    async def acquire(self):
        await self.sem.acquire()
''' + LIMITER_TAIL, "lets every request through", "4 of 24 requests were let through; the others waited forever"),
    "semaphore released at once": ('''
import asyncio

class RateLimiter:
    def __init__(self, rate_per_s):
        self.sem = asyncio.Semaphore(rate_per_s)

    async def acquire(self):
        async with self.sem:
            pass
''' + LIMITER_TAIL, "never above the limit", "the limit is 4"),
    "busy wait with sleep(0)": ('''
import asyncio
from collections import deque

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s
        self._starts = deque()

    async def acquire(self):
        loop = asyncio.get_running_loop()
        while True:
            while self._starts and self._starts[0] <= loop.time() - 1.0:
                self._starts.popleft()
            if len(self._starts) < self.rate_per_s:
                self._starts.append(loop.time())
                return
            await asyncio.sleep(0)
''' + LIMITER_TAIL, "lets every request through", "spun without letting the clock move"),
    "time.sleep": ('''
import asyncio, time
from collections import deque

class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s
        self._starts = deque()

    async def acquire(self):
        now = asyncio.get_running_loop().time()
        while self._starts and self._starts[0] <= now - 1.0:
            self._starts.popleft()
        if len(self._starts) >= self.rate_per_s:
            time.sleep(self._starts[0] + 1.0 - now)
        self._starts.append(now)
''' + LIMITER_TAIL, "never blocks the event loop", "time.sleep("),
    "plain acquire": ('''
class RateLimiter:
    def __init__(self, rate_per_s):
        self.rate_per_s = rate_per_s

    def acquire(self):
        pass
''', "has an async acquire() method", "plain method"),
    "stub": ('''
class RateLimiter:
    def __init__(self, rate_per_s):
        raise NotImplementedError("write your solution here")

    async def acquire(self):
        raise NotImplementedError("write your solution here")
''' + LIMITER_TAIL, "written", "not written yet"),
}


DIAGNOSIS = {
    'async with does not acquire': 'async with does not acquire',
    'no limit': 'limit never applied',
    'if instead of while': 'limit exceeded',
    'locked pacer (sleeps holding the lock)': 'waits longer than needed',
    'pacer without a lock': 'limit never applied',
    'token bucket of rate_per_s tokens': 'limit exceeded',
    'fixed calendar-second window': 'limit exceeded',
    'semaphore never given back': 'permits never come back',
    'semaphore released at once': 'limit never applied',
    'busy wait with sleep(0)': 'busy wait',
    'time.sleep': 'blocked the loop',
    'plain acquire': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("code", [SLIDING_LOG, TIMED_PERMITS, POLLING],
                         ids=["sliding log", "timed permits", "polling every 10 ms"])
@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("seed", [None, 9])
def test_correct_limiters_pass(code, variant, seed):
    started = time.perf_counter()
    report = check(define(code, "RateLimiter"), variant=variant, seed=seed)
    assert report.passed, report.text()
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed


@pytest.mark.parametrize("name", sorted(LIMITER_WRONG))
def test_wrong_limiter_is_rejected_with_the_right_message(name):
    code, prop, fragment = LIMITER_WRONG[name]
    report = check(define(code, "RateLimiter"))
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["no limit", "locked pacer (sleeps holding the lock)",
                                  "token bucket of rate_per_s tokens", "fixed calendar-second window",
                                  "if instead of while", "async with does not acquire"])
@pytest.mark.parametrize("seed", [None, 9, 10, 11])
def test_hidden_variant_rejects_wrong_limiters_too(name, seed):
    code, prop, _ = LIMITER_WRONG[name]
    report = check(define(code, "RateLimiter"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()


def test_earliest_starts_fill_each_window():
    assert earliest_starts([0.0] * 7, 3) == [0, 0, 0, 1, 1, 1, 2]
    assert earliest_starts([0.0, 0.0, 0.5, 2.4], 2) == [0, 0, 1.0, 2.4]
    sc = limiter_scenario("public")
    best = earliest_starts(list(sc.arrivals), sc.rate_per_s)
    assert busiest_window(best)[0] == sc.rate_per_s


def test_report_text_is_deterministic():
    fn = define(LIMITER_WRONG["locked pacer (sleeps holding the lock)"][0], "RateLimiter")
    assert check(fn).text() == check(fn).text()
