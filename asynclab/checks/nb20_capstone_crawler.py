"""Checks for notebook 20_capstone_crawler: a polite crawler.

``crawl(start_url, fetch, *, allowed_hosts, max_per_host, timeout_s, deadline_s,
retries, backoff_s, pages)`` is run four times on virtual time against sites of
``asynclab.crawlsite`` (no sockets):

* **the site**: a few hundred pages over several hosts, with loops, link
  spellings that name the same page, 404s, an external host, slow, flaky
  (503, then 200), broken (always 503) and hanging pages. Judged: the pages
  found and their values, one fetch per page (retries aside), only the site's
  hosts, the per-host limit, real concurrency (close to the best time a
  polite crawler can reach), a timeout per request, retries with backoff,
  no retry of a 404, nothing left running at the end;
* **a tiny site** where the timing of retries is exact: an always-broken page
  ends the crawl, so sleeping after its last attempt shows as a late return;
* **a deadline** shorter than the crawl: it must return what it has by then,
  with no fetch or task still running;
* **Ctrl-C**: the crawl task is cancelled mid-way; the cancellation must reach
  the caller, stop every fetch, leave no task behind, and the ``pages`` dict
  the caller passed in must hold only finished, correct entries.

The findings say what was observed before they hint.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any

from asynclab.checking import (Observation, Report, common_findings, observe, plural,
                               require_coroutine_function, varied)
from asynclab.crawlsite import (ALWAYS, EXTERNAL_HOST, Page, Site, best_makespan, expected,
                                host_of, make_site, normalise)

NOTEBOOK = "20_capstone_crawler"
TOLERANCE_S = 1e-3  # virtual time is exact; this only absorbs float rounding
SLACK = 1.3  # a polite crawl may take up to 30% longer than the simulated best order
DEFAULT_SEED = 19


@dataclass(frozen=True)
class Params:
    max_per_host: int = 4
    timeout_s: float = 2.0
    deadline_s: float = 60.0
    retries: int = 2
    backoff_s: float = 0.1

    def kwargs(self, site: Site) -> dict[str, Any]:
        return dict(allowed_hosts=list(site.hosts), max_per_host=self.max_per_host,
                    timeout_s=self.timeout_s, deadline_s=self.deadline_s,
                    retries=self.retries, backoff_s=self.backoff_s)


@dataclass(frozen=True)
class Scenario:
    site: Site
    params: Params
    best_s: float  # every slot busy while pages wait, slots given back during backoffs
    bound_s: float  # the slower of that and keeping the slot during backoffs
    tiny: Site
    tiny_params: Params
    deadline_s: float  # for the deadline run
    cancel_at: float  # for the Ctrl-C run


def tiny_site(retries: int) -> Site:
    """A start page and four children: a 404, a flaky page, a broken page, a hanging page."""
    base = "http://tiny.test"
    pages = {
        f"{base}/": Page(f"{base}/", "Tiny home", ("/flaky", "/broken#x", "/hangs", "/gone",
                                                   f"http://{EXTERNAL_HOST}/ad"), 0.1),
        f"{base}/flaky": Page(f"{base}/flaky", "Flaky", ("/",), 0.1, fail_first=retries),
        f"{base}/broken": Page(f"{base}/broken", "Broken", (), 0.1, fail_first=ALWAYS),
        f"{base}/hangs": Page(f"{base}/hangs", "Hangs", (), 0.1, hangs=True),
    }
    return Site(f"{base}/", ("tiny.test",), pages)


def scenario(variant: str = "public", seed: int | None = None) -> Scenario:
    if variant == "public":
        site = make_site(DEFAULT_SEED, pages=100)
        params = Params()
    else:
        rng = random.Random(DEFAULT_SEED if seed is None else seed)
        hosts = [f"{name}.site.test" for name in ("www", "docs", "blog", "shop")[:rng.randint(2, 4)]]
        site = make_site(rng.randrange(10**6), pages=rng.randint(80, 140), hosts=hosts,
                         max_fail=3)
        params = Params(max_per_host=rng.randint(2, 5), timeout_s=rng.choice([2.0, 2.5, 3.0]),
                        deadline_s=90.0, retries=rng.randint(1, 3),
                        backoff_s=rng.choice([0.05, 0.1, 0.2]))
    rules = dict(max_per_host=params.max_per_host, timeout_s=params.timeout_s,
                 retries=params.retries, backoff_s=params.backoff_s)
    best = best_makespan(site, **rules)
    # A worker that keeps its slot while it sleeps before a retry is polite too, a bit slower.
    holding = best_makespan(site, hold_slot_in_backoff=True, **rules)
    tiny_params = replace(params, max_per_host=5, timeout_s=0.3, deadline_s=60.0)
    return Scenario(site, params, best, max(best, holding), tiny_site(params.retries), tiny_params,
                    deadline_s=round(best * 0.4, 2), cancel_at=round(best * 0.3, 2))


# -- running -------------------------------------------------------------------------------
@dataclass
class Run:
    obs: Observation
    site: Site
    returned_at: float | None = None
    in_flight_after: int = 0  # fetches still running when the crawl returned
    leftover: list[str] = field(default_factory=list)  # tasks still running then
    cancelled: bool | None = None  # Ctrl-C run: did the task end cancelled?
    ended: bool = True
    error: BaseException | None = None
    pages: dict | None = None
    task_ended_at: float | None = None  # Ctrl-C run: when the crawl task ended


def _leftovers(before: set, *exclude: asyncio.Task) -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t not in before and t not in exclude
            and not t.done()]


async def _clean(tasks: list[asyncio.Task]) -> None:
    for _ in range(3 if tasks else 0):  # a task that swallows one cancellation gets another
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=1.0)
        tasks = [t for t in tasks if not t.done()]
        if not tasks:
            return


def run_crawl(fn: Any, site: Site, params: Params, *, cancel_at: float | None = None,
              name: str = "crawl") -> Run:
    """Run the learner's crawl once; with ``cancel_at``, cancel it then, as Ctrl-C would."""
    site = site.fresh()
    run = Run(Observation(), site)
    kwargs = params.kwargs(site)

    async def driver() -> Any:
        loop = asyncio.get_running_loop()
        before = asyncio.all_tasks()
        if cancel_at is None:
            result = await fn(site.start_url, site.fetch, **kwargs)
            run.returned_at = loop.time()
            await asyncio.sleep(0)
            left = _leftovers(before, asyncio.current_task())
        else:
            run.pages = {}
            task = asyncio.create_task(fn(site.start_url, site.fetch, pages=run.pages, **kwargs),
                                       name="the crawl")
            task.add_done_callback(lambda _: setattr(run, "task_ended_at", loop.time()))
            await asyncio.sleep(cancel_at)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30.0)
            run.ended = bool(done)
            run.returned_at = loop.time()
            run.cancelled = task.cancelled() if done else False
            if done and not task.cancelled() and task.exception() is not None:
                run.error = task.exception()
            await asyncio.sleep(0)
            left = _leftovers(before, asyncio.current_task(), task)
            result = run.pages
            if not done:
                left.append(task)
        run.in_flight_after = sum(site.in_flight.values())
        run.leftover = sorted(t.get_name() for t in left)
        await _clean(left)
        return result

    run.obs = observe(driver, name=name, namespaces=(getattr(fn, "__globals__", {}),),
                      max_virtual_s=3600.0, wall_limit_s=10.0)
    return run


