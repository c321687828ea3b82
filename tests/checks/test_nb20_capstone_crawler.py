"""The crawl check passes the reference and rejects what learners really write.

Most wrong crawlers differ from the reference in a line or two, so each is
written as an edit of it (``edit(old, new)`` fails loudly if ``old`` is gone).
"""

from __future__ import annotations

import asyncio

import pytest

from asynclab.checks import check
from asynclab.checks.nb20_capstone_crawler import check_crawl, scenario
from asynclab.crawlsite import expected
from conftest import define, failed_props

REFERENCE = '''
import asyncio
from collections import defaultdict
from asynclab.crawlsite import extract_links, extract_title, host_of, normalise

async def crawl(start_url, fetch, *, allowed_hosts=None, max_per_host=4, timeout_s=2.0,
                deadline_s=30.0, retries=2, backoff_s=0.1, pages=None):
    pages = {} if pages is None else pages
    start = normalise(start_url)
    hosts = set(allowed_hosts or [host_of(start)])
    slots = defaultdict(lambda: asyncio.Semaphore(max_per_host))
    seen = {start}

    async def get(url):
        for attempt in range(retries + 1):
            async with slots[host_of(url)]:
                try:
                    async with asyncio.timeout(timeout_s):
                        status, html = await fetch(url)
                except TimeoutError:
                    return None, ""
            if status < 500 or attempt == retries:
                return status, html
            await asyncio.sleep(backoff_s * 2 ** attempt)

    async def visit(url, tg):
        status, html = await get(url)
        if status != 200:
            pages[url] = status
            return
        pages[url] = extract_title(html)
        for link in extract_links(url, html):
            link = normalise(link)
            if host_of(link) in hosts and link not in seen:
                seen.add(link)
                tg.create_task(visit(link, tg), name=link)

    try:
        async with asyncio.timeout(deadline_s):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(visit(start, tg), name=start)
    except TimeoutError:
        pass
    return pages
'''

# The other design: a queue and max_per_host workers per host, a count of pages in progress to
# know when it is done. Its workers keep their slot while they sleep before a retry.
WORKERS = '''
import asyncio
from asynclab.crawlsite import extract_links, extract_title, host_of, normalise

async def crawl(start_url, fetch, *, allowed_hosts=None, max_per_host=4, timeout_s=2.0,
                deadline_s=30.0, retries=2, backoff_s=0.1, pages=None):
    pages = {} if pages is None else pages
    start = normalise(start_url)
    hosts = set(allowed_hosts or [host_of(start)])
    queues = {h: asyncio.Queue() for h in hosts}
    seen = {start}
    pending = 0
    done = asyncio.Event()

    def add(url):
        nonlocal pending
        pending += 1
        queues[host_of(url)].put_nowait(url)

    async def get(url):
        for attempt in range(retries + 1):
            try:
                async with asyncio.timeout(timeout_s):
                    status, html = await fetch(url)
            except TimeoutError:
                return None, ""
            if status < 500 or attempt == retries:
                return status, html
            await asyncio.sleep(backoff_s * 2 ** attempt)

    async def worker(host):
        nonlocal pending
        while True:
            url = await queues[host].get()
            status, html = await get(url)
            pages[url] = extract_title(html) if status == 200 else status
            if status == 200:
                for link in map(normalise, extract_links(url, html)):
                    if host_of(link) in hosts and link not in seen:
                        seen.add(link)
                        add(link)
            pending -= 1
            if pending == 0:
                done.set()

    add(start)
    try:
        async with asyncio.timeout(deadline_s):
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(worker(h), name=f"{h} worker {i}")
                           for h in sorted(hosts) for i in range(max_per_host)]
                await done.wait()
                for w in workers:
                    w.cancel()
    except TimeoutError:
        pass
    return pages
'''


def edit(*pairs: str) -> str:
    code = REFERENCE
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in code, old
        code = code.replace(old, new)
    return code


