"""Checks for notebook 05_semaphore: the bounded, time-limited URL fetcher."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from asynclab.checking import (Report, common_findings, hidden_rng, observe, plural,
                               require_coroutine_function, varied)
from asynclab.fakes import FakeService

NOTEBOOK = "05_semaphore"
TOLERANCE_S = 1e-3  # virtual time is exact to 1 µs; this only absorbs float rounding


@dataclass(frozen=True)
class FetchScenario:
    latency_s: dict[str, float]
    max_concurrent: int
    timeout_s: float

    @property
    def urls(self) -> list[str]:
        return list(self.latency_s)

    def slow_urls(self) -> list[str]:
        return [u for u, t in self.latency_s.items() if t > self.timeout_s]

    def effective_s(self, url: str) -> float:
        return min(self.latency_s[url], self.timeout_s)


def best_makespan(durations: list[float], slots: int) -> float:
    """Finish time when jobs start in order, each on the first free slot (what a semaphore does)."""
    free_at = [0.0] * max(slots, 1)
    heapq.heapify(free_at)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + duration)
        end = max(end, start + duration)
    return end


def scenario(variant: str, seed: int | None = None) -> FetchScenario:
    if variant == "public":
        latencies = [1.0, 2.5, 0.5, 100.0, 1.5, 3.0, 0.8, 2.0, 100.0, 1.2, 0.7, 4.9]
        return FetchScenario({f"https://example.test/item/{i}": t for i, t in enumerate(latencies)},
                             max_concurrent=4, timeout_s=5.0)
    # Hidden, drawn from the seed: more URLs than slots, a few slower than the timeout.
    rng = hidden_rng(variant, seed)
    count, limit = rng.randint(20, 32), rng.randint(3, 8)
    latencies = [round(rng.uniform(0.1, 3.0), 3) for _ in range(count)]
    for i in rng.sample(range(count), rng.randint(2, 4)):
        latencies[i] = 50.0
    return FetchScenario({f"https://hidden.test/r/{i}": t for i, t in enumerate(latencies)},
                         max_concurrent=limit, timeout_s=rng.choice([3.5, 4.0, 4.5]))


@varied
def check_fetch_all_urls(fn, *, variant: str = "public",
                         seed: int | None = None) -> Report:
    """Judge ``fetch_all_urls(urls, fetch, max_concurrent, timeout_s)``.

    Properties: every URL in the result with the right value, ``None`` exactly
    for the URLs slower than the timeout; never more than ``max_concurrent``
    fetches in flight; the limit used fully, finishing as early as a semaphore
    allows; each slow fetch cancelled when its own timeout expires (queueing
    time does not count); each URL fetched once; no blocking call.
    """
    report = Report("fetch_all_urls")
    bad = require_coroutine_function("fetch_all_urls", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    service = FakeService(sc.latency_s)
    obs = observe(lambda: fn(sc.urls, service.fetch, max_concurrent=sc.max_concurrent,
                             timeout_s=sc.timeout_s),
                  name="fetch_all_urls", namespaces=(getattr(fn, "__globals__", {}),))
    report.timeline = obs.timeline
    early = common_findings("fetch_all_urls", obs)
    report.findings.extend(early)
    if obs.hang is not None or obs.error is not None:
        return report

    result = obs.result
    limit, n = sc.max_concurrent, len(sc.urls)
    slow = sc.slow_urls()

    # 1. The shape of the result.
    if not isinstance(result, dict):
        report.add("returns a dict", False, f"it returned {type(result).__name__}, not a dict.",
                   "Return a dict that maps each URL to its result (or None).", "not a dict")
        return report
    missing = [u for u in sc.urls if u not in result]
    extra = [k for k in result if k not in sc.latency_s]
    report.add("every URL in the result", not missing and not extra,
               f"all {n} URLs are keys of the result" if not missing and not extra else
               f"{len(missing)} URL(s) missing (first: {missing[0] if missing else '-'}), "
               f"{len(extra)} unexpected key(s)",
               "Store a result for every URL, None included, keyed by the URL itself.",
               "urls missing")

    # 2. Values: data for fast URLs, None for the slow ones.
    wrong = [u for u in sc.urls if u in result and u not in slow
             and result[u] != service.result_for(u)]
    shown = (lambda v: "a coroutine object" if hasattr(v, "cr_code") else repr(v)[:60])
    queued_timeouts = [u for u in wrong if result[u] is None]
    report.add("results for URLs within the timeout", not wrong,
               f"the {n - len(slow)} URLs faster than {sc.timeout_s:g} s have their data" if not wrong
               else f"{len(wrong)} URL(s) within the timeout have a wrong result, e.g. {wrong[0]} "
                    f"-> {shown(result[wrong[0]])}",
               "Is your timeout also counting the time a fetch waits for the semaphore? Start the "
               "timeout inside `async with sem:`." if queued_timeouts else
               "Store exactly what `await fetch(url)` returned.",
               "timeout counts the queue" if queued_timeouts else "wrong results")
    not_none = [u for u in slow if u in result and result[u] is not None]
    report.add("None for URLs that time out", not not_none,
               f"the {len(slow)} URLs slower than {sc.timeout_s:g} s map to None" if not not_none
               else f"{len(not_none)} URL(s) slower than the timeout do not map to None",
               "Catch TimeoutError around the fetch and store None for that URL.",
               "timeouts not turned into None")

    # 3. The limit.
    peak = service.max_in_flight
    report.add("limit respected", peak <= limit,
               f"at most {plural(peak, 'fetch')} in flight at once (limit {limit})" if peak <= limit
               else f"{peak} fetches were in flight at once; the limit is {limit}",
               "Create one asyncio.Semaphore(max_concurrent) and do every fetch inside "
               "`async with sem:`." if peak >= n else
               "Use one asyncio.Semaphore(max_concurrent) shared by every fetch: a semaphore "
               "created per fetch, or released too early, does not hold the others back.",
               "limit never applied" if peak >= n else "limit exceeded")

    # 4. Concurrency: uses the limit fully and finishes when a semaphore would.
    best = best_makespan([sc.effective_s(u) for u in sc.urls], limit)
    one_by_one = sum(sc.effective_s(u) for u in sc.urls)
    fast_enough = obs.elapsed <= best + TOLERANCE_S
    report.add("runs concurrently", fast_enough and peak >= min(limit, n),
               f"finished in {obs.elapsed:.1f} virtual s, as fast as {limit} at a time allows"
               if fast_enough and peak >= min(limit, n) else
               f"took {obs.elapsed:.1f} virtual s with at most {peak} in flight; with {limit} at a "
               f"time it takes {best:.1f} s (one at a time: {one_by_one:.1f} s)",
               "Fetches seem to run one after another. Start them all (gather or a TaskGroup) "
               "and let the semaphore hold back the extra ones." if peak <= 1 else
               "A slot stays idle while fetches are waiting: start the next fetch as soon as any "
               "one finishes (a semaphore does this), not when a whole batch is done.",
               "one after another" if peak <= 1 else "in batches")

    # 5. Timeouts: each slow fetch cancelled when its own timeout expires.
    late = []
    for url in slow:
        calls = service.calls_for(url)
        if not calls or calls[0].outcome != "cancelled" or calls[0].duration is None \
                or abs(calls[0].duration - sc.timeout_s) > TOLERANCE_S:
            late.append((url, calls[0] if calls else None))
    if not late:
        msg = f"each of the {len(slow)} slow fetches was cancelled after {sc.timeout_s:g} s"
    else:
        url, call = late[0]
        if call is None:
            msg = f"{url} was never fetched"
        elif call.outcome == "ok":
            msg = f"{url} takes {sc.latency_s[url]:g} s and ran to the end: no timeout was applied"
        elif call.outcome == "cancelled":
            msg = f"{url} was cancelled after {call.duration:.2f} s, not after {sc.timeout_s:g} s"
        else:
            msg = f"{url} was still running when fetch_all_urls returned"
    if not late:
        diagnosis = ""
    elif late[0][1] is None:
        diagnosis = "url never fetched"
    elif late[0][1].outcome == "ok":
        diagnosis = "no timeout"
    elif late[0][1].outcome == "cancelled":
        diagnosis = "one timeout for everything" if late[0][1].duration > sc.timeout_s \
            else "timeout counts the queue"
    else:
        diagnosis = "fetch left running"
    report.add("per-URL timeout applied", not late, msg,
               "One timeout around the whole batch cuts every fetch at the same moment: put "
               "`async with asyncio.timeout(timeout_s):` around each single `await fetch(url)`."
               if diagnosis == "one timeout for everything" else
               "Start the timeout inside `async with sem:`, so that waiting for a slot does not "
               "count against it." if diagnosis == "timeout counts the queue" else
               "Wrap each `await fetch(url)` in `async with asyncio.timeout(timeout_s):` "
               "(inside the semaphore), so that each URL gets its own timeout.", diagnosis)

    # 6. No duplicate fetches.
    counts = {u: len(service.calls_for(u)) for u in sc.urls}
    dupes = [u for u, c in counts.items() if c > 1]
    report.add("each URL fetched once", not dupes,
               "every URL was fetched exactly once" if not dupes else
               f"{dupes[0]} was fetched {counts[dupes[0]]} times",
               "Start one fetch per URL; do not retry here.", "url fetched twice")
    if report.passed:
        _judge_fewer_urls_than_slots(report, fn, sc)
    return report


def _judge_fewer_urls_than_slots(report: Report, fn: Any, sc: FetchScenario) -> None:
    """Fewer URLs than slots (and not a multiple of them): every URL still fetched, at once.

    Code that splits the URLs evenly between ``max_concurrent`` workers, or starts
    exactly ``max_concurrent`` workers that each expect a URL, only shows here.
    """
    urls = sc.urls[:max(1, sc.max_concurrent - 2)]
    few = {url: min(sc.latency_s[url], sc.timeout_s / 2) for url in urls}
    service = FakeService(few)
    obs = observe(lambda: fn(list(urls), service.fetch, max_concurrent=sc.max_concurrent,
                             timeout_s=sc.timeout_s),
                  name="fetch_all_urls", namespaces=(getattr(fn, "__globals__", {}),))
    prop = "every URL in the result"  # judged here again, with few URLs; replaced if it fails
    expected = {url: service.result_for(url) for url in urls}
    if obs.hang is not None or obs.error is not None:
        problem = next((f.message for f in common_findings("fetch_all_urls", obs)
                        if not f.passed), "it did not finish")
        report.add(prop, False, f"with {len(urls)} URLs and {sc.max_concurrent} slots: {problem}",
                   "Start one fetch per URL, whatever their number; the semaphore only caps "
                   "how many run at once.", "assumes more urls than slots")
    elif obs.result != expected:
        report.add(prop, False, f"with {len(urls)} URLs and {sc.max_concurrent} slots it "
                   f"returned {repr(obs.result)[:100]}, expected the data of all {len(urls)}",
                   "Start one fetch per URL, whatever their number; splitting the URLs between "
                   "max_concurrent workers loses some when they do not divide evenly.",
                   "assumes more urls than slots")
    else:
        return
    failed = report.findings.pop()
    report.findings[:] = [failed if f.prop == prop else f for f in report.findings]


EXERCISES = {"fetch_all_urls": check_fetch_all_urls}
