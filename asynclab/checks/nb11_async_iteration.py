"""Checks for notebook 11_async_iteration: a paginated client as an async generator with a
bounded prefetch.

``iter_items(api, prefetch=2)`` is consumed by the check itself, on virtual time, against a
fake paginated API (``asynclab.paging.PagedAPI``) whose pages take different times, so that
pages fetched together come back out of order. The check is the consumer: it records when it
asked for each item and when it got it, and it works on each item for a while (a slow
consumer, which is when prefetching pays).

It plays five runs:

* **full**: every item, with a slow consumer. Judged: the items and their order, no request
  past the last page, the number of requests in flight, how far ahead of the consumer the
  requests ran, and whether each page was requested as soon as the rules allow (page ``m``
  once page 1 has arrived, the consumer has reached page ``m - prefetch`` and that page has
  arrived): the learner's own run is the reference, so the verdict does not depend on one
  "best" schedule;
* **break**, **raise**, **timeout**: the consumer leaves early (a ``break`` on page 1 while
  prefetches are in flight, an exception in its own code on page 2, a timeout that cancels it
  while it waits for page 2). After ``break`` and the exception it closes the generator with
  ``aclose()``, as ``contextlib.aclosing`` does. Right then, the session must be closed and
  no request or task of the generator may still be running;
* **fail**: one page raises ``PageError``. The consumer must receive every item before that
  page, then the error itself (not wrapped), and find everything cleaned up.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import random
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from asynclab.checking import (Finding, Observation, Report, add_new, common_findings, observe,
                               plural, varied)
from asynclab.paging import PagedAPI, PageError

NOTEBOOK = "11_async_iteration"
TOLERANCE_S = 1e-3  # virtual time is exact to 1 µs; this only absorbs float rounding
DEFAULT_SEED = 16
BREAK_WORK_S = 0.1  # the leaving consumers work this long on each item
AFTER_FAILURE_S = 5.0  # in the failing run, the pages after the failing one take this long,
#                        so that their prefetches are still running when the error comes


class ConsumerGaveUp(Exception):
    """Raised by the check's consumer in its own code, to leave the loop with an error."""


@dataclass(frozen=True)
class Scenario:
    items_per_page: tuple[int, ...]
    latency_s: tuple[float, ...]
    prefetch: int
    work_s: float  # the consumer's time per item in the full and failing runs
    failing_page: int

    @property
    def pages(self) -> int:
        return len(self.items_per_page)

    @property
    def break_after(self) -> int:
        """The consumer breaks when it has received this many items (page 1's second)."""
        return 2

    @property
    def raise_after(self) -> int:
        """The consumer raises when it has received this many items (page 2's second)."""
        return self.items_per_page[0] + 2

    @property
    def timeout_s(self) -> float:
        """Shortly after page 1 arrives, while the consumer waits for page 2."""
        return round(self.latency_s[0] + 0.2, 3)

    def api(self, failing: bool = False) -> PagedAPI:
        if not failing:
            return PagedAPI(self.items_per_page, self.latency_s)
        latency = [t if n <= self.failing_page else AFTER_FAILURE_S
                   for n, t in enumerate(self.latency_s, start=1)]
        return PagedAPI(self.items_per_page, latency, failing=(self.failing_page,))

    def first_index(self, page: int) -> int:
        """Index (from 0) of the first item of ``page`` in the whole sequence."""
        return sum(self.items_per_page[:page - 1])

    def one_at_a_time_s(self) -> float:
        return sum(self.latency_s) + sum(self.items_per_page) * self.work_s

    def prefetching_s(self) -> float:
        """The full run's finish time when every page is requested as soon as it may be."""
        lat, n, w, p = self.latency_s, self.items_per_page, self.work_s, self.prefetch
        end = {1: lat[0]}
        for m in range(2, min(1 + p, self.pages) + 1):
            end[m] = lat[0] + lat[m - 1]
        t = end[1] + n[0] * w
        for k in range(2, self.pages + 1):
            got = max(t, end[k])
            if k + p <= self.pages:
                end[k + p] = got + lat[k + p - 1]
            t = got + n[k - 1] * w
        return t


PUBLIC = Scenario(items_per_page=(4, 4, 4, 4, 4, 2), latency_s=(1.0, 1.5, 0.5, 1.0, 1.0, 0.5),
                  prefetch=2, work_s=0.25, failing_page=4)