# -- judging -------------------------------------------------------------------------------
def _overlapping(calls: list) -> bool:
    """Two requests for one page at once: a duplicate, not a retry (a retry follows its failure)."""
    ordered = sorted(calls, key=lambda c: c.start)
    return any(b.start < (a.end if a.end is not None else float("inf")) - TOLERANCE_S
               for a, b in zip(ordered, ordered[1:]))


def _value(v: Any) -> str:
    return repr(v)[:50]


def _judge_result(report: Report, run: Run, want: dict[str, Any], sc: Scenario) -> bool:
    result = run.obs.result
    if not isinstance(result, dict):
        report.add("returns a dict", False, f"crawl returned {type(result).__name__}, not a dict",
                   "Return the dict {url: title, status or None} of the pages you visited.")
        return False
    keys = set(result)
    external = sorted(k for k in keys if isinstance(k, str) and EXTERNAL_HOST in k.lower())
    unnormal = sorted(k for k in keys if isinstance(k, str) and k not in external
                      and normalise(k) != k)
    missing = [k for k in want if k not in result]
    extra = sorted(k for k in keys if k not in want and k not in external and k not in unnormal)
    if external:
        msg = f"the result has {plural(len(external), 'page')} of the external host, e.g. {external[0]}"
        hint = "Only follow links whose host is one of allowed_hosts."
    elif unnormal:
        msg = (f"the result is keyed by URLs as written in the pages, e.g. {unnormal[0]!r} "
               f"(normalised: {normalise(unnormal[0])!r})")
        hint = "Normalise every link (normalise(link)) before you look it up, store or fetch it."
    elif missing:
        msg = (f"{len(missing)} of the {len(want)} reachable pages are missing, "
               f"e.g. {missing[0]}")
        hint = ("Follow every link of every page that answered 200, on every allowed host, and "
                "wait for all the pages you started before you return.")
    elif extra:
        msg = f"{len(extra)} unexpected key(s), e.g. {extra[0]!r}"
        hint = "Store one entry per page you fetched, keyed by its normalised URL."
    else:
        msg = f"all {len(want)} reachable pages, keyed by their normalised URLs"
        hint = ""
    report.add("finds every page", not (external or unnormal or missing or extra), msg, hint)
    regular = [k for k, v in want.items() if isinstance(v, str) and k in result
               and sc.site.pages[k].fail_first == 0]
    wrong = [k for k in regular if result[k] != want[k]]
    report.add("titles of the pages", not wrong,
               f"the {len(regular)} healthy pages map to their titles" if not wrong else
               f"{len(wrong)} page(s) have a wrong value, e.g. {wrong[0]} -> "
               f"{_value(result[wrong[0]])} instead of {want[wrong[0]]!r}",
               "For a 200, store extract_title(html); store the status only for a failure.")
    return True


