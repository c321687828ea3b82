"""The fetch_all_urls check passes the reference and rejects what learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from asynclab.checks.nb05_semaphore import best_makespan
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)

    async def fetch_one(url):
        async with sem:
            try:
                async with asyncio.timeout(timeout_s):
                    return await fetch(url)
            except TimeoutError:
                return None

    results = await asyncio.gather(*(fetch_one(url) for url in urls))
    return dict(zip(urls, results))
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "workers that each take an even share": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    results = {}
    share = len(urls) // max_concurrent

    async def worker(mine):
        for url in mine:
            try:
                async with asyncio.timeout(timeout_s):
                    results[url] = await fetch(url)
            except TimeoutError:
                results[url] = None

    await asyncio.gather(*(worker(urls[i * share:(i + 1) * share])
                           for i in range(max_concurrent)))
    return results
''', "every URL in the result", "with 2 URLs and 4 slots it returned {}"),
    "sequential": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    results = {}
    for url in urls:
        try:
            async with asyncio.timeout(timeout_s):
                results[url] = await fetch(url)
        except TimeoutError:
            results[url] = None
    return results
''', "runs concurrently", "one at a time: 28.1 s"),
    "no limit": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    async def fetch_one(url):
        try:
            async with asyncio.timeout(timeout_s):
                return await fetch(url)
        except TimeoutError:
            return None
    return dict(zip(urls, await asyncio.gather(*(fetch_one(u) for u in urls))))
''', "limit respected", "12 fetches were in flight at once; the limit is 4"),
    "no timeout": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)
    async def fetch_one(url):
        async with sem:
            return await fetch(url)
    return dict(zip(urls, await asyncio.gather(*(fetch_one(u) for u in urls))))
''', "per-URL timeout applied", "ran to the end: no timeout was applied"),
    "timeout counts the queue": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)
    async def fetch_one(url):
        try:
            async with asyncio.timeout(timeout_s):
                async with sem:
                    return await fetch(url)
        except TimeoutError:
            return None
    return dict(zip(urls, await asyncio.gather(*(fetch_one(u) for u in urls))))
''', "results for URLs within the timeout", "wrong result"),
    "one timeout for everything": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)
    results = dict.fromkeys(urls)
    async def fetch_one(url):
        async with sem:
            results[url] = await fetch(url)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(fetch_one(u) for u in urls))
    except TimeoutError:
        pass
    return results
''', "results for URLs within the timeout", "wrong result"),
    "batches": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    async def fetch_one(url):
        try:
            async with asyncio.timeout(timeout_s):
                return await fetch(url)
        except TimeoutError:
            return None
    results = {}
    for i in range(0, len(urls), max_concurrent):
        batch = urls[i:i + max_concurrent]
        results.update(zip(batch, await asyncio.gather(*(fetch_one(u) for u in batch))))
    return results
''', "runs concurrently", "with 4 at a time it takes 9.9 s"),
    "time.sleep in a coroutine": ('''
import asyncio, time

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)
    async def fetch_one(url):
        async with sem:
            time.sleep(0.1)  # "be polite to the server"
            try:
                async with asyncio.timeout(timeout_s):
                    return await fetch(url)
            except TimeoutError:
                return None
    return dict(zip(urls, await asyncio.gather(*(fetch_one(u) for u in urls))))
''', "never blocks the event loop", "time.sleep(0.1) in fetch_one()"),
    "forgotten await": ('''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    sem = asyncio.Semaphore(max_concurrent)
    async def fetch_one(url):
        async with sem:
            try:
                async with asyncio.timeout(timeout_s):
                    return fetch(url)
            except TimeoutError:
                return None
    return dict(zip(urls, await asyncio.gather(*(fetch_one(u) for u in urls))))
''', "every coroutine awaited", "a forgotten `await`"),
    "not async": ('''
def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    return {}
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "fetch_all_urls"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'workers that each take an even share': 'assumes more urls than slots',
    'sequential': 'one after another',
    'no limit': 'limit never applied',
    'no timeout': 'no timeout',
    'timeout counts the queue': 'timeout counts the queue',
    'one timeout for everything': 'timeout counts the queue',
    'batches': 'in batches',
    'time.sleep in a coroutine': 'blocked the loop',
    'forgotten await': 'forgotten await',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "fetch_all_urls"))
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["sequential", "no limit", "no timeout"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "fetch_all_urls"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_report_text_is_deterministic():
    fn = define(WRONG["no limit"][0], "fetch_all_urls")
    assert check(fn).text() == check(fn).text()


def test_best_makespan_is_greedy_list_scheduling():
    assert best_makespan([1, 1, 1, 1], 2) == 2
    assert best_makespan([3, 1, 1, 1], 2) == 3
    assert best_makespan([5], 4) == 5