def scenario(variant: str = "public", seed: int | None = None) -> Scenario:
    """The public scenario, or a hidden one drawn from ``random.Random(seed)``.

    Any seed gives a meaningful one: at least four pages past the prefetch window, page 3
    answering before page 2 (they are fetched together), a consumer slow enough for
    prefetching to pay, and prefetches in flight at each early exit (the failing page is never
    the last one, so that the pages after it are being prefetched when its error comes).
    """
    if variant == "public":
        return PUBLIC
    rng = random.Random(DEFAULT_SEED if seed is None else seed)
    prefetch = rng.choice([2, 3])
    pages = rng.randint(prefetch + 4, prefetch + 6)
    items = [rng.randint(2, 5) for _ in range(pages - 1)] + [rng.randint(1, 3)]
    latency = [round(rng.uniform(0.6, 1.6), 2) for _ in range(pages)]
    latency[1] = round(rng.uniform(1.5, 2.0), 2)
    latency[2] = round(rng.uniform(0.3, 0.6), 2)
    return Scenario(tuple(items), tuple(latency), prefetch, work_s=round(rng.uniform(0.15, 0.35), 2),
                    failing_page=rng.randint(2, pages - 1))


# -- running the learner's generator -------------------------------------------------------

@dataclass
class Look:
    """What was still open or running right after the consumer left (or finished)."""

    at: float
    open_sessions: list[int]
    running_pages: list[int]
    tasks: int  # the generator's tasks not finished yet
    cancelling: int  # of those, the ones already told to cancel


@dataclass
class Run:
    mode: str  # "full", "fail", "break", "raise" or "timeout"
    api: PagedAPI
    obs: Observation | None = None
    got: list[str] = field(default_factory=list)
    asks: list[tuple[float, float]] = field(default_factory=list)  # (asked at, got at) per item
    error: BaseException | None = None  # what the iteration raised into the consumer
    left_at: float | None = None  # when the consumer started to leave
    aclose_error: BaseException | None = None
    look: Look | None = None
    not_async_iterator: str = ""


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaf_errors(e)]
    return [exc]


async def _consume(fn: Any, sc: Scenario, run: Run) -> None:
    """Be the consumer of one run (see the module docstring)."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_about_unretrieved)
    me = asyncio.current_task()
    mode = run.mode
    work = {"full": sc.work_s, "fail": sc.work_s, "break": BREAK_WORK_S,
            "raise": BREAK_WORK_S, "timeout": 0.0}[mode]
    items = fn(run.api, prefetch=sc.prefetch)
    if not hasattr(items, "__anext__"):
        run.not_async_iterator = type(items).__name__
        if inspect.iscoroutine(items):
            items.close()
        return

    def look() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        run.look = Look(loop.time(), [s.number for s in run.api.open_sessions()],
                        sorted(r.page for r in run.api.running()), len(tasks),
                        sum(1 for t in tasks if t.cancelling()))

    try:
        async with asyncio.timeout(sc.timeout_s if mode == "timeout" else None):
            try:
                while True:
                    asked = loop.time()
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    run.got.append(item)
                    run.asks.append((asked, loop.time()))
                    if mode == "break" and len(run.got) == sc.break_after:
                        break
                    if mode == "raise" and len(run.got) == sc.raise_after:
                        raise ConsumerGaveUp("the consumer's own code failed")
                    if work:
                        await asyncio.sleep(work)
            finally:
                run.left_at = loop.time()
                if hasattr(items, "aclose"):
                    try:
                        await items.aclose()  # what `async with contextlib.aclosing(...)` does
                    except BaseException as exc:  # noqa: BLE001 - judged by the check
                        run.aclose_error = exc
                look()
    except ConsumerGaveUp:
        pass
    except TimeoutError:
        if mode != "timeout":
            raise
    except BaseException as exc:
        if mode != "fail" or not any(isinstance(e, PageError) for e in _leaf_errors(exc)):
            raise
        run.error = exc


def _surface_never_awaited(obs: Observation, errors: list[BaseException | None]) -> Observation:
    """Also report the coroutines that only the learner's errors kept alive.

    ``observe`` collects garbage while an error's traceback still holds the frames in which
    the learner forgot an ``await`` (and an AttributeError keeps the object it was raised on:
    ``page.items`` on a coroutine). Clearing them lets Python warn about those coroutines now,
    in this run, and not during some later check.
    """
    found = set(obs.never_awaited)
    errors = [e for e in errors if e is not None]
    if not errors:
        return obs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for error in errors:
            held = getattr(error, "obj", None)
            if inspect.iscoroutine(held):
                error.obj = None
                found.add(f"coroutine '{held.__qualname__}' was never awaited")
                held.close()  # reported here: no warning later
            traceback.clear_frames(error.__traceback__)
        gc.collect()
    found |= {str(w.message) for w in caught if "was never awaited" in str(w.message)}
    return replace(obs, never_awaited=sorted(found))


def _quiet_about_unretrieved(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A learner's task or future that failed and was never awaited would log a traceback
    below the check's verdict, long after it; the check judges the clean-up itself."""
    message = context.get("message", "")
    if "never retrieved" not in message and "destroyed but it is pending" not in message:
        loop.default_exception_handler(context)