def _is_chain(calls: list, backoff_s: float) -> bool:
    """Requests that follow each other with at least the backoff between them: retries."""
    return all(b.start >= (a.end if a.end is not None else float("inf"))
               + backoff_s * 2 ** n - TOLERANCE_S for n, (a, b) in enumerate(zip(calls, calls[1:])))


def _duplicated(site: Site, key: str, calls: list, params: Params) -> bool:
    """More requests for ``key`` than its answers explain, and not in the shape of retries."""
    if len(calls) < 2:
        return False
    page = site.pages.get(key)
    if _overlapping(calls) or len({c.url for c in calls}) > 1:
        return True
    if page is None:  # a 404 retried in a loop is asked exactly retries + 1 times
        return not (len(calls) == params.retries + 1 and _is_chain(calls, 0.0))
    if page.fail_first or page.hangs:
        return not (len(calls) <= params.retries + 1 and _is_chain(calls, 0.0))
    return True


def _judge_fetches(report: Report, run: Run, want: dict[str, Any], params: Params) -> None:
    site = run.site
    ext = [c for c in site.calls if c.host == EXTERNAL_HOST or c.host not in site.hosts]
    report.add("stays on the site", not ext,
               "no request left the site's hosts" if not ext else
               f"{plural(len(ext), 'request')} went to another host, e.g. {ext[0].url}",
               "Check host_of(link) against allowed_hosts before you queue a link.")
    by_key: dict[str, list] = {}
    for c in site.calls:
        by_key.setdefault(c.key, []).append(c)
    spelled, raced = [], []
    for key, calls in by_key.items():
        if _duplicated(site, key, calls, params):
            (spelled if len({c.url for c in calls}) > 1 else raced).append((key, calls))
    if spelled:
        key, calls = spelled[0]
        msg = (f"{plural(len(spelled), 'page')} fetched more than once under different spellings, "
               f"e.g. {', '.join(sorted({c.url for c in calls})[:3])}")
        hint = "Normalise each link before you check it against the pages you have seen."
    elif raced:
        key, calls = raced[0]
        overlap = calls[1].start < (calls[0].end or float("inf"))
        msg = (f"{plural(len(raced), 'page')} fetched more than once, e.g. {key} "
               f"{len(calls)} times" + (", at the same time" if overlap else "")
               + ": several tasks found the link missing from `seen` before any of them "
               "recorded it")
        hint = ("Two tasks found the same link, both saw it missing from `seen`, and both fetched "
                "it: add the URL to `seen` at the moment you decide to fetch it, before any "
                "`await` (check-then-act across an await is a race).")
    else:
        msg, hint = "each page was fetched once (retries of 503s aside)", ""
    report.add("each page fetched once", not (spelled or raced), msg, hint)
    # 404: fetched once, stored as 404.
    gone = [k for k, v in want.items() if v == 404]
    retried = [k for k in gone if len(by_key.get(k, [])) > 1
               and not _duplicated(site, k, by_key[k], params)]
    stored = run.obs.result if isinstance(run.obs.result, dict) else {}
    wrong404 = [k for k in gone if k in stored and stored[k] != 404]
    report.add("a 404 is not retried", not retried and not wrong404,
               f"the {len(gone)} missing pages were asked once each and stored as 404"
               if not retried and not wrong404 else
               f"{gone and (retried or wrong404)[0]} answered 404 and was asked "
               f"{len(by_key.get((retried or wrong404)[0], []))} times" if retried else
               f"{wrong404[0]} is stored as {_value(stored[wrong404[0]])}, not 404",
               "Retry only server errors (status >= 500): a 404 will not get better." if retried
               else "Store the status of a page that did not answer 200.")


