"""The iter_items check passes correct prefetching generators and rejects what learners write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from asynclab.checks.nb11_async_iteration import PUBLIC, check_iter_items, play, scenario
from conftest import define, failed_props

REFERENCE = '''
import asyncio
from collections import deque

async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        first = await session.get_page(1)
        window = deque()
        next_page = 2

        def top_up():
            nonlocal next_page
            while len(window) < prefetch and next_page <= first.total_pages:
                window.append(asyncio.create_task(session.get_page(next_page)))
                next_page += 1

        try:
            top_up()
            for item in first.items:
                yield item
            while window:
                page = await window.popleft()
                top_up()
                for item in page.items:
                    yield item
        finally:
            for task in window:
                task.cancel()
            await asyncio.gather(*window, return_exceptions=True)
'''

# Another correct design: a semaphore bounds the requests, a page is started once the
# consumer is close enough, and the session is closed by hand in a finally.
SEMAPHORE = '''
import asyncio

async def iter_items(api, *, prefetch=2):
    session = api.session()
    tasks = {}
    try:
        first = await session.get_page(1)
        total = first.total_pages
        for n in range(2, min(total, 1 + prefetch) + 1):
            tasks[n] = asyncio.create_task(session.get_page(n))
        for item in first.items:
            yield item
        for n in range(2, total + 1):
            page = await tasks.pop(n)
            if n + prefetch <= total:
                tasks[n + prefetch] = asyncio.create_task(session.get_page(n + prefetch))
            for item in page.items:
                yield item
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await session.close()
'''


def variant_of(old: str, new: str, base: str = REFERENCE) -> str:
    assert old in base, old
    return base.replace(old, new)


SEQUENTIAL = '''
async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        number, total = 1, 1
        while number <= total:
            page = await session.get_page(number)
            total = page.total_pages
            for item in page.items:
                yield item
            number += 1
'''

WRONG = {
    "no prefetch (one page at a time)": (SEQUENTIAL, "prefetches while the consumer works",
                                         "page 2 was requested at 2 s, only when the consumer "
                                         "asked for it; with prefetch=2 it could be requested at "
                                         "1 s, as soon as page 1 had arrived"),
    "a deque of coroutines, not tasks": (variant_of(
        "window.append(asyncio.create_task(session.get_page(next_page)))",
        "window.append(session.get_page(next_page))"),
        "prefetches while the consumer works", "only when the consumer asked for it"),
    "unbounded prefetch (all pages at once)": ('''
import asyncio

async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        first = await session.get_page(1)
        tasks = [asyncio.create_task(session.get_page(n))
                 for n in range(2, first.total_pages + 1)]
        try:
            for item in first.items:
                yield item
            for task in tasks:
                page = await task
                for item in page.items:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
''', "requests in flight within prefetch", "5 page requests were in flight at once; prefetch=2 "
                                           "allows 2"),
    "out of order (completion order)": ('''
import asyncio

async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        first = await session.get_page(1)
        total, next_page = first.total_pages, 2
        running = set()
        try:
            def top_up():
                nonlocal next_page
                while len(running) < prefetch and next_page <= total:
                    running.add(asyncio.create_task(session.get_page(next_page)))
                    next_page += 1
            top_up()
            for item in first.items:
                yield item
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                top_up()
                for task in done:
                    for item in task.result().items:
                        yield item
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
''', "items in order", "item 5 was 'p3.0' where 'p2.0' belongs"),
    "tasks left running after break": (variant_of(
        "            for task in window:\n                task.cancel()\n"
        "            await asyncio.gather(*window, return_exceptions=True)\n",
        "            pass\n"),
        "early exit cancels the prefetches",
        "2 page requests (page 2, 3) still running after `break` on page 1 and aclose(): left "
        "running, orphaned"),
    "cancelled but not awaited": (variant_of(
        "            await asyncio.gather(*window, return_exceptions=True)\n", ""),
        "early exit cancels the prefetches", "they were cancelled, but nobody waited for them"),
    "waits for the prefetches instead of cancelling": (variant_of(
        "            for task in window:\n                task.cancel()\n", ""),
        "early exit cancels the prefetches",
        "`break` on page 1 and aclose() took 1.4 s: it waited for the prefetches to finish"),
    "connection not released on break (no try/finally)": ('''
import asyncio
from collections import deque

async def iter_items(api, *, prefetch=2):
    session = api.session()
    first = await session.get_page(1)
    window, next_page = deque(), 2
    while len(window) < prefetch and next_page <= first.total_pages:
        window.append(asyncio.create_task(session.get_page(next_page)))
        next_page += 1
    for item in first.items:
        yield item
    while window:
        page = await window.popleft()
        if next_page <= first.total_pages:
            window.append(asyncio.create_task(session.get_page(next_page)))
            next_page += 1
        for item in page.items:
            yield item
    await session.close()
''', "early exit releases the session",
        "the session was still open after `break` on page 1 and aclose()"),
    "off by one: tops up before awaiting": (variant_of(
        "                page = await window.popleft()\n                top_up()\n",
        "                oldest = window.popleft()\n                top_up()\n"
        "                page = await oldest\n"),
        "requests in flight within prefetch", "3 page requests were in flight at once (with a "
                                              "consumer that leaves early); prefetch=2 allows 2"),
    "gathers the cancelled tasks without return_exceptions": (variant_of(
        "await asyncio.gather(*window, return_exceptions=True)", "await asyncio.gather(*window)"),
        "a failing page raises in the consumer", "the consumer got CancelledError instead of "
                                                 "the page's PageError"),
    "fetches beyond the last page": (variant_of(
        "while len(window) < prefetch and next_page <= first.total_pages:",
        "while len(window) < prefetch:").replace(
        "            while window:\n                page = await window.popleft()\n",
        "            while window:\n                page = await window.popleft()\n"
        "                if not page.items:\n                    break\n"),
        "stops at the last page", "requested page 7, 8 of an API with 6 pages (2 requests past "
                                  "the end)"),
    "swallows the page error": (variant_of(
        "                page = await window.popleft()\n",
        "                try:\n                    page = await window.popleft()\n"
        "                except ConnectionError:\n                    continue  # skip a broken "
        "page\n"), "a failing page raises in the consumer",
        "page 4 failed, but the consumer never got its PageError: the items went on with 'p5.0'"),
    "gathers the rest, raises too early": ('''
import asyncio

async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        first = await session.get_page(1)
        rest = asyncio.gather(*(session.get_page(n) for n in range(2, first.total_pages + 1)))
        try:
            for item in first.items:
                yield item
            for page in await rest:
                for item in page.items:
                    yield item
        finally:
            rest.cancel()
''', "a failing page raises in the consumer", "came after 4 items; it belongs after the 12 items"),
    "time.sleep in the generator": (variant_of(
        "                page = await window.popleft()\n",
        "                time.sleep(0.05)  # be gentle with the API\n"
        "                page = await window.popleft()\n").replace(
        "import asyncio\n", "import asyncio\nimport time\n"),
        "never blocks the event loop", "time.sleep(0.05) in iter_items()"),
    "forgotten await": (variant_of("first = await session.get_page(1)",
                                   "first = session.get_page(1)"),
                        "every coroutine awaited", "coroutine 'Session.get_page' was never awaited"),
    "a coroutine function, not a generator": ('''
async def iter_items(api, *, prefetch=2):
    async with api.session() as session:
        first = await session.get_page(1)
        items = list(first.items)
        for n in range(2, first.total_pages + 1):
            items += (await session.get_page(n)).items
        return items
''', "is an async generator", "coroutine function"),
    "stub": ('''
async def iter_items(api, *, prefetch=2):
    """Yield every item of every page, in order, fetching up to prefetch pages ahead."""
    # YOUR CODE HERE
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


# What each wrong solution must be diagnosed with (``Finding.diagnosis`` of the failed finding).
DIAGNOSIS = {
    "no prefetch (one page at a time)": "no prefetch (one page at a time)",
    "a deque of coroutines, not tasks": "no prefetch (one page at a time)",
    "unbounded prefetch (all pages at once)": "all pages at once",
    "out of order (completion order)": "completion order",
    "tasks left running after break": "prefetch tasks left running",
    "cancelled but not awaited": "cancelled tasks not awaited",
    "waits for the prefetches instead of cancelling": "waits for the prefetches instead of cancelling",
    "connection not released on break (no try/finally)": "session not released on early exit",
    "off by one: tops up before awaiting": "one request too many (off by one)",
    "gathers the cancelled tasks without return_exceptions": "page error replaced by CancelledError",
    "fetches beyond the last page": "fetches past the last page",
    "swallows the page error": "swallows the page error",
    "gathers the rest, raises too early": "page error raised too early",
    "time.sleep in the generator": "blocked the loop",
    "forgotten await": "forgotten await",
    "a coroutine function, not a generator": "a coroutine function, not a generator",
    "stub": "not written",
}


def diagnosis_of(report, prop: str) -> str:
    finding = next(f for f in report.findings if f.prop == prop)
    return getattr(finding, "diagnosis", "")


def test_every_wrong_solution_has_its_diagnosis():
    assert set(DIAGNOSIS) == set(WRONG)


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, SEMAPHORE], ids=["deque", "dict-of-tasks"])
def test_correct_solutions_pass(code, variant):
    report = check(define(code, "iter_items"), variant=variant)
    assert report.passed, report.text()
    assert len(report.findings) == 9, report.text()


@pytest.mark.parametrize("seed", [7, 123])
def test_reference_passes_hidden_seeds(seed):
    report = check_iter_items(define(REFERENCE, "iter_items"), variant="hidden", seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "iter_items"))
    assert not report.passed
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()
    assert diagnosis_of(report, prop) == DIAGNOSIS[name], report.text()
    undiagnosed = [f.prop for f in report.findings if not f.passed
                   and not getattr(f, "diagnosis", "")]
    assert not undiagnosed, report.text()


def test_a_check_is_not_blamed_for_the_garbage_of_the_one_before():
    """Coroutines a wrong answer never awaited are reported in its own check, not the next."""
    wrong = check(define(WRONG["a deque of coroutines, not tasks"][0], "iter_items"))
    assert "every coroutine awaited" in failed_props(wrong), wrong.text()
    after = check(define(REFERENCE, "iter_items"))
    assert after.passed, after.text()


@pytest.mark.parametrize("name", ["no prefetch (one page at a time)",
                                  "unbounded prefetch (all pages at once)",
                                  "out of order (completion order)",
                                  "tasks left running after break",
                                  "connection not released on break (no try/finally)",
                                  "fetches beyond the last page", "swallows the page error"])
@pytest.mark.parametrize("seed", [5])
def test_hidden_variants_reject_them_too(name, seed):
    code, prop, _ = WRONG[name]
    report = check_iter_items(define(code, "iter_items"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()
    assert diagnosis_of(report, prop) == DIAGNOSIS[name], report.text()


def test_the_stub_only_says_not_written():
    report = check(define(WRONG["stub"][0], "iter_items"))
    assert [f.prop for f in report.findings] == ["written"]


def test_report_text_is_deterministic():
    fn = define(WRONG["tasks left running after break"][0], "iter_items")
    assert check(fn).text() == check(fn).text()


def test_hidden_scenarios_stay_meaningful():
    for seed in range(40):
        sc = scenario("hidden", seed)
        assert sc.prefetch in (2, 3) and sc.pages >= sc.prefetch + 4
        assert sc.latency_s[2] < sc.latency_s[1]  # page 3 answers before page 2
        assert sc.prefetching_s() < sc.one_at_a_time_s() - 1.0
        assert 2 <= sc.failing_page <= sc.pages
    assert scenario("hidden", 4) == scenario("hidden", 4)
    assert scenario("hidden") == scenario("hidden", None)


def test_prefetching_time_of_the_public_scenario():
    assert PUBLIC.prefetching_s() == pytest.approx(7.0)
    assert PUBLIC.one_at_a_time_s() == pytest.approx(11.0)


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
@pytest.mark.parametrize("mode", ["break", "raise", "timeout", "fail"])
def test_every_early_exit_happens_with_prefetches_in_flight(mode, seed):
    """The clean-up findings mean something: the reference had requests to cancel each time."""
    sc = scenario("hidden", seed) if seed is not None else PUBLIC
    run = play(define(REFERENCE, "iter_items"), sc, mode)
    assert any(r.outcome == "cancelled" for r in run.api.requests), run.api.requests
    assert run.look is not None and not run.look.open_sessions and not run.look.tasks
