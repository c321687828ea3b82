"""Lesson 20 as a script: a polite crawler over HTTP that stops cleanly on Ctrl-C.

    python 20_crawler.py          # a demo: it sends itself SIGINT (Ctrl-C) after 0.4 s
    python 20_crawler.py --wait   # a slower site; press Ctrl-C yourself (or let it finish)

The course's site is served on 127.0.0.1 (asynclab.crawlsite + LabServer); the crawl fetches it
with aiohttp. On SIGINT the signal handler cancels the crawl task: every request in flight is
cancelled, the TaskGroup waits for its tasks to unwind, and `pages` keeps the pages that were
finished. The script then prints what it has and exits with status 0.
"""

import asyncio
import signal
import sys
from collections import defaultdict

import aiohttp

from asynclab.crawlsite import (extract_links, extract_title, host_of, make_site, normalise,
                                site_routes)
from asynclab.labserver import LabServer


async def crawl(start_url, fetch, *, allowed_hosts=None, max_per_host=4, timeout_s=2.0,
                deadline_s=30.0, retries=2, backoff_s=0.1, pages=None):
    """The lesson's crawler: one task per page in a TaskGroup, a semaphore per host."""
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


async def main(wait_for_user):
    scale = 10 if wait_for_user else 1  # --wait: a site slow enough to press Ctrl-C in time
    site = make_site(19, pages=60, hosts=["site.test"], hanging=1,
                     latency_s=(0.02 * scale, 0.1 * scale), slow_s=(0.3 * scale, 0.5 * scale))
    loop = asyncio.get_running_loop()
    pages = {}
    async with LabServer(routes=site_routes(site)) as server:
        async with aiohttp.ClientSession() as session:

            async def fetch(url):
                async with session.get(url) as resp:
                    return resp.status, await resp.text()

            crawl_task = asyncio.create_task(
                crawl(server.url + "/", fetch, timeout_s=1.0 * scale, pages=pages), name="crawl")
            # Ctrl-C cancels the crawl task, not the whole program: we still want to report.
            loop.add_signal_handler(signal.SIGINT, crawl_task.cancel)
            if not wait_for_user:
                loop.call_later(0.4, signal.raise_signal, signal.SIGINT)  # the demo's "Ctrl-C"
            try:
                await crawl_task
                print(f"finished: {len(pages)} pages")
            except asyncio.CancelledError:
                if not crawl_task.cancelled():
                    raise
                print(f"Ctrl-C: the crawl was cancelled with {len(pages)} pages done")
            finally:
                loop.remove_signal_handler(signal.SIGINT)
    # Every value is a finished answer: a title, a status, or None for a timeout.
    assert all(v is None or isinstance(v, (str, int)) for v in pages.values())
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    print(f"requests still in flight: {sum(site.in_flight.values())}, tasks left: {len(others)}")
    for url, value in list(pages.items())[:5]:
        print(f"  {url} -> {value!r}")


if __name__ == "__main__":
    asyncio.run(main(wait_for_user="--wait" in sys.argv))