def _judge_limits(report: Report, run: Run, sc: Scenario) -> bool:
    site, limit = run.site, sc.params.max_per_host
    peaks = dict(site.max_in_flight_per_host)
    worst_host = max(peaks, key=peaks.get) if peaks else "-"
    peak = peaks.get(worst_host, 0)
    ok = peak <= limit
    report.add("at most max_per_host per host", ok,
               f"at most {plural(peak, 'request')} in flight on any host (limit {limit})" if ok else
               f"{peak} requests were in flight at once on {worst_host}; the limit is {limit} "
               "per host",
               "Give each host its own asyncio.Semaphore(max_per_host) and fetch inside "
               "`async with` it; starting every link at once (gather over all links) is not "
               "polite.")
    elapsed = run.returned_at if run.returned_at is not None else run.obs.elapsed
    bound = sc.bound_s * SLACK + TOLERANCE_S
    total_peak = site.max_in_flight_total
    hosts_used = len([h for h in peaks if h in site.hosts])
    fast = elapsed <= bound and peak >= min(limit, 2)
    if fast:
        msg = (f"finished in {elapsed:.1f} virtual s; a crawl that never leaves a slot idle "
               f"takes {sc.best_s:.1f} s ({limit} per host)")
        hint = ""
    elif any((c.duration or 0) > sc.params.timeout_s + TOLERANCE_S for c in site.calls):
        msg = (f"took {elapsed:.1f} virtual s, waiting for pages that hang; with a timeout and "
               f"{limit} per host it takes {sc.best_s:.1f} s")
        hint = "See the timeout finding: a request that hangs holds its slot until it is given up."
    elif total_peak <= 1:
        msg = (f"took {elapsed:.1f} virtual s with one request at a time; {limit} per host "
               f"takes {sc.best_s:.1f} s")
        hint = ("The pages are fetched one after another. Fetch each page in a task of its own "
                "(or run several workers), and let the per-host semaphores hold back the extra "
                "ones.")
    elif total_peak <= limit and hosts_used > 1:
        msg = (f"took {elapsed:.1f} virtual s with never more than {total_peak} requests in "
               f"flight across all {hosts_used} hosts; {limit} per host takes {sc.best_s:.1f} s")
        hint = ("One semaphore for every host: the limit is per host. Keep a dict of semaphores, "
                "one per host (collections.defaultdict works well).")
    else:
        msg = (f"took {elapsed:.1f} virtual s with at most {peak} in flight on one host; "
               f"{limit} per host can finish in {sc.best_s:.1f} s")
        hint = ("Slots stay idle while pages wait: start a page as soon as its link is found and "
                "a slot of its host is free, not level by level or batch by batch.")
    report.add("really concurrent", fast, msg, hint)
    return ok and fast


