"""The crawl site of lesson 20: deterministic, tricky in the right ways, the same over HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from asynclab import run_virtual
from asynclab.crawlsite import (ALWAYS, EXTERNAL_HOST, HANG_S, Page, Site, best_makespan,
                                expected, extract_links, extract_title, host_of, make_site,
                                normalise, site_routes)
from asynclab.labserver import LabServer
from checks.test_nb20_capstone_crawler import REFERENCE
from conftest import define


def test_normalise_names_one_page_one_way():
    same = ["http://www.site.test/p3", "HTTP://WWW.SITE.TEST/p3#top", "http://www.site.test/p3?ref=nav",
            "http://www.site.test:80/p3?utm_source=menu#end"]
    assert {normalise(u) for u in same} == {"http://www.site.test/p3"}
    assert normalise("http://www.site.test") == "http://www.site.test/"
    assert normalise("http://127.0.0.1:8080/a#b") == "http://127.0.0.1:8080/a"
    assert normalise("http://www.site.test/p3") != normalise("http://www.site.test/p30")
    assert host_of("http://Docs.Site.Test/x") == "docs.site.test"


def test_links_and_title_are_read_from_the_html():
    page = Page("http://a.test/", "A & B", ("/x#top", "./y", "http://b.test/z?q=1"), 0.1)
    html = page.html()
    assert extract_title(html) == "A & B"
    assert extract_links("http://a.test/dir/", html) == [
        "http://a.test/x#top", "http://a.test/dir/y", "http://b.test/z?q=1"]


def test_the_same_seed_gives_the_same_site_and_another_seed_another():
    a, b, c = make_site(4), make_site(4), make_site(5)
    assert a.pages == b.pages and a.start_url == b.start_url
    assert a.pages != c.pages


def test_the_site_has_every_trap_a_crawler_must_handle():
    site = make_site(0, pages=200)
    kinds = site.kinds()
    assert len(site.pages) == 200 and len(site.hosts) == 3
    assert len(kinds["hangs"]) == 2 and len(kinds["broken"]) == 2
    assert kinds["flaky"] and kinds["slow"]
    hrefs = [h for p in site.pages.values() for h in p.links]
    assert any("#" in h for h in hrefs) and any("?" in h for h in hrefs)
    assert any(EXTERNAL_HOST in h for h in hrefs) and any("/missing/" in h for h in hrefs)
    assert any(normalise(link) == url for url, p in site.pages.items()
               for link in extract_links(url, p.html()))  # self-links
    want = expected(site, retries=2)
    assert len(want) > 150  # almost every page is reachable
    assert sorted(v for v in want.values() if not isinstance(v, str)
                  and v is not None) == [404] * 5 + [503] * 2
    assert all(host_of(u) in site.hosts for u in want)


def test_fetch_answers_by_fate_and_records_calls_on_virtual_time():
    base = "http://t.test"
    site = Site(f"{base}/", ("t.test",), {
        f"{base}/": Page(f"{base}/", "Home", (), 0.1),
        f"{base}/flaky": Page(f"{base}/flaky", "Flaky", (), 0.2, fail_first=1),
        f"{base}/broken": Page(f"{base}/broken", "Broken", (), 0.1, fail_first=ALWAYS),
        f"{base}/hangs": Page(f"{base}/hangs", "Hangs", (), 0.1, hangs=True)})

    async def main():
        out = [(await site.fetch(f"{base}/flaky#a"))[0], (await site.fetch(f"{base}/flaky"))[0],
               (await site.fetch(f"{base}/broken"))[0], (await site.fetch(f"{base}/nope"))[0]]
        try:
            async with asyncio.timeout(1.0):
                await site.fetch(f"{base}/hangs")
        except TimeoutError:
            out.append("timeout")
        return out

    run = run_virtual(main())
    assert run.unwrap() == [503, 200, 503, 404, "timeout"]
    assert [c.attempt for c in site.calls_for(f"{base}/flaky")] == [1, 2]
    assert site.calls_for(f"{base}/hangs")[0].outcome == "cancelled"
    assert run.elapsed == pytest.approx(0.2 + 0.2 + 0.1 + 0.02 + 1.0)
    assert sum(site.in_flight.values()) == 0 and site.max_in_flight_total == 1


def test_best_makespan_is_bounded_by_the_work_and_the_one_at_a_time_crawl():
    site = make_site(1, pages=120)
    kw = dict(timeout_s=2.0, retries=2, backoff_s=0.1)
    one = best_makespan(site, max_per_host=1, **kw)
    four = best_makespan(site, max_per_host=4, **kw)
    work = sum(min(p.latency_s, 2.0) for p in site.pages.values() if not p.hangs)
    assert four < one and one >= work / len(site.hosts) - 1e-9
    assert best_makespan(site, max_per_host=1000, **kw) <= four
    # Keeping the slot during a backoff can only be slower.
    assert best_makespan(site, max_per_host=4, hold_slot_in_backoff=True, **kw) >= four


def test_the_reference_crawler_reaches_the_best_time_on_virtual_time():
    crawl = define(REFERENCE, "crawl")
    site = make_site(2, pages=120)
    run = run_virtual(crawl(site.start_url, site.fetch, allowed_hosts=site.hosts, max_per_host=3))
    assert run.unwrap() == expected(site, 2)
    best = best_makespan(site, max_per_host=3, timeout_s=2.0, retries=2, backoff_s=0.1)
    assert best - 1e-6 <= run.elapsed <= best * 1.1
    assert max(site.max_in_flight_per_host.values()) == 3


def test_the_same_crawler_crawls_the_site_over_real_http_on_127_0_0_1():
    """One real run, small and fast: every page found, each asked once, in a sane time."""
    site = make_site(3, pages=30, hosts=["site.test"], hanging=1, broken=1,
                     latency_s=(0.005, 0.02), slow_s=(0.05, 0.1))
    crawl = define(REFERENCE, "crawl")

    async def main():
        async with LabServer(routes=site_routes(site)) as server:
            async with aiohttp.ClientSession() as session:
                async def fetch(url):
                    async with session.get(url) as resp:
                        return resp.status, await resp.text()
                loop = asyncio.get_running_loop()
                start = loop.time()
                pages = await crawl(server.url + "/", fetch, max_per_host=4, timeout_s=0.5,
                                    backoff_s=0.01)
                return server.url, pages, loop.time() - start

    url, pages, took = asyncio.run(main())
    want = {k.replace("http://site.test", url): v for k, v in expected(site, 2).items()}
    assert pages == want
    assert not any(EXTERNAL_HOST in c.url for c in site.calls)
    assert max(site.max_in_flight_per_host.values()) <= 4
    # The hanging page costs one timeout (0.5 s); the rest is milliseconds. 10 s is a generous
    # bound for a loaded machine; the point is that nothing waited for the hang (600 s).
    assert 0.5 <= took < 10.0 < HANG_S


def test_the_script_stops_cleanly_on_ctrl_c():
    """notebooks/scripts/20_crawler.py sends itself SIGINT mid-crawl: it reports and exits 0."""
    import subprocess
    import sys

    from conftest import ROOT

    script = ROOT / "notebooks" / "scripts" / "20_crawler.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=script.parent)
    assert done.returncode == 0, done.stderr
    assert "Ctrl-C: the crawl was cancelled with" in done.stdout, done.stdout
    assert "requests still in flight: 0, tasks left: 0" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