def play(fn: Any, sc: Scenario, mode: str) -> Run:
    run = Run(mode, sc.api(failing=mode == "fail"))
    name = "consumer (the check)" if mode == "full" else f"consumer ({mode})"
    obs = observe(lambda: _consume(fn, sc, run), name=name, max_virtual_s=600.0,
                  namespaces=(getattr(fn, "__globals__", {}),))
    run.obs = _surface_never_awaited(obs, [obs.error, run.error, run.aclose_error])
    return run


# -- judging ---------------------------------------------------------------------------------

def _diagnose(finding: Finding, diagnosis: str) -> Finding:
    """Say what the code did on a failed finding (``Finding.diagnosis``, read by the tests and the
    grader's report); set as an attribute, so that it works with and without that field."""
    if not finding.passed:
        finding.diagnosis = diagnosis
    return finding


def _add(report: Report, prop: str, passed: bool, message: str, hint: str = "",
         diagnosis: str = "") -> None:
    report.add(prop, passed, message, hint)
    _diagnose(report.findings[-1], diagnosis)


COMMON_DIAGNOSES = {"written": "not written", "never blocks the event loop": "blocked the loop",
                    "every coroutine awaited": "forgotten await",
                    "returns a value, not an awaitable": "forgotten await",
                    "runs without error": "raised an error"}
HANG_DIAGNOSES = {"deadlock": "waits forever", "virtual-limit": "never ends",
                  "wall-limit": "never ends"}


def _common(fn_name: str, obs: Observation) -> list[Finding]:
    """``common_findings``, each failed one with a diagnosis (kept when it already has one)."""
    findings = common_findings(fn_name, obs)
    for finding in findings:
        if not getattr(finding, "diagnosis", ""):
            label = (HANG_DIAGNOSES.get(obs.hang.reason, "never ends")
                     if finding.prop == "finishes" and obs.hang is not None
                     else COMMON_DIAGNOSES.get(finding.prop, finding.prop))
            _diagnose(finding, label)
    return findings

def _kind_of(fn: Any) -> Finding | None:
    """A failure finding when ``fn`` is not an async generator function."""
    if inspect.isasyncgenfunction(fn):
        return None
    if not callable(fn):
        return _diagnose(Finding("is an async generator", False,
                       f"iter_items is not a function (it is {type(fn).__name__}).",
                       "Define it with `async def iter_items(api, *, prefetch=2):` and `yield` "
                       "each item."), "not a function")
    if inspect.iscoroutinefunction(fn):
        return _diagnose(Finding("is an async generator", False,
                       "iter_items is a coroutine function: it returns once, with no `yield`, so "
                       "nobody can `async for` over it.",
                       "`yield` each item inside the `async def`: that makes it an async "
                       "generator, which the consumer iterates with `async for`."),
                         "a coroutine function, not a generator")
    if inspect.isgeneratorfunction(fn):
        return _diagnose(Finding("is an async generator", False,
                       "iter_items is a plain generator (`def` with `yield`): it cannot await the "
                       "API.", "Write `async def iter_items(...)` and keep the `yield`s."),
                         "a plain generator")
    return _diagnose(Finding("is an async generator", False,
                   "iter_items is not an async generator function.",
                   "Write it as `async def iter_items(api, *, prefetch=2):` with `yield item` "
                   "inside."), "not an async generator")


def _pages_list(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:4])
    return shown + (", ..." if len(pages) > 4 else "")


def _page_of_item(sc: Scenario, index: int) -> int:
    for page in range(1, sc.pages + 1):
        if index < sc.first_index(page + 1) or page == sc.pages:
            return page
    return sc.pages


