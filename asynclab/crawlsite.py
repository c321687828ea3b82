"""A small web site to crawl, for lesson 20: the same site on virtual time and over HTTP.

``make_site(seed)`` builds a deterministic site: pages spread over a few hosts
(``www.site.test``, ``docs.site.test`` ...), each with a title and links, a
latency, and a fate. Everything follows from the seed:

* links that loop (cycles, self-links), and links that are written differently
  but name the same page (``p3#top``, ``p3?ref=nav``, ``./p3``, an upper-case
  host): ``normalise`` turns them into one URL;
* links to pages that do not exist (404), and to an external host
  (``elsewhere.test``) that a polite crawler does not visit;
* slow pages (still under the usual 2 s timeout), pages that answer 503 a few
  times and then 200 (a retry fixes them), pages that always answer 503, and
  pages that hang (only a timeout gets past them).

``site.fetch(url)`` answers ``(status, html)`` on the running loop's clock (a
virtual clock in checks and lessons) and records every call, per host: when it
started and ended, how it ended, and how many calls were in flight at once.
``site_routes(site)`` serves the same pages over real HTTP through
``asynclab.labserver.LabServer`` (one host: the server's), so that a crawler
written against ``fetch`` runs unchanged with ``aiohttp.ClientSession``.

``expected(site, retries)`` is what a correct crawl returns, and
``best_makespan(...)`` how long a polite crawl needs at best (a simulation of
per-host slots that start the next known page as soon as one frees up).

Guarantees: the same seed and sizes give the same site, byte for byte; the
fate of attempt *n* of a page depends only on the page and *n*, never on
timing; every page is reachable from the start page.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit, urlunsplit

__all__ = ["Page", "Site", "SiteCall", "make_site", "normalise", "host_of", "extract_links",
           "extract_title", "expected", "best_makespan", "site_routes", "EXTERNAL_HOST",
           "HANG_S"]

EXTERNAL_HOST = "elsewhere.test"
HANG_S = 600.0  # a hanging page answers after ten minutes: only a timeout gets past it
NOT_FOUND_LATENCY_S = 0.02
ALWAYS = 10**6  # fail_first for a page that never recovers


# -- URLs and HTML ------------------------------------------------------------------------
def normalise(url: str) -> str:
    """One spelling per page: lower-case scheme and host, no fragment, no query, path '/' at least.

    The course's site ignores query strings (``?ref=nav`` is tracking), so
    they are dropped; so are default ports.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower() or "http"
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


def host_of(url: str) -> str:
    """``host`` or ``host:port`` of a URL, lower-case (``normalise`` first for a stable answer)."""
    return urlsplit(normalise(url)).netloc


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title_parts: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)


def extract_links(page_url: str, html: str) -> list[str]:
    """The links of a page as absolute URLs, in page order, as written (not normalised)."""
    parser = _Parser()
    parser.feed(html)
    return [urljoin(page_url, href) for href in parser.links]


def extract_title(html: str) -> str:
    """The text of the page's ``<title>``, or '' when it has none."""
    parser = _Parser()
    parser.feed(html)
    return "".join(parser.title_parts).strip()


# -- the site -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    url: str  # normalised
    title: str
    links: tuple[str, ...]  # hrefs as written in the HTML
    latency_s: float
    fail_first: int = 0  # the first n attempts answer 503 (ALWAYS: every attempt)
    hangs: bool = False

    def html(self) -> str:
        items = "\n".join(f'  <li><a href="{escape(h)}">{escape(h)}</a></li>' for h in self.links)
        return (f"<!doctype html>\n<html><head><title>{escape(self.title)}</title></head>\n"
                f"<body><h1>{escape(self.title)}</h1>\n<ul>\n{items}\n</ul></body></html>\n")


