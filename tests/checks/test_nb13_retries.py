"""The fetch_with_retries check passes the references and rejects what learners write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

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


def test_report_text_is_deterministic():
    fn = define(RETRY_WRONG["fixed backoff"][0], "fetch_with_retries")
    assert check(fn).text() == check(fn).text()
