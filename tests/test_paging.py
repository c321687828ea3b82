"""The fake paginated API records exactly what a client did to it."""

from __future__ import annotations

import asyncio

import pytest

from asynclab.paging import Page, PagedAPI, PageError
from asynclab.vtime import run_virtual


def test_pages_items_and_total():
    api = PagedAPI([2, 1], latency_s=[1.0, 0.5])

    async def main():
        async with api.session() as session:
            return [await session.get_page(1), await session.get_page(2)]

    run = run_virtual(main)
    assert run.unwrap() == [Page(1, ["p1.0", "p1.1"], 2), Page(2, ["p2.0"], 2)]
    assert run.elapsed == pytest.approx(1.5)
    assert api.items() == ["p1.0", "p1.1", "p2.0"] and api.items(1) == ["p1.0", "p1.1"]
    assert [(r.page, r.start, r.end, r.outcome) for r in api.requests] == [
        (1, 0.0, 1.0, "ok"), (2, 1.0, 1.5, "ok")]
    assert api.sessions[0].closed_at == pytest.approx(1.5) and not api.open_sessions()


def test_in_flight_and_a_page_past_the_end():
    api = PagedAPI([1, 1, 1], latency_s=1.0)

    async def main():
        session = api.session()
        pages = await asyncio.gather(*(session.get_page(n) for n in (2, 3, 4)))
        return pages, session

    pages, session = run_virtual(main).unwrap()
    assert api.max_in_flight == 3
    assert pages[2] == Page(4, [], 3)  # an empty page, as many real APIs answer
    assert [r.page for r in api.past_the_end()] == [4]
    assert not session.closed and api.open_sessions() == [session]
    assert api.in_flight_series() == ([0.0, 1.0], [3, 0])


def test_a_failing_page_and_a_cancelled_request():
    api = PagedAPI([1, 1], latency_s=[1.0, 5.0], failing={1})

    async def main():
        session = api.session()
        slow = asyncio.create_task(session.get_page(2))
        with pytest.raises(PageError, match="page 1"):
            await session.get_page(1)
        await session.close()
        assert session.in_flight_at_close == 1
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        with pytest.raises(RuntimeError, match="closed"):
            await session.get_page(2)

    run_virtual(main).unwrap()
    # the task's request starts after the direct call: a task runs at the loop's next step
    assert [(r.page, r.outcome, r.end) for r in api.requests] == [(1, "error", 1.0),
                                                                  (2, "cancelled", 1.0)]
    assert api.running() == []


def test_one_latency_per_page_is_required():
    with pytest.raises(ValueError):
        PagedAPI([1, 1], latency_s=[1.0])
    with pytest.raises(ValueError):
        PagedAPI([])