def _order_finding(report: Report, sc: Scenario, run: Run) -> None:
    expected = run.api.items()
    got = run.got
    if got == expected:
        report.add("items in order", True,
                   f"all {len(expected)} items of the {sc.pages} pages, in page order")
        return
    if sorted(got) == sorted(expected):
        first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        _add(report, "items in order", False,
                   f"every item came, but not in order: item {first + 1} was {got[first]!r} where "
                   f"{expected[first]!r} belongs (page {_page_of_item(sc, first)} came after a "
                   "page fetched with it that answered sooner)",
                   "Yield the pages in page order, whatever order they arrive in: keep the "
                   "prefetch tasks in a deque in page order and await the oldest one, not "
                   "whichever finishes first (as_completed, FIRST_COMPLETED).",
                   "completion order")
        return
    missing = [item for item in expected if item not in got]
    extra = [item for item in got if item not in expected]
    parts = []
    if missing:
        parts.append(f"{len(missing)} item(s) missing (first: {missing[0]!r})")
    if extra:
        parts.append(f"{len(extra)} unexpected value(s) (first: {str(extra[0])[:60]!r})")
    if not missing and not extra:
        parts.append("some items came more than once")
    _add(report, "items in order", False,
         f"got {len(got)} items, expected {len(expected)}: " + "; ".join(parts),
         "Yield each item of each page once, pages 1 to page.total_pages, in order.",
         "items lost or repeated")


def _last_page_finding(report: Report, sc: Scenario, run: Run) -> None:
    api = run.api
    past = api.past_the_end()
    twice = [p for p in range(1, sc.pages + 1) if len(api.requests_for(p)) > 1]
    if past:
        _add(report, "stops at the last page", False,
                   f"requested page {_pages_list(sorted({r.page for r in past}))} of an API with "
                   f"{sc.pages} pages ({plural(len(past), 'request')} past the end)",
                   "Every page says how many pages there are: request page n only while "
                   "n <= page.total_pages. An empty page is not how the end is announced.",
                   "fetches past the last page")
    elif twice:
        _add(report, "stops at the last page", False,
                   f"page {twice[0]} was requested {len(api.requests_for(twice[0]))} times",
                   "Request each page once; keep the task of a prefetched page and await that.",
                   "fetches a page twice")
    else:
        report.add("stops at the last page", True,
                   f"each of the {sc.pages} pages was requested once, and nothing past the last")


def _ask_time(sc: Scenario, run: Run, page: int) -> float | None:
    """When the consumer asked for the item that was the first of ``page`` (None: never got it).

    Found by the item's name, so that it stays true when pages came out of order.
    """
    first = run.api.item(page, 0)
    if first not in run.got:
        return None
    return run.asks[run.got.index(first)][0]


def _page_consumer_was_on(sc: Scenario, run: Run, t: float) -> int:
    page = 1
    for k in range(2, sc.pages + 1):
        asked = _ask_time(sc, run, k)
        if asked is not None and asked <= t + TOLERANCE_S:
            page = k
    return page


IN_FLIGHT_WHERE = {"timeout": " (with a consumer that takes each item without a pause)",
                   "break": " (with a consumer that leaves early)",
                   "raise": " (with a consumer that leaves early)",
                   "fail": " (in the run with a failing page)"}