def _judge_timeouts(report: Report, run: Run, sc: Scenario) -> None:
    t = sc.params.timeout_s
    stored = run.obs.result if isinstance(run.obs.result, dict) else {}
    problems = []
    for key in run.site.kinds()["hangs"]:
        calls = run.site.calls_for(key)
        if not calls or _duplicated(run.site, key, calls, sc.params):
            continue  # not reached: judged by "finds every page"; duplicates: "fetched once"
        first = calls[0]
        if first.outcome == "ok":
            problems.append(f"{key} hangs for {first.duration:g} s and was waited for to the "
                            "end: no timeout per request")
        elif first.outcome == "cancelled" and (first.duration or 0) > t + TOLERANCE_S:
            problems.append(f"{key} hangs; it was given up on only after {first.duration:.1f} s, "
                            "when the whole crawl stopped: no timeout per request")
        elif first.outcome == "cancelled" and abs((first.duration or 0) - t) > TOLERANCE_S:
            problems.append(f"{key} was cancelled after {first.duration:.2f} s, not after "
                            f"timeout_s={t:g} s")
        elif first.outcome == "running":
            problems.append(f"{key} was still being fetched when crawl returned")
        elif len(calls) > 1:
            problems.append(f"{key} timed out and was asked again {len(calls) - 1} more time(s)")
        elif key in stored and stored[key] is not None:
            problems.append(f"{key} timed out but is stored as {_value(stored[key])}, not None")
    report.add("a timeout per request", not problems,
               f"each hanging page was given up on after {t:g} s and stored as None"
               if not problems else problems[0],
               "Wrap each `await fetch(url)` in `async with asyncio.timeout(timeout_s):` inside "
               "the host's semaphore, and store None when it expires (do not retry a timeout)."
               if "no timeout" in (problems or [""])[0] or "not after" in (problems or [""])[0]
               else "A timed-out page is stored as None and not asked again.")


def _judge_retries(report: Report, run: Run, sc: Scenario) -> None:
    p = sc.params
    stored = run.obs.result if isinstance(run.obs.result, dict) else {}
    kinds = run.site.kinds()
    problem, hint = "", ""
    for key in kinds["flaky"] + kinds["broken"]:
        calls = run.site.calls_for(key)
        if not calls or _duplicated(run.site, key, calls, p):
            continue  # duplicates are judged by "each page fetched once"
        page = run.site.pages[key]
        attempts = min(page.fail_first + 1, p.retries + 1)
        want = page.title if page.fail_first <= p.retries else 503
        if len(calls) == 1 and attempts > 1:
            problem = f"{key} answered 503 and was not asked again (stored: {_value(stored.get(key))})"
            hint = (f"Retry a 5xx answer up to `retries` times ({p.retries} here), sleeping "
                    "backoff_s * 2**attempt between attempts.")
            break
        if len(calls) > attempts:
            problem = (f"{key} was asked {len(calls)} times; with retries={p.retries} it "
                       f"needs {attempts}")
            hint = ("Make `retries + 1` attempts at most, and stop at the first answer that "
                    "is not a 5xx.")
            break
        for n, (a, b) in enumerate(zip(calls, calls[1:])):
            gap = b.start - (a.end or b.start)
            if gap < p.backoff_s * 2 ** n - TOLERANCE_S:
                problem = (f"{key}: attempt {n + 2} started {gap:.2f} s after attempt {n + 1} "
                           f"failed; the backoff is {p.backoff_s * 2 ** n:g} s")
                hint = ("Wait `await asyncio.sleep(backoff_s * 2 ** attempt)` before each retry, "
                        "so that a struggling server gets room to recover.")
                break
        if problem:
            break
        if key in stored and stored[key] != want:
            problem = f"{key} is stored as {_value(stored[key])}, not {want!r}"
            hint = ("After the retries, store the title of a page that answered 200, or the "
                    "last status if every attempt failed.")
            break
    report.add("retries 5xx with backoff", not problem,
               f"{len(kinds['flaky'])} flaky pages retried after a growing pause; pages still "
               f"failing after {p.retries} retries stored as 503" if not problem else problem, hint)