SEQUENTIAL = '''
import asyncio
from asynclab.crawlsite import extract_links, extract_title, host_of, normalise

async def crawl(start_url, fetch, *, allowed_hosts=None, max_per_host=4, timeout_s=2.0,
                deadline_s=30.0, retries=2, backoff_s=0.1, pages=None):
    pages = {} if pages is None else pages
    hosts = set(allowed_hosts or [host_of(start_url)])
    todo, seen = [normalise(start_url)], {normalise(start_url)}
    try:
        async with asyncio.timeout(deadline_s):
            while todo:
                url = todo.pop(0)
                for attempt in range(retries + 1):
                    try:
                        async with asyncio.timeout(timeout_s):
                            status, html = await fetch(url)
                    except TimeoutError:
                        status, html = None, ""
                        break
                    if status is None or status < 500 or attempt == retries:
                        break
                    await asyncio.sleep(backoff_s * 2 ** attempt)
                if status != 200:
                    pages[url] = status
                    continue
                pages[url] = extract_title(html)
                for link in map(normalise, extract_links(url, html)):
                    if host_of(link) in hosts and link not in seen:
                        seen.add(link)
                        todo.append(link)
    except TimeoutError:
        pass
    return pages
'''

DEADLINE_LEAVES_TASKS = edit('''    try:
        async with asyncio.timeout(deadline_s):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(visit(start, tg), name=start)
    except TimeoutError:
        pass
    return pages''', '''    async def everything():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(visit(start, tg), name=start)

    task = asyncio.create_task(everything(), name="everything")
    await asyncio.wait({task}, timeout=deadline_s)  # "the deadline"
    return pages''')

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "sequential": (SEQUENTIAL, "really concurrent", "with one request at a time"),
    "unbounded (a task per link, no semaphore)": (edit(
        "            async with slots[host_of(url)]:\n                try:",
        "            if True:\n                try:"),
        "at most max_per_host per host", "in flight at once on"),
    "one global semaphore": (edit(
        "slots = defaultdict(lambda: asyncio.Semaphore(max_per_host))",
        "sem = asyncio.Semaphore(max_per_host)\n    slots = defaultdict(lambda: sem)"),
        "really concurrent", "across all 3 hosts"),
    "seen updated after the fetch (race)": (edit(
        "    async def visit(url, tg):\n        status, html = await get(url)",
        "    async def visit(url, tg):\n        if url in seen:\n            return\n"
        "        status, html = await get(url)\n        seen.add(url)",
        "seen = {start}", "seen = set()",
        "                seen.add(link)\n", ""),
        "each page fetched once", "missing from `seen`"),
    "links not normalised": (edit("            link = normalise(link)\n", ""),
                             "finds every page", "keyed by URLs as written"),
    "no timeout": (edit("                    async with asyncio.timeout(timeout_s):\n"
                        "                        status, html = await fetch(url)",
                        "                    status, html = await fetch(url)"),
                   "a timeout per request", "no timeout per request"),
    "no deadline": (edit("async with asyncio.timeout(deadline_s):",
                         "async with asyncio.timeout(None):"),
                    "a deadline for the whole crawl", "the deadline was not applied"),
    "deadline leaves tasks running": (DEADLINE_LEAVES_TASKS, "a deadline for the whole crawl",
                                      "fetches running"),
    "retries a 404": (edit("if status < 500 or attempt == retries:",
                           "if status == 200 or attempt == retries:"),
                      "a 404 is not retried", "answered 404 and was asked 3 times"),
    "no retry": (edit("if status < 500 or attempt == retries:", "if True:"),
                 "retries 5xx with backoff", "was not asked again"),
    "retries without backoff": (edit("            await asyncio.sleep(backoff_s * 2 ** attempt)\n",
                                     ""),
                                "retries 5xx with backoff", "the backoff is"),
    "sleeps after the last attempt": (edit(
        "            if status < 500 or attempt == retries:\n                return status, html\n"
        "            await asyncio.sleep(backoff_s * 2 ** attempt)",
        "            if status < 500:\n                return status, html\n"
        "            await asyncio.sleep(backoff_s * 2 ** attempt)\n        return status, html"),
        "no sleep after the last attempt", "slept 0.40 s after the last attempt"),
    "follows external links": (edit("if host_of(link) in hosts and link not in seen:",
                                    "if link not in seen:"),
                               "stays on the site", "went to another host"),
    "swallows CancelledError in the fetch": (edit(
        "                except TimeoutError:\n                    return None, \"\"",
        "                except (TimeoutError, asyncio.CancelledError):\n"
        "                    return None, \"\""),
        "a clean stop on Ctrl-C", "wrong entr"),
    "swallows CancelledError at the top": (edit(
        "    except TimeoutError:\n        pass\n    return pages",
        "    except (TimeoutError, asyncio.CancelledError):\n        pass\n    return pages"),
        "a clean stop on Ctrl-C", "returned normally: the cancellation was swallowed"),
    "time.sleep for the backoff": (edit(
        "await asyncio.sleep(backoff_s * 2 ** attempt)",
        "__import__('time').sleep(backoff_s * 2 ** attempt)"),
        "never blocks the event loop", "time.sleep"),
    "forgotten await on the backoff": (edit(
        "await asyncio.sleep(backoff_s * 2 ** attempt)",
        "asyncio.sleep(backoff_s * 2 ** attempt)"),
        "every coroutine awaited", "never awaited"),
    "fire and forget (no TaskGroup)": (edit('''    try:
        async with asyncio.timeout(deadline_s):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(visit(start, tg), name=start)
    except TimeoutError:
        pass''', '''    class Spawner:  # "create_task is enough"
        def create_task(self, coro, name=None):
            return asyncio.create_task(coro, name=name)

    await visit(start, Spawner())'''),
        "a clean stop on Ctrl-C", "out of the cancel's reach"),
    "a dict of its own, not the caller's": (edit("pages = {} if pages is None else pages",
                                                 "pages = {}"),
                                            "a clean stop on Ctrl-C", "missing from the pages dict"),
    "not async": ('''
def crawl(start_url, fetch, **kwargs):
    return {}
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def crawl(start_url, fetch, *, allowed_hosts=None, max_per_host=4, timeout_s=2.0,
                deadline_s=30.0, retries=2, backoff_s=0.1, pages=None):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant, seed", [("public", None), ("hidden", None), ("hidden", 7),
                                           ("hidden", 2026)])
def test_reference_passes(variant, seed):
    report = check_crawl(define(REFERENCE, "crawl"), variant=variant, seed=seed)
    assert report.passed, report.text()
    assert len(report.findings) == 12


@pytest.mark.parametrize("seed", [None, 2, 3])
def test_the_frontier_and_workers_design_passes_too(seed):
    report = check_crawl(define(WORKERS, "crawl"), variant="public" if seed is None else "hidden",
                         seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "crawl"))
    assert not report.passed
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()


@pytest.mark.parametrize("name", ["one global semaphore", "seen updated after the fetch (race)",
                                  "swallows CancelledError at the top"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check_crawl(define(code, "crawl"), variant="hidden", seed=3)
    assert prop in failed_props(report), report.text()


def test_hidden_variant_is_drawn_from_the_seed():
    a, b, c = scenario("hidden", 5), scenario("hidden", 5), scenario("hidden", 6)
    assert a.params == b.params and a.site.pages == b.site.pages
    assert (a.params, sorted(a.site.pages)) != (c.params, sorted(c.site.pages))
    for sc in (a, c):  # meaningful for any seed: a deadline and a cancel mid-crawl
        assert 0 < sc.cancel_at < sc.deadline_s < sc.best_s < sc.params.deadline_s
        assert any(v is None for v in expected(sc.site, sc.params.retries).values())


def test_report_text_is_deterministic():
    fn = define(WRONG["retries a 404"][0], "crawl")
    assert check(fn).text() == check(fn).text()