def _prefetch_findings(report: Report, sc: Scenario, run: Run, others: list[Run]) -> None:
    api, p = run.api, sc.prefetch
    starts = {m: api.requests_for(m)[0].start for m in range(1, sc.pages + 1) if api.requests_for(m)}
    ends = {m: api.requests_for(m)[0].end for m in range(1, sc.pages + 1) if api.requests_for(m)}

    # 1. In flight, in every run (a consumer that never pauses shows an off-by-one best).
    peak, where = api.max_in_flight, ""
    for other in others:
        if other.api.max_in_flight > peak:
            peak, where = other.api.max_in_flight, IN_FLIGHT_WHERE.get(other.mode, "")
    _add(report, "requests in flight within prefetch", peak <= p,
               f"at most {plural(peak, 'request')} in flight at once (prefetch={p})" if peak <= p
               else f"{peak} page requests were in flight at once{where}; prefetch={p} allows {p}",
               "Start a new page request only when there are fewer than `prefetch` running: "
               "keep the started ones in a deque of at most `prefetch` tasks, and start the "
               "next page when you take the oldest one out.",
               "all pages at once" if peak >= sc.pages - 1 else
               "one request too many (off by one)" if peak == p + 1 else "too many in flight")

    # 2. How far ahead of the consumer.
    ahead = None
    for m in sorted(starts):
        on = _page_consumer_was_on(sc, run, starts[m])
        if m - on > p:
            ahead = (m, starts[m], on)
            break
    if ahead is None:
        report.add("never more than prefetch pages ahead", True,
                   f"no page was requested more than {p} pages ahead of the page the consumer "
                   "was on")
    else:
        m, at, on = ahead
        _add(report, "never more than prefetch pages ahead", False,
                   f"page {m} was requested at {at:g} s, while the consumer was on page {on}: "
                   f"{m - on} pages ahead; prefetch={p} allows {p}",
                   "Bound the prefetch by the consumer: start page k + prefetch only once the "
                   "consumer has come to page k (a bounded buffer, not everything at once).",
                   "runs ahead of the consumer")

    # 3. Prefetch as soon as allowed (judged against the learner's own run).
    if ends.get(1) is None:
        _add(report, "prefetches while the consumer works", False, "page 1 was never fetched",
             "Start with `await session.get_page(1)`: it says how many pages there are.",
             "page 1 never fetched")
        return
    late = None
    for m in range(2, sc.pages + 1):
        j = m - p
        if j <= 1:
            allowed, why = ends[1], "as soon as page 1 had arrived"
        else:
            reached, arrived = _ask_time(sc, run, j), ends.get(j)
            if reached is None or arrived is None:
                break  # the run stopped being comparable (judged by the other findings)
            allowed = max(reached, arrived)
            why = (f"when the consumer reached page {j}" if reached >= arrived
                   else f"when page {j} arrived")
        if m not in starts:
            break
        if starts[m] > allowed + TOLERANCE_S:
            late = (m, starts[m], allowed, why)
            break
    best, slow = sc.prefetching_s(), sc.one_at_a_time_s()
    elapsed = run.obs.elapsed if run.obs is not None else 0.0
    if late is None:
        report.add("prefetches while the consumer works", True,
                   f"each page was requested as soon as allowed: {elapsed:g} virtual s "
                   f"(one page at a time: {slow:g} s)")
        return
    m, at, allowed, why = late
    asked = _ask_time(sc, run, m)
    when_asked = (", only when the consumer asked for it" if asked is not None
                  and abs(asked - at) <= TOLERANCE_S else "")
    _add(report, "prefetches while the consumer works", False,
               f"page {m} was requested at {at:g} s{when_asked}; with prefetch={p} it could be "
               f"requested at {allowed:g} s, {why}. The run took {elapsed:g} virtual s; "
               f"prefetching takes {best:g} s (one page at a time: {slow:g} s)",
               "Requests must run while the consumer works on earlier items: start them as "
               "tasks (asyncio.create_task), up to `prefetch` pages ahead, before you yield the "
               "current page's items. A coroutine in a list does nothing until it is awaited."
               if when_asked else
               "Start the next request as soon as you take a page out of the window, before "
               "you yield its items, not after.",
               "no prefetch (one page at a time)" if when_asked else "prefetch starts late")


def _exit_problems(sc: Scenario, run: Run) -> tuple[str, str]:
    """(what is wrong with the session, what is wrong with the prefetches) after one exit."""
    session_problem = prefetch_problem = ""
    look = run.look
    if run.not_async_iterator:
        return "", ""
    if look is None:
        return "the consumer could not look", ""
    if look.open_sessions:
        session_problem = f"the session was still open after {_exit_words(run)}"
    if look.running_pages or look.tasks:
        what = (f"{plural(len(look.running_pages), 'page request')} (page "
                f"{_pages_list(look.running_pages)}) still running" if look.running_pages
                else f"{plural(look.tasks, 'task')} still pending")
        if look.tasks and look.cancelling == look.tasks:
            prefetch_problem = (f"{what} after {_exit_words(run)}: they were cancelled, but "
                                "nobody waited for them to finish")
        else:
            prefetch_problem = f"{what} after {_exit_words(run)}: left running, orphaned"
    elif run.left_at is not None and look.at - run.left_at > TOLERANCE_S:
        prefetch_problem = (f"{_exit_words(run)} took {look.at - run.left_at:g} s: it waited for "
                            "the prefetches to finish instead of cancelling them")
    if run.aclose_error is not None:
        prefetch_problem = prefetch_problem or (f"aclose() raised {_describe(run.aclose_error)}")
    return session_problem, prefetch_problem