def _judge_tiny(report: Report, run: Run, sc: Scenario) -> None:
    p = sc.tiny_params
    broken = run.site.calls_for("http://tiny.test/broken")
    backoffs = sum(p.backoff_s * 2 ** n for n in range(p.retries))
    best = max(0.1 + (p.retries + 1) * 0.1 + backoffs, 0.1 + p.timeout_s)
    elapsed = run.returned_at if run.returned_at is not None else run.obs.elapsed
    last_end = max((c.end or 0.0) for c in broken) if broken else 0.0
    any_end = max((c.end or 0.0) for c in run.site.calls) if run.site.calls else 0.0
    ok = elapsed <= best + TOLERANCE_S
    if ok:
        msg = f"on a 5-page site, returned at {elapsed:.2f} s, as soon as the last page was done"
        hint = ""
    elif (broken and len(broken) == p.retries + 1 and elapsed - last_end > TOLERANCE_S
          and any_end <= last_end + TOLERANCE_S):
        msg = (f"the always-broken page's last attempt ended at {last_end:.2f} s, but crawl "
               f"returned at {elapsed:.2f} s: it slept {elapsed - last_end:.2f} s after the "
               "last attempt")
        hint = ("Do not sleep after the last attempt: there is nothing left to wait for. "
                "Sleep only when another attempt follows.")
    elif any((c.duration or 0) > p.timeout_s + TOLERANCE_S for c in run.site.calls):
        msg = (f"on a 5-page site it returned at {elapsed:.2f} s, held up by a page that hangs; "
               f"it can be done by {best:.2f} s")
        hint = "See the timeout finding."
    else:
        msg = f"on a 5-page site it returned at {elapsed:.2f} s; it can be done by {best:.2f} s"
        hint = "Return as soon as every page is settled."
    report.add("no sleep after the last attempt", ok, msg, hint)


def _judge_deadline(report: Report, run: Run, sc: Scenario, want: dict[str, Any]) -> None:
    d = sc.deadline_s
    res = run.obs.result if isinstance(run.obs.result, dict) else {}
    wrong = [k for k, v in res.items() if want.get(k, "absent") != v]
    late = run.returned_at is not None and run.returned_at > d + TOLERANCE_S
    if run.obs.hang is not None or run.obs.error is not None or run.returned_at is None:
        msg = (f"with deadline_s={d:g}, crawl did not return: "
               f"{run.obs.hang or run.obs.error}")
        hint = ("Wrap the whole crawl in `async with asyncio.timeout(deadline_s):`, catch "
                "TimeoutError outside it, and return the pages you have.")
        ok = False
    elif late:
        msg = (f"with deadline_s={d:g}, crawl returned at {run.returned_at:.1f} s: "
               "the deadline was not applied")
        hint = ("Wrap the whole crawl in `async with asyncio.timeout(deadline_s):`, catch "
                "TimeoutError outside it, and return the pages you have.")
        ok = False
    elif run.in_flight_after or run.leftover:
        msg = (f"crawl returned at {run.returned_at:.2f} s (deadline {d:g} s) but left "
               f"{plural(run.in_flight_after, 'fetch')} running and "
               f"{plural(len(run.leftover), 'task')} alive"
               + (f", e.g. {run.leftover[0]!r}" if run.leftover else ""))
        hint = ("When the deadline expires, cancel every task of the crawl and wait for them "
                "(a TaskGroup inside the timeout does both) before you return.")
        ok = False
    elif not res or wrong:
        msg = (f"at the deadline ({d:g} s) crawl returned no page" if not res else
               f"at the deadline, {len(wrong)} entries are wrong, e.g. {wrong[0]} -> "
               f"{_value(res[wrong[0]])}")
        hint = ("Keep the pages you finished before the deadline, and only those: a page that "
                "was cut off by the deadline has no value yet.")
        ok = False
    else:
        msg = (f"with deadline_s={d:g}, returned at {run.returned_at:.1f} s with "
               f"{len(res)} finished pages and nothing left running")
        hint = ""
        ok = True
    report.add("a deadline for the whole crawl", ok, msg, hint)