@dataclass
class SiteCall:
    """One request the site received."""

    url: str  # as asked
    key: str  # normalised
    host: str
    attempt: int  # 1 for the first request of this normalised URL
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "cancelled" or "running"
    status: int | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class Site:
    """A site's pages and a log of the requests it answered."""

    start_url: str
    hosts: tuple[str, ...]
    pages: dict[str, Page]
    seed: int = 0
    calls: list[SiteCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._attempts: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_host: Counter[str] = Counter()
        self.max_in_flight_total = 0
        self.history: list[tuple[float, int]] = [(0.0, 0)]  # (time, total in flight)

    def fresh(self) -> "Site":
        """The same site with an empty log (each run of a crawler needs its own)."""
        return Site(self.start_url, self.hosts, self.pages, self.seed)

    # -- answering --------------------------------------------------------
    def _change(self, host: str, delta: int, now: float) -> None:
        self.in_flight[host] += delta
        total = sum(self.in_flight.values())
        self.max_in_flight_per_host[host] = max(self.max_in_flight_per_host[host],
                                                self.in_flight[host])
        self.max_in_flight_total = max(self.max_in_flight_total, total)
        self.history.append((now, total))

    async def respond(self, url: str) -> tuple[int, str]:
        """Answer a GET of ``url`` after the page's latency: ``(status, html)``."""
        loop = asyncio.get_running_loop()
        key = normalise(url)
        host = host_of(key)
        self._attempts[key] += 1
        call = SiteCall(url, key, host, self._attempts[key], loop.time())
        self.calls.append(call)
        self._change(host, +1, call.start)
        try:
            page = self.pages.get(key)
            if host == EXTERNAL_HOST:
                await asyncio.sleep(0.1)
                status, body = 200, "<html><head><title>Somewhere else</title></head></html>"
            elif page is None:
                await asyncio.sleep(NOT_FOUND_LATENCY_S)
                status, body = 404, "<html><head><title>Not found</title></head></html>"
            elif page.hangs:
                await asyncio.sleep(HANG_S)
                status, body = 200, page.html()
            else:
                await asyncio.sleep(page.latency_s)
                if call.attempt <= page.fail_first:
                    status, body = 503, "<html><head><title>Try again</title></head></html>"
                else:
                    status, body = 200, page.html()
            call.outcome, call.status = "ok", status
            return status, body
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            call.end = loop.time()
            self._change(host, -1, call.end)

    async def fetch(self, url: str) -> tuple[int, str]:
        """What a crawler calls: ``status, html = await site.fetch(url)``."""
        return await self.respond(url)

    # -- reading ----------------------------------------------------------
    def calls_for(self, url: str) -> list[SiteCall]:
        key = normalise(url)
        return [c for c in self.calls if c.key == key]

    def in_flight_series(self) -> tuple[list[float], list[int]]:
        return [t for t, _ in self.history], [n for _, n in self.history]

    def kinds(self) -> dict[str, list[str]]:
        """Page URLs by kind: 'slow', 'flaky' (503 then 200), 'broken' (always 503), 'hangs'."""
        out: dict[str, list[str]] = {"slow": [], "flaky": [], "broken": [], "hangs": []}
        for url, page in self.pages.items():
            if page.hangs:
                out["hangs"].append(url)
            elif page.fail_first >= ALWAYS:
                out["broken"].append(url)
            elif page.fail_first:
                out["flaky"].append(url)
            elif page.latency_s >= 1.0:
                out["slow"].append(url)
        return out


def _variants(rng: random.Random, src: Page | None, src_url: str, dst_url: str) -> str:
    """One way of writing a link from ``src_url`` to ``dst_url`` (same page, other spelling)."""
    s, d = urlsplit(src_url), urlsplit(dst_url)
    if s.netloc != d.netloc:  # another host: absolute, sometimes upper-case
        host = d.netloc.upper() if rng.random() < 0.2 else d.netloc
        base = f"{d.scheme}://{host}{d.path}"
    else:
        base = rng.choice([d.path, d.path, "." + d.path if d.path != "/" else "./"])
    tail = rng.choice(["", "", "", "#top", "#section-2", "?ref=nav", "?utm_source=menu#end"])
    return base + tail


def make_site(seed: int = 0, *, pages: int = 200, hosts: Iterable[str] = (
        "www.site.test", "docs.site.test", "blog.site.test"), slow: float = 0.08,
        flaky: float = 0.06, broken: int = 2, hanging: int = 2, missing: int = 5,
        external: int = 4, latency_s: tuple[float, float] = (0.05, 0.4),
        slow_s: tuple[float, float] = (1.0, 1.8), max_fail: int = 2,
        scheme: str = "http") -> Site:
    """A deterministic site of ``pages`` pages over ``hosts``, drawn from ``seed``.

    ``slow`` and ``flaky`` are shares of the pages; ``broken`` (always 503),
    ``hanging``, ``missing`` (links to pages that do not exist) and
    ``external`` (links to ``elsewhere.test``) are counts. Flaky pages fail
    1 to ``max_fail`` times before they answer. The start page (the first
    host's ``/``) is always fast and healthy.
    """
    rng = random.Random(f"crawlsite/{seed}")
    hosts = tuple(h.lower() for h in hosts)
    if pages < 2 or not hosts:
        raise ValueError("a site needs at least 2 pages and one host")
    urls = [f"{scheme}://{hosts[0]}/"]
    for i in range(1, pages):
        urls.append(f"{scheme}://{hosts[i % len(hosts)]}/p{i}")
    # Fates, drawn for every page but the start page.
    others = list(range(1, pages))
    rng.shuffle(others)
    n_broken, n_hang = min(broken, len(others)), min(hanging, max(len(others) - broken, 0))
    broken_set = set(others[:n_broken])
    hang_set = set(others[n_broken:n_broken + n_hang])
    fates: dict[int, tuple[float, int]] = {}
    for i in range(pages):
        lat = round(rng.uniform(*latency_s), 3)
        fail = 0
        if i and i not in broken_set and i not in hang_set:
            draw = rng.random()
            if draw < slow:
                lat = round(rng.uniform(*slow_s), 3)
            elif draw < slow + flaky:
                fail = rng.randint(1, max_fail)
        fates[i] = (lat, ALWAYS if i in broken_set else fail)
    # Links: a random tree (parent earlier in the list) makes everything reachable;
    # broken and hanging pages are never the only way to a page (their links are never read).
    dead = broken_set | hang_set
    links: dict[int, list[str]] = defaultdict(list)
    for i in range(1, pages):
        parents = [j for j in range(max(0, i - 12), i) if j not in dead] or [0]
        links[rng.choice(parents)].append(urls[i])
    for i in range(pages):
        for _ in range(rng.randint(1, 3)):  # cycles and cross links, back and forth
            links[i].append(urls[rng.randrange(pages)])
        if rng.random() < 0.15:
            links[i].append(urls[i])  # a self-link
    live = [i for i in range(pages) if i not in dead]
    for k in range(missing):
        i = rng.choice(live)
        links[i].append(f"{scheme}://{hosts[i % len(hosts)]}/missing/{k}")
    for k in range(external):
        links[rng.choice(live)].append(f"http://{EXTERNAL_HOST}/offsite/{k}")
    site_pages = {}
    for i, url in enumerate(urls):
        written = []
        for target in links[i]:
            if urlsplit(target).netloc == EXTERNAL_HOST or "/missing/" in target:
                written.append(target if urlsplit(target).netloc == EXTERNAL_HOST
                               else _variants(rng, None, url, target))
            else:
                written.append(_variants(rng, None, url, target))
        rng.shuffle(written)
        lat, fail = fates[i]
        name = "Home" if i == 0 else f"Page {i}"
        site_pages[url] = Page(url, f"{name} on {urlsplit(url).netloc}", tuple(written), lat,
                               fail, i in hang_set)
    return Site(urls[0], hosts, site_pages, seed)


# -- what a correct crawl gives, and how fast it can be -----------------------------------
def _outcome(page: Page | None, retries: int) -> tuple[Any, int]:
    """(value in the crawl's result, number of requests) for one page."""
    if page is None:
        return 404, 1
    if page.hangs:
        return None, 1
    if page.fail_first > retries:
        return 503, retries + 1
    return page.title, page.fail_first + 1


def expected(site: Site, retries: int = 2) -> dict[str, Any]:
    """``{url: title, 404, 503 or None}`` for every page a correct crawl reaches.

    ``None`` is a page that timed out; 503 a page that still failed after
    ``retries`` retries; 404 a link to a page that does not exist. Links are
    only read from pages that answered 200.
    """
    allowed = set(site.hosts)
    result: dict[str, Any] = {}
    todo = [normalise(site.start_url)]
    seen = set(todo)
    while todo:
        url = todo.pop(0)
        page = site.pages.get(url)
        value, _ = _outcome(page, retries)
        result[url] = value
        if isinstance(value, str) and page is not None:
            for link in extract_links(url, page.html()):
                link = normalise(link)
                if host_of(link) in allowed and link not in seen:
                    seen.add(link)
                    todo.append(link)
    return result


def best_makespan(site: Site, *, max_per_host: int, timeout_s: float, retries: int,
                  backoff_s: float, hold_slot_in_backoff: bool = False) -> float:
    """How long a polite crawl takes when every free slot of a host starts the next known page.

    A simulation, on the crawl's own rules: at most ``max_per_host`` requests
    per host at once, a request ends after its latency (or ``timeout_s``), a
    503 is retried after ``backoff_s * 2**n`` with the slot given back during
    the wait, and a page's links are known when its 200 arrives.

    ``hold_slot_in_backoff=True`` keeps the slot during the backoff instead (a
    worker that sleeps before its retry): a little slower, just as polite.
    """
    allowed = set(site.hosts)
    busy: Counter[str] = Counter()
    waiting: dict[str, list[tuple[float, int, str, int]]] = defaultdict(list)  # per host, FIFO
    events: list[tuple[float, int, str, str, int]] = []  # (time, seq, kind, url, attempt)
    seq = 0
    seen = {normalise(site.start_url)}
    end = 0.0

    def push(t: float, kind: str, url: str, attempt: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, url, attempt))

    def ready(t: float, url: str, attempt: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(waiting[host_of(url)], (t, seq, url, attempt))

    def took(url: str) -> float:
        page = site.pages.get(url)
        if page is None:
            return NOT_FOUND_LATENCY_S
        return min(HANG_S if page.hangs else page.latency_s, timeout_s)

    def start_what_fits(t: float) -> None:
        for host, queue in waiting.items():
            while queue and busy[host] < max_per_host:
                _, _, url, attempt = heapq.heappop(queue)
                busy[host] += 1
                push(t + took(url), "done", url, attempt)

    ready(0.0, normalise(site.start_url), 1)
    start_what_fits(0.0)
    while events:
        t, _, kind, url, attempt = heapq.heappop(events)
        end = max(end, t)
        if kind == "retry":
            ready(t, url, attempt)
        elif kind == "again":  # the slot was kept during the backoff
            push(t + took(url), "done", url, attempt)
        else:
            page = site.pages.get(url)
            again = (page is not None and not page.hangs and attempt <= page.fail_first
                     and attempt <= retries)
            if not (again and hold_slot_in_backoff):
                busy[host_of(url)] -= 1
            if page is not None and not page.hangs:
                if attempt <= page.fail_first:
                    if again:
                        push(t + backoff_s * 2 ** (attempt - 1),
                             "again" if hold_slot_in_backoff else "retry", url, attempt + 1)
                else:
                    for link in extract_links(url, page.html()):
                        link = normalise(link)
                        if host_of(link) in allowed and link not in seen:
                            seen.add(link)
                            ready(t, link, 1)
        start_what_fits(t)
    return end


# -- over HTTP -----------------------------------------------------------------------------
def site_routes(site: Site) -> list[Any]:
    """aiohttp routes serving a one-host ``site`` (built with any host name) at any address.

    ``LabServer(routes=site_routes(site))`` serves it on 127.0.0.1; the page
    for ``http://127.0.0.1:PORT/p3`` is the site's ``/p3``. Links within the
    site are relative, so they lead back to the server. Requests are recorded
    in ``site.calls`` with the server's clock (``time.monotonic``).
    """
    from aiohttp import web

    if len(site.hosts) != 1:
        raise ValueError("serve a one-host site (make_site(..., hosts=['site.test']))")
    base = f"{urlsplit(site.start_url).scheme}://{site.hosts[0]}"

    async def handle(request: web.Request) -> web.Response:
        status, body = await site.respond(base + request.path_qs)
        return web.Response(status=status, text=body, content_type="text/html")

    return [web.get("/{page:.*}", handle)]
