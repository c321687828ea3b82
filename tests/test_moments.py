"""asynclab.moments: labelled moments land on their task's row, at their time."""

from __future__ import annotations

import asyncio

import pytest

from asynclab.moments import Moments
from asynclab.timeline import trace
from asynclab.vtime import run_virtual


def run_two_workers(moments: Moments):
    async def worker(delay: float) -> None:
        moments.note("start")
        await asyncio.sleep(delay)
        moments.note(f"done after {delay:g} s")

    async def main():
        with trace() as timeline:
            await asyncio.gather(asyncio.create_task(worker(2.0), name="slow"),
                                 asyncio.create_task(worker(1.0), name="quick"))
        return timeline

    return run_virtual(main()).unwrap()


def test_notes_keep_their_order_time_task_and_row():
    moments = Moments()
    timeline = run_two_workers(moments)
    got = [(m.at - timeline.t0, m.task_name, m.label, m.row) for m in moments.items]
    assert got == [(0.0, "slow", "start", 0), (0.0, "quick", "start", 1),
                   (1.0, "quick", "done after 1 s", 1), (2.0, "slow", "done after 2 s", 0)]
    assert all(m.timeline is timeline for m in moments.items)
    assert moments.text().splitlines() == [
        "  0.00 s  slow   start", "  0.00 s  quick  start",
        "  1.00 s  quick  done after 1 s", "  2.00 s  slow   done after 2 s"]


def test_figure_labels_each_moment_on_its_row_at_its_time():
    moments = Moments()
    timeline = run_two_workers(moments)
    fig = moments.figure(timeline, title="two workers")
    ax = fig.axes[0]
    labels = {t.get_text(): t.xy for t in ax.texts}
    # Two rows: "slow" (row 0) is drawn on top (y = 1), "quick" below (y = 0); seconds on x.
    assert labels["done after 2 s"] == pytest.approx((2.0, 1.3))
    assert labels["done after 1 s"] == pytest.approx((1.0, 0.3))
    assert sorted(t.get_text() for t in ax.texts) == sorted(m.label for m in moments.items)


def test_notes_outside_a_trace_are_listed_but_not_drawn():
    moments = Moments()

    async def main():
        moments.note("before the trace")
        with trace() as timeline:
            await asyncio.create_task(asyncio.sleep(3), name="sleeper")
        return timeline

    timeline = run_virtual(main()).unwrap()
    (only,) = moments.items
    assert only.row is None and only.label == "before the trace"
    assert "before the trace" in moments.text()
    assert len(moments.figure(timeline).axes[0].texts) == 0


def test_unnamed_tasks_take_their_coroutine_name_and_clear_empties():
    moments = Moments()

    async def helper():
        moments.note("hello")

    async def main():
        with trace():
            await asyncio.create_task(helper())

    run_virtual(main()).unwrap()
    assert [m.task_name for m in moments.items] == ["helper"]
    moments.clear()
    assert moments.items == [] and moments.text() == ""


def test_labels_of_one_row_at_one_instant_are_joined():
    moments = Moments()

    async def decide():
        await asyncio.sleep(1)
        moments.note("read 30")
        moments.note("refused")
        await asyncio.sleep(1)

    async def main():
        with trace() as timeline:
            await asyncio.create_task(decide(), name="Bob")
        return timeline

    timeline = run_virtual(main()).unwrap()
    assert [t.get_text() for t in moments.figure(timeline).axes[0].texts] == ["read 30, refused"]


def test_text_names_each_task_by_its_row_label_as_the_figure_does():
    # Three unnamed tasks of one coroutine: rows "worker #1".."#3", in the text as in the figure.
    moments = Moments()

    async def worker(delay: float) -> None:
        await asyncio.sleep(delay)
        moments.note("go")

    async def main():
        with trace() as timeline:
            await asyncio.gather(*(worker(d) for d in (3.0, 1.0, 2.0)))
        return timeline

    timeline = run_virtual(main()).unwrap()
    assert moments.text().splitlines() == [
        "  1.00 s  worker #2  go", "  2.00 s  worker #3  go", "  3.00 s  worker #1  go"]
    ticks = [t.get_text() for t in moments.figure(timeline).axes[0].get_yticklabels()]
    assert sorted(ticks) == ["worker #1", "worker #2", "worker #3"]