def _exit_words(run: Run) -> str:
    return {"break": "`break` on page 1 and aclose()",
            "raise": "an exception in the consumer's code and aclose()",
            "timeout": "a timeout cancelled the consumer",
            "fail": "the page error reached the consumer",
            "full": "the last item"}[run.mode]


def _cleanup_findings(report: Report, sc: Scenario, full: Run, exits: list[Run]) -> None:
    # At the end of a full run.
    session_problem, prefetch_problem = _exit_problems(sc, full)
    sessions = len(full.api.sessions)
    if sessions == 0:
        ok, msg, why = (False, "no session was opened: the pages must be fetched through "
                        "api.session()", "no session")
    elif session_problem:
        ok, msg, why = False, session_problem, "session left open"
    elif sessions > 1:
        ok, msg, why = (False, f"{sessions} sessions were opened; one is enough for all the "
                        "pages", "a session per page")
    else:
        ok, msg, why = True, "one session for every page, closed after the last item", ""
    _add(report, "session closed at the end", ok, msg,
         "Open one session with `async with api.session() as session:` around the whole "
         "generator body, so it is closed however the generator ends.", why)

    # Early exits (and the failing page).
    bad_session = [(r, _exit_problems(sc, r)[0]) for r in exits]
    bad_session = [(r, p) for r, p in bad_session if p]
    hung = [r for r in exits if r.obs is not None and r.obs.hang is not None]
    if hung:
        r = hung[0]
        _add(report, "early exit releases the session", False,
             f"after {_exit_words(r)}, the run did not finish: {r.obs.hang}",
             "Closing the generator must not wait for anything that never comes.",
             "hangs on early exit")
    elif bad_session:
        r, problem = bad_session[0]
        _add(report, "early exit releases the session", False, problem,
                   "A `break` does not run the rest of the generator: the consumer's aclose() "
                   "throws GeneratorExit at the `yield` where it stopped. Release the session in "
                   "a `finally:` (or with `async with api.session() as session:`), not in code "
                   "after the loop.", "session not released on early exit")
    else:
        report.add("early exit releases the session", True,
                   "the session was closed after break, an exception, a timeout and a failing "
                   "page alike")

    bad_prefetch = [(r, _exit_problems(sc, r)[1]) for r in exits]
    bad_prefetch = [(r, p) for r, p in bad_prefetch if p]
    if hung:
        return
    if bad_prefetch:
        r, problem = bad_prefetch[0]
        why = "prefetch tasks left running"
        if "cancelled, but nobody waited" in problem:
            why = "cancelled tasks not awaited"
            hint = ("After task.cancel(), await the tasks (asyncio.gather(*tasks, "
                    "return_exceptions=True)) in the same `finally:`, so that they are over "
                    "before aclose() returns.")
        elif "waited for the prefetches" in problem:
            why = "waits for the prefetches instead of cancelling"
            hint = ("Cancel the prefetch tasks in the `finally:` instead of waiting for their "
                    "pages: nobody will read them.")
        elif "aclose() raised" in problem:
            why = "aclose() raises"
            hint = ("Awaiting a cancelled task raises CancelledError: gather them with "
                    "`return_exceptions=True`, and never `yield` in a `finally:`.")
        else:
            hint = ("In a `finally:` around the loop, cancel every prefetch task still in your "
                    "window and await them (gather(..., return_exceptions=True)): a task you "
                    "started must not outlive the generator.")
        _add(report, "early exit cancels the prefetches", False, problem, hint, why)
    else:
        report.add("early exit cancels the prefetches", True,
                   "after every early exit, the prefetches in flight were cancelled and over "
                   "before control came back to the consumer")


