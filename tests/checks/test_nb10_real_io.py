"""The RateLimiter and fetch_with_retries checks pass the references and reject what learners write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from asynclab.checks.nb10_real_io import earliest_starts, limiter_scenario
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
RETRY_DIAGNOSIS = {
    'sleeps after the final failure': 'sleeps after the last failure',
    'remembers the error and raises it after the loop': 'sleeps after the last failure',
    'no retries': 'no retry',
    'no backoff': 'no backoff',
    'fixed backoff': 'backoff does not grow',
    'fixed backoff with jitter': 'backoff does not grow',
    'linear backoff': 'wrong backoff',
    'no jitter': 'no jitter',
    'retries forever': 'retries forever',
    'one attempt too many': 'too many attempts',
    'one attempt too few': 'too few attempts',
    'swallows the last error': 'error swallowed',
    'retries every error': 'retries permanent errors',
    'timeouts not retried': 'no retry',
    'limiter only once': 'limiter skipped on retries',
    'acquire not awaited': 'forgotten await',
    'time.sleep backoff': 'blocked the loop',
    'other parameter names': 'raised an error',
    'not async': 'not async',
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


# -- fetch_with_retries ----------------------------------------------------------------------
RETRIES = '''
import asyncio, random

async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    for attempt in range(1, max_attempts + 1):
        await limiter.acquire()
        try:
            return await fetch(key)
        except (ConnectionError, TimeoutError):
            if attempt == max_attempts:
                raise
        delay_s = base_delay_s * 2 ** (attempt - 1)
        await asyncio.sleep(delay_s * (1 + random.random() / 10))
'''

# Another correct shape: additive jitter, a while loop, `async with limiter`.
RETRIES_WHILE = '''
import asyncio, random

async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    attempt = 0
    while True:
        attempt += 1
        try:
            async with limiter:
                return await fetch(key)
        except (ConnectionError, TimeoutError) as exc:
            if attempt >= max_attempts:
                raise exc
            await asyncio.sleep(base_delay_s * 2 ** (attempt - 1) + random.uniform(0, base_delay_s / 2))
'''


def retries_variant(old: str, new: str) -> str:
    assert old in RETRIES, old
    return RETRIES.replace(old, new)


RETRY_WRONG = {
    "sleeps after the final failure": (retries_variant('''
        except (ConnectionError, TimeoutError):
            if attempt == max_attempts:
                raise
        delay_s = base_delay_s * 2 ** (attempt - 1)
        await asyncio.sleep(delay_s * (1 + random.random() / 10))''', '''
        except (ConnectionError, TimeoutError):
            delay_s = base_delay_s * 2 ** (attempt - 1)
            await asyncio.sleep(delay_s * (1 + random.random() / 10))
            if attempt == max_attempts:
                raise'''), "raises at once when it gives up", "after its last attempt"),
    "remembers the error and raises it after the loop": ('''
import asyncio, random

async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    last_error = None
    for attempt in range(1, max_attempts + 1):
        await limiter.acquire()
        try:
            return await fetch(key)
        except (ConnectionError, TimeoutError) as exc:
            last_error = exc
        await asyncio.sleep(base_delay_s * 2 ** (attempt - 1) * (1 + random.random() / 10))
    raise last_error
''', "raises at once when it gives up", "a backoff sleep after the final failure"),
    "no retries": ('''
async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    await limiter.acquire()
    return await fetch(key)
''', "retries transient errors", "b failed once with ConnectionError and was not tried again"),
    "no backoff": (retries_variant(
        "        await asyncio.sleep(delay_s * (1 + random.random() / 10))\n", ""),
        "backoff grows exponentially", "was retried immediately"),
    "fixed backoff": (retries_variant("delay_s * (1 + random.random() / 10)", "base_delay_s"),
                      "backoff grows exponentially", "did not grow: 0.50, 0.50, 0.50 s"),
    "fixed backoff with jitter": (retries_variant("delay_s * (1 + random.random() / 10)",
                                                  "base_delay_s * (1 + random.random() / 10)"),
                                  "backoff grows exponentially", "exponential backoff"),
    "linear backoff": (retries_variant("delay_s = base_delay_s * 2 ** (attempt - 1)",
                                       "delay_s = base_delay_s * attempt"),
                       "backoff grows exponentially", "about 0.5, 1, 2 s"),
    "no jitter": (retries_variant("delay_s * (1 + random.random() / 10)", "delay_s"),
                  "jitter spreads the retries", "retried at the same moment (0.60 s)"),
    "retries forever": ('''
import asyncio

async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    attempt = 0
    while True:
        attempt += 1
        await limiter.acquire()
        try:
            return await fetch(key)
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(min(base_delay_s * 2 ** (attempt - 1), 10.0))
''', "gives up after max_attempts", "was still being retried when the check stopped it"),
    "one attempt too many": (retries_variant("range(1, max_attempts + 1)",
                                             "range(1, max_attempts + 2)").replace(
        "if attempt == max_attempts:", "if attempt == max_attempts + 1:"),
        "gives up after max_attempts", "it was tried 5 times; max_attempts is 4"),
    "one attempt too few": (retries_variant("range(1, max_attempts + 1)",
                                            "range(1, max_attempts)").replace(
        "if attempt == max_attempts:", "if attempt == max_attempts - 1:"),
        "retries transient errors", "f needed 4 attempts but was tried only 3 times"),
    "swallows the last error": (retries_variant("                raise\n",
                                                "                return None\n"),
                                "gives up after max_attempts", "returned None"),
    "retries every error": (retries_variant("except (ConnectionError, TimeoutError):",
                                            "except Exception:"),
                            "no retry of permanent errors", "e failed with LookupError (like a 404) "
                                                            "and was tried again"),
    "timeouts not retried": (retries_variant("except (ConnectionError, TimeoutError):",
                                             "except ConnectionError:"),
                             "retries transient errors", "c failed once with TimeoutError"),
    "limiter only once": ('''
import asyncio, random

async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    await limiter.acquire()
    for attempt in range(1, max_attempts + 1):
        try:
            return await fetch(key)
        except (ConnectionError, TimeoutError):
            if attempt == max_attempts:
                raise
        await asyncio.sleep(base_delay_s * 2 ** (attempt - 1) * (1 + random.random() / 10))
''', "acquires the limiter before every attempt", "retries must wait for the limiter too"),
    "acquire not awaited": (retries_variant("        await limiter.acquire()\n",
                                            "        limiter.acquire()\n"),
                            "acquires the limiter before every attempt", "called without `await`"),
    "time.sleep backoff": (retries_variant(
        "        await asyncio.sleep(delay_s * (1 + random.random() / 10))\n",
        "        time.sleep(delay_s * (1 + random.random() / 10))\n").replace(
        "import asyncio, random", "import asyncio, random, time"),
        "never blocks the event loop", "time.sleep("),
    "other parameter names": (RETRIES.replace("max_attempts", "retries"),
                              "runs without error", "unexpected keyword argument 'max_attempts' for "
                                                    "every key"),
    "not async": ('''
def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    return None
''', "is a coroutine function", "not an `async def` function"),
    "stub": ('''
async def fetch_with_retries(fetch, key, limiter, max_attempts=4, base_delay_s=0.5):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("code", [RETRIES, RETRIES_WHILE], ids=["for loop", "while loop"])
@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("seed", [None, 9])
def test_correct_retry_clients_pass(code, variant, seed):
    started = time.perf_counter()
    report = check(define(code, "fetch_with_retries"), variant=variant, seed=seed)
    assert report.passed, report.text()
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed


@pytest.mark.parametrize("name", sorted(RETRY_WRONG))
def test_wrong_retry_client_is_rejected_with_the_right_message(name):
    code, prop, fragment = RETRY_WRONG[name]
    report = check(define(code, "fetch_with_retries"))
    assert_diagnosed(report, prop, fragment, RETRY_DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["no retries", "no backoff", "fixed backoff", "no jitter",
                                  "retries every error", "limiter only once",
                                  "one attempt too many", "sleeps after the final failure"])
@pytest.mark.parametrize("seed", [None, 9])
def test_hidden_variant_rejects_wrong_retry_clients_too(name, seed):
    code, prop, _ = RETRY_WRONG[name]
    report = check(define(code, "fetch_with_retries"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()


@pytest.mark.parametrize("code, name", [(LIMITER_WRONG["locked pacer (sleeps holding the lock)"][0],
                                         "RateLimiter"),
                                        (RETRY_WRONG["fixed backoff"][0], "fetch_with_retries")])
def test_report_text_is_deterministic(code, name):
    fn = define(code, name)
    assert check(fn).text() == check(fn).text()