def _judge_cancel(report: Report, run: Run, sc: Scenario, want: dict[str, Any]) -> None:
    at = sc.cancel_at
    pages = run.pages or {}
    wrong = [k for k, v in pages.items() if want.get(k, "absent") != v]
    finished = {c.key for c in run.site.calls if c.outcome == "ok" and c.end is not None
                and c.end < at - TOLERANCE_S and c.status == 200
                and c.key in want}
    lost = sorted(finished - set(pages))
    if run.obs.hang is not None:
        ok, msg = False, f"after being cancelled, crawl did not finish: {run.obs.hang}"
        hint = "Let CancelledError propagate: never catch it and carry on."
    elif run.task_ended_at is not None and run.task_ended_at < at - TOLERANCE_S:
        ok = False
        msg = (f"crawl had already returned at {run.task_ended_at:.2f} s, before the cancel at "
               f"{at:g} s: {plural(run.in_flight_after, 'fetch')} it started were still running "
               "then, out of the cancel's reach")
        hint = ("Wait for the pages you start before you return (a TaskGroup does): then "
                "cancelling the crawl reaches them.")
    elif not run.ended or not run.cancelled:
        what = ("kept running for 30 s after it was cancelled" if not run.ended else
                f"raised {type(run.error).__name__}" if run.error is not None else
                "returned normally")
        ok, msg = False, f"cancelled at {at:g} s (as Ctrl-C would), crawl {what}: the cancellation was swallowed"
        hint = ("Do not catch CancelledError (nor bare `except:` / `except BaseException`) "
                "without raising it again: the caller must see that the crawl was cancelled.")
    elif run.in_flight_after or run.leftover:
        ok = False
        msg = (f"cancelled at {at:g} s, crawl stopped but left {plural(run.in_flight_after, 'fetch')} "
               f"running and {plural(len(run.leftover), 'task')} alive"
               + (f", e.g. {run.leftover[0]!r}" if run.leftover else ""))
        hint = ("Every task the crawl starts must be cancelled with it: start them in a TaskGroup "
                "(or cancel and await your workers in a `finally:`).")
    elif wrong:
        ok = False
        msg = (f"cancelled at {at:g} s, the pages dict holds {len(wrong)} wrong entr"
               f"{'y' if len(wrong) == 1 else 'ies'}, e.g. {wrong[0]} -> {_value(pages[wrong[0]])}")
        hint = ("A page whose fetch was cancelled has no result: do not store anything for it "
                "(catching CancelledError to store None corrupts the partial results).")
    elif lost:
        ok = False
        msg = (f"cancelled at {at:g} s, {len(lost)} page(s) fetched before that are missing "
               f"from the pages dict, e.g. {lost[0]}")
        hint = ("Fill the `pages` dict the caller passed in (not a new one of your own), each "
                "page as soon as it is done, not all at the end.")
    else:
        ok = True
        msg = (f"cancelled at {at:g} s, crawl stopped at once, with no fetch or task left and "
               f"{len(pages)} finished pages in the dict")
        hint = ""
    report.add("a clean stop on Ctrl-C", ok, msg, hint)


def check_crawl(fn: Any, *, variant: str = "public", seed: int | None = None) -> Report:
    """Judge ``crawl`` on four virtual-time runs (see the module's docstring)."""
    report = Report("crawl")
    bad = require_coroutine_function("crawl", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    main = run_crawl(fn, sc.site, sc.params)
    report.timeline = main.obs.timeline
    early = common_findings("crawl", main.obs)
    report.findings.extend(early)
    if main.obs.hang is not None or main.obs.error is not None:
        return report
    if any(not f.passed and f.prop == "every coroutine awaited" for f in early):
        return report
    want = expected(sc.site, sc.params.retries)
    if not _judge_result(report, main, want, sc):
        return report
    _judge_fetches(report, main, want, sc.params)
    concurrent = _judge_limits(report, main, sc)
    _judge_timeouts(report, main, sc)
    _judge_retries(report, main, sc)
    if main.leftover or main.in_flight_after:
        report.add("nothing left running", False,
                   f"crawl returned with {plural(main.in_flight_after, 'fetch')} still running "
                   f"and {plural(len(main.leftover), 'task')} alive",
                   "Wait for every task you start before you return (a TaskGroup does).")
    tiny = run_crawl(fn, sc.tiny, sc.tiny_params, name="crawl (tiny site)")
    if tiny.obs.completed:
        _judge_tiny(report, tiny, sc)
    deadline = run_crawl(fn, sc.site, replace(sc.params, deadline_s=sc.deadline_s),
                         name="crawl (deadline)")
    _judge_deadline(report, deadline, sc, want)
    cancel = run_crawl(fn, sc.site, sc.params, cancel_at=sc.cancel_at, name="crawl (Ctrl-C)")
    _judge_cancel(report, cancel, sc, want)
    if concurrent and tiny.obs.timeline is not None:
        report.timeline = tiny.obs.timeline  # small and readable; the big one is for diagnosis
    return report


EXERCISES = {"crawl": varied(check_crawl)}