def _failure_finding(report: Report, sc: Scenario, run: Run) -> None:
    api, f = run.api, sc.failing_page
    before = api.items(f - 1)
    if run.obs is not None and run.obs.hang is not None:
        _add(report, "a failing page raises in the consumer", False,
             f"with page {f} failing, the run did not finish: {run.obs.hang}",
             "When awaiting a page raises, let the error out of the generator.",
             "hangs when a page fails")
        return
    if run.obs is not None and run.obs.error is not None:
        cancelled = isinstance(run.obs.error, asyncio.CancelledError)
        _add(report, "a failing page raises in the consumer", False,
                   f"with page {f} failing, the consumer got {_describe(run.obs.error)} instead "
                   "of the page's PageError",
                   "Awaiting the cancelled prefetch tasks in your `finally:` raised their "
                   "CancelledError, which replaced the page's error: gather them with "
                   "`return_exceptions=True`." if cancelled else
                   "Let the page's own error out of the generator, unchanged.",
                   "page error replaced by CancelledError" if cancelled
                   else "page error replaced by another")
        return
    error = run.error
    if error is None:
        went_on = [i for i in run.got if i not in before]
        msg = (f"page {f} failed, but the consumer never got its PageError: "
               + (f"the items went on with {went_on[0]!r}" if went_on
                  else "the iteration simply ended"))
        _add(report, "a failing page raises in the consumer", False, msg,
             "Do not catch the page's error in the generator (or re-raise it): the "
             "consumer must learn that items are missing.", "swallows the page error")
        return
    if isinstance(error, BaseExceptionGroup):
        _add(report, "a failing page raises in the consumer", False,
                   f"the PageError of page {f} reached the consumer wrapped in a "
                   f"{type(error).__name__}, so `except PageError` does not catch it",
                   "Await the prefetch tasks yourself, one by one, so that the page's error "
                   "comes out unchanged (a TaskGroup wraps errors in an ExceptionGroup, and must "
                   "not stay open across a `yield` anyway).", "page error wrapped in a group")
        return
    if run.got != before:
        _add(report, "a failing page raises in the consumer", False,
                   f"the PageError of page {f} came after {plural(len(run.got), 'item')}; it "
                   f"belongs after the {len(before)} items of pages 1 to {f - 1}",
                   "Raise a page's error when the consumer reaches that page: await the pages "
                   "in order, so that the error surfaces where the page's items would have.",
                   "page error raised too early" if len(run.got) < len(before)
                   else "page error raised too late")
        return
    report.add("a failing page raises in the consumer", True,
               f"the consumer got the {len(before)} items before page {f}, then page {f}'s "
               "PageError itself")


def check_iter_items(fn, *, variant: str = "public", seed: int | None = None) -> Report:
    """Judge ``iter_items(api, *, prefetch=2)``, an async generator of every item of every page.

    Properties: the items of pages 1..N, in page order; no request past the last page and
    none twice; at most ``prefetch`` requests in flight and never more than ``prefetch``
    pages ahead of the consumer; each page requested as soon as those rules allow, so that
    fetching overlaps the consumer's work; one session, closed at the end; after an early
    exit (break, an exception in the consumer, a timeout) and after a failing page, the
    session closed and no request or task left running; a failing page's ``PageError``
    raised into the consumer after the items before that page; no blocking call, no
    forgotten ``await``.
    """
    report = Report("iter_items")
    sc = scenario(variant, seed)
    with warnings.catch_warnings():  # garbage of earlier checks is not this code's doing
        warnings.simplefilter("ignore")
        gc.collect()
    bad = _kind_of(fn)
    if bad:
        if inspect.iscoroutinefunction(fn):
            # The exercise's stub has no `yield` left: it is a coroutine function that raises.
            obs = observe(lambda: fn(sc.api(), prefetch=sc.prefetch), name="iter_items",
                          namespaces=(getattr(fn, "__globals__", {}),))
            if isinstance(obs.error, NotImplementedError):
                report.findings.extend(_common("iter_items", obs))
                return report
        report.findings.append(bad)
        return report
    full = play(fn, sc, "full")
    report.timeline = full.obs.timeline
    early = _common("iter_items", full.obs)
    report.findings.extend(early)
    if full.obs.hang is not None or full.obs.error is not None:
        return report

    exits = [play(fn, sc, mode) for mode in ("break", "raise", "timeout", "fail")]
    _order_finding(report, sc, full)
    _last_page_finding(report, sc, full)
    _prefetch_findings(report, sc, full, exits)
    _cleanup_findings(report, sc, full, exits)
    _failure_finding(report, sc, exits[-1])
    for run in exits:
        later = [f for f in _common("iter_items", run.obs)
                 if f.prop in ("never blocks the event loop", "every coroutine awaited")]
        add_new(report, later)
    return report


EXERCISES = {"iter_items": varied(check_iter_items)}
