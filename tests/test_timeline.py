"""asynclab.timeline: what is recorded, and that recording changes nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from asynclab.plotting import row_labels, time_unit
from asynclab.timeline import task_coroutine, trace, traced
from asynclab.vtime import run_virtual


async def sleeper(delay: float, result: str) -> str:
    await asyncio.sleep(delay)
    return result


def test_gather_overlaps_and_sequential_does_not():
    async def main():
        with trace() as together:
            await asyncio.gather(sleeper(2, "A"), sleeper(1, "B"))
        with trace() as one_by_one:
            await traced(sleeper(2, "A"))
            await traced(sleeper(1, "B"))
        return together, one_by_one

    together, one_by_one = run_virtual(main()).unwrap()
    assert together.names() == ["sleeper", "sleeper"]
    assert together.max_overlap() == 2 and together.elapsed == pytest.approx(2.0)
    assert one_by_one.max_overlap() == 1 and one_by_one.elapsed == pytest.approx(3.0)
    a, b = one_by_one.records
    assert a.ended == pytest.approx(b.started)


def test_steps_split_running_from_waiting():
    async def two_waits():
        await asyncio.sleep(1)
        await asyncio.sleep(2)

    async def main():
        with trace() as tl:
            await asyncio.create_task(two_waits(), name="worker")
        return tl

    tl = run_virtual(main()).unwrap()
    (rec,) = tl.records
    assert rec.name == "worker" and rec.outcome == "finished"
    # created, resumed after 1 s, resumed after 3 s: three steps, waiting in between
    assert [round(s - tl.t0, 6) for s, _ in rec.steps] == [0.0, 1.0, 3.0]
    assert rec.duration == pytest.approx(3.0)


def test_failures_and_cancellations_are_marked():
    async def boom():
        await asyncio.sleep(0.5)
        raise ValueError("bad input")

    async def main():
        with trace() as tl:
            slow = asyncio.create_task(sleeper(10, "x"), name="slow")
            failing = asyncio.create_task(boom(), name="boom")
            await asyncio.sleep(1)
            slow.cancel()
            await asyncio.gather(slow, failing, return_exceptions=True)
        return tl

    tl = run_virtual(main()).unwrap()
    outcome = {r.name: (r.outcome, r.error) for r in tl.records}
    assert outcome["boom"] == ("failed", "ValueError: bad input")
    assert outcome["slow"][0] == "cancelled"


def test_tracing_changes_no_result_and_restores_the_factory():
    seen = []

    def previous_factory(loop, coro, **kwargs):
        seen.append(kwargs.get("name"))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(previous_factory)
        with trace() as tl:
            results = await asyncio.gather(sleeper(1, "a"), sleeper(0.5, "b"))
            named = await asyncio.create_task(sleeper(0, "c"), name="named")
        assert loop.get_task_factory() is previous_factory
        return results, named, tl, list(seen)

    results, named, tl, seen_inside = run_virtual(main()).unwrap()
    assert results == ["a", "b"] and named == "c"
    assert seen_inside == [None, None, None]  # the previous factory built every task
    assert tl.names() == ["sleeper", "sleeper", "named"]


def test_factory_restored_after_an_error():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError):
            with trace():
                raise RuntimeError("inside")
        return loop.get_task_factory()

    assert run_virtual(main()).unwrap() is None


def test_works_on_a_real_running_loop():
    async def main():
        with trace() as tl:
            await asyncio.gather(sleeper(0.02, "a"), sleeper(0.01, "b"))
        return tl

    tl = asyncio.run(main())
    assert not tl.virtual and tl.max_overlap() == 2
    assert 0.01 <= tl.elapsed < 5.0  # real time: only a generous sanity bound


def test_traced_outside_a_trace_is_the_plain_coroutine():
    coro = sleeper(0, "x")
    assert traced(coro) is coro
    coro.close()


def test_figure_has_one_row_per_task_and_a_png():
    async def main():
        with trace() as tl:
            await asyncio.gather(*(sleeper(i, str(i)) for i in range(3)))
        return tl

    tl = run_virtual(main()).unwrap()
    fig = tl.figure(title="three")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["sleeper #3", "sleeper #2", "sleeper #1"]
    assert "virtual time (s)" == fig.axes[0].get_xlabel()
    assert tl.png().startswith(b"\x89PNG")
    assert "3 tasks, 2.00 virtual s in all" in tl.summary()


def test_row_labels_and_units():
    assert row_labels(["a", "b", "a"]) == ["a #1", "b", "a #2"]
    assert time_unit(0.25) == ("ms", 1000.0)
    assert time_unit(30) == ("s", 1.0)


def test_rows_are_numbered_the_same_way_whether_named_by_coroutine_or_by_hand():
    # The course's convention (asynclab.plotting.row_labels): ordinals come from row_labels,
    # from 1 in creation order, for a repeated given name as for a repeated coroutine name.
    async def main():
        with trace() as tl:
            for x in range(2):
                await traced(sleeper(1, x), name="comprehension")
            await asyncio.gather(sleeper(1, "a"), sleeper(1, "b"))
            await asyncio.create_task(sleeper(1, "c"), name="loader")
        return tl

    tl = run_virtual(main()).unwrap()
    assert list(tl.spans()) == ["comprehension #1", "comprehension #2", "sleeper #1", "sleeper #2",
                                "loader"]
    ax = tl.figure().axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][::-1] == list(tl.spans())


def test_task_cancelled_before_its_first_step_leaves_no_never_awaited_warning():
    import gc
    import warnings

    async def main():
        with trace() as tl:
            task = asyncio.create_task(sleeper(1, "x"), name="early")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return tl

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tl = run_virtual(main()).unwrap()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert tl.records[0].outcome == "cancelled"


def test_rows_keep_their_coroutine_names_when_the_loop_names_tasks_none():
    """CPython 3.13.0's create_task calls ``task.set_name(name)`` after the factory even when no
    name was given, which names every task "None". The rows must still read ``sleeper``."""

    async def main():
        loop = asyncio.get_running_loop()
        real_create_task = loop.create_task

        def create_task_as_in_3_13_0(coro, *, name=None, context=None):
            task = loop.get_task_factory()(loop, coro)
            task.set_name(name)  # "None" when no name was given
            return task

        loop.create_task = create_task_as_in_3_13_0
        try:
            with trace() as tl:
                await asyncio.gather(sleeper(1, "a"), sleeper(0.5, "b"))
                await loop.create_task(sleeper(0, "c"), name="named")
        finally:
            loop.create_task = real_create_task
        return tl

    tl = run_virtual(main()).unwrap()
    assert tl.names() == ["sleeper", "sleeper", "named"]


# -- why a task waits -------------------------------------------------------

def _states(tl):
    """``{row: [state of each wait]}``: the waits of each row, in order."""
    return {row: [state for _, _, state in spans if state != "running"]
            for row, spans in tl.spans().items()}


def test_waits_are_told_apart_slot_io_and_other_tasks():
    async def holder(lock, event):
        async with lock:
            await asyncio.sleep(1)
        event.set()

    async def taker(lock, event, queue):
        await asyncio.sleep(0)
        async with lock:  # held by holder: a slot
            pass
        await event.wait()  # set by holder at once: no wait
        return await queue.get()  # filled after 2 s: a slot

    async def main():
        lock, event, queue = asyncio.Lock(), asyncio.Event(), asyncio.Queue()
        asyncio.get_running_loop().call_later(2, queue.put_nowait, "item")
        with trace() as tl:
            await asyncio.gather(holder(lock, event), taker(lock, event, queue))
        return tl

    tl = run_virtual(main()).unwrap()
    states = _states(tl)
    assert states["holder"] == ["io"]  # the sleep
    assert states["taker"] == ["io", "slot", "slot"]  # sleep(0), the lock, the queue
    assert [round(e - s, 6) for s, e, k in tl.spans()["taker"] if k == "slot"] == [1.0, 1.0]


def test_a_task_awaiting_other_tasks_waits_for_tasks():
    async def parent():
        await asyncio.gather(sleeper(1, "a"), sleeper(2, "b"))
        await asyncio.create_task(sleeper(1, "c"))
        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper(1, "d"))

    async def main():
        with trace() as tl:
            await asyncio.create_task(parent())
        return tl

    tl = run_virtual(main()).unwrap()
    assert _states(tl)["parent"] == ["tasks", "tasks", "tasks"]
    assert all(states == ["io"] for row, states in _states(tl).items() if row != "parent")


def test_a_caller_awaiting_shield_of_a_task_waits_for_that_task():
    # Lesson 07: ``await asyncio.shield(save)`` waits for the task ``save`` (another row),
    # although what it awaits is a new bare future, the one ``shield`` returns.
    async def caller(save):
        try:
            async with asyncio.timeout(1):
                await asyncio.shield(save)
        except TimeoutError:
            pass
        await asyncio.shield(asyncio.shield(save))  # a shield of a shield: still the task

    async def shields_a_bare_future(fut):
        await asyncio.shield(fut)  # no task behind the future: I/O, as awaiting it would be

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_later(1, fut.set_result, None)
        with trace() as tl:
            save = asyncio.create_task(sleeper(3, "order saved"), name="save_order")
            await asyncio.gather(caller(save), shields_a_bare_future(fut))
        return tl

    tl = run_virtual(main()).unwrap()
    states = _states(tl)
    assert states["caller"] == ["tasks", "tasks"]
    assert [round(e - s, 6) for s, e, k in tl.spans()["caller"] if k == "tasks"] == [1.0, 2.0]
    assert states["save_order"] == ["io"] and states["shields_a_bare_future"] == ["io"]


def test_waiting_for_a_thread_or_a_process_has_a_kind_and_a_look_of_its_own():
    # Lesson 14: to_thread and run_in_executor wait for a call outside the loop. On a real loop
    # (the calls run in real threads); only the kinds and the order of events are asserted.
    def blocking(x):
        return x

    async def with_to_thread():
        return await asyncio.to_thread(blocking, 1)

    async def with_executor(pool):
        return await asyncio.get_running_loop().run_in_executor(pool, blocking, 2)

    async def with_gather(pool):
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(pool, blocking, i) for i in range(3)))

    async def with_plain_future():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 4)
        return await fut

    async def main():
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool, trace() as tl:
            await asyncio.gather(with_to_thread(), with_executor(pool), with_gather(pool),
                                 with_plain_future())
        return tl

    tl = asyncio.run(main())
    assert _states(tl) == {"with_to_thread": ["thread"], "with_executor": ["thread"],
                           "with_gather": ["thread"], "with_plain_future": ["io"]}
    # Waiting for a thread is work under way: in flight. All four wait at once (their first
    # steps run in one turn of the loop; no result can come back before the next turn).
    assert tl.max_in_flight() == 4
    legend = [t.get_text() for t in tl.figure().legends[0].get_texts()]
    assert legend == ["running", "waiting on I/O or a timer", "waiting for a thread or process",
                      "finished"]


def test_semaphore_in_flight_count_is_the_limit():
    async def main(limit):
        sem = asyncio.Semaphore(limit)

        async def fetch_one(i):
            async with sem:
                await asyncio.sleep(1 + i % 3)

        with trace() as tl:
            await asyncio.gather(*(fetch_one(i) for i in range(12)))
        return tl

    tl = run_virtual(main(4)).unwrap()
    assert tl.max_overlap() == 12  # all alive at once ...
    assert tl.max_in_flight() == 4  # ... but only four hold a slot
    times, counts = tl.in_flight()
    assert counts[0] == 4 and counts[-1] == 0 and times == sorted(times)
    # each row: at most one slot wait, before its I/O
    for row, states in _states(tl).items():
        assert states in (["io"], ["slot", "io"]), (row, states)
    assert sum(states == ["io"] for states in _states(tl).values()) == 4


def test_figure_draws_the_in_flight_panel_and_a_deadline():
    async def main():
        sem = asyncio.Semaphore(2)

        async def one():
            async with sem:
                await asyncio.sleep(1)

        with trace() as tl:
            await asyncio.gather(*(one() for _ in range(4)))
        return tl

    tl = run_virtual(main()).unwrap()
    fig = tl.figure(title="x", in_flight=True, limit=2, deadline=1.5, unit="ms")
    rows, panel = fig.axes
    assert panel.get_ylabel() == "in flight" and panel.get_xlabel() == "virtual time (ms)"
    step = [line for line in panel.get_lines() if line.get_linewidth() == 2][0]
    assert max(step.get_ydata()) == 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["running", "waiting on I/O or a timer",
                          "waiting for a slot (lock, semaphore, queue)"]
    assert any(t.get_text() == "deadline" for t in rows.texts)
    assert tl.png(in_flight=True, limit=2).startswith(b"\x89PNG")


def test_a_task_alive_at_the_end_of_the_trace_waits_until_then():
    async def main():
        with trace() as tl:
            task = asyncio.create_task(sleeper(5, "x"))
            await asyncio.sleep(2)
        task.cancel()
        return tl

    tl = run_virtual(main()).unwrap()
    (spans,) = tl.spans().values()
    waits = [(round(s, 6), round(e, 6), k) for s, e, k in spans if k != "running"]
    assert waits == [(0.0, 2.0, "io")]  # drawn up to the end of the trace, no further


def test_a_traced_coroutine_made_into_a_task_keeps_one_row():
    """wait_for makes a task of its coroutine up to 3.11: a traced one must not get a second row."""

    async def main():
        with trace() as tl:
            task = asyncio.ensure_future(traced(sleeper(1, "x"), name="inner"))
            await task
            await asyncio.wait_for(traced(sleeper(1, "y"), name="waited"), timeout=5)
        return tl

    tl = run_virtual(main()).unwrap()
    assert tl.names() == ["inner", "waited"]


def test_several_labelled_deadlines_are_drawn_and_fit_the_axis():
    async def main():
        with trace() as tl:
            await asyncio.create_task(sleeper(2, "y"))
        return tl

    tl = run_virtual(main()).unwrap()
    fig = tl.figure(deadline={"first": 1.0, "moved to": 5.0})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["first", "moved to"]
    assert ax.get_xlim()[1] >= 5.0


def test_awaiting_a_traced_coroutine_is_waiting_for_another_row():
    async def parent():
        await traced(sleeper(1, "a"), name="child")

    async def main():
        with trace() as tl:
            await traced(parent(), name="parent")
        return tl

    tl = run_virtual(main()).unwrap()
    assert _states(tl) == {"parent": ["tasks"], "child": ["io"]}


def test_an_axis_is_not_mostly_empty_when_the_tasks_start_late():
    async def main():
        with trace() as tl:
            await asyncio.sleep(8)  # set-up before any task: most of the span
            await asyncio.gather(sleeper(1, "a"), sleeper(2, "b"))
        return tl

    tl = run_virtual(main()).unwrap()
    left, right = tl.figure().axes[0].get_xlim()
    assert 7.5 < left < 8.0 and right == pytest.approx(10 * 1.03)


def test_task_coroutine_sees_through_the_tracer():
    async def main():
        with trace():
            task = asyncio.create_task(sleeper(1, "x"))
            inner = task_coroutine(task)
            await task
        plain = asyncio.create_task(sleeper(1, "y"))
        await plain
        return inner, task_coroutine(plain)

    inner, plain = run_virtual(main()).unwrap()
    assert inner.__name__ == "sleeper" and plain.__name__ == "sleeper"


def test_tracing_forwards_results_errors_cancellation_and_throw_unchanged():
    """The wrapper is a coroutine of its own: what the task sees must be what it would see."""
    class Boom(Exception):
        pass

    async def answer():
        await asyncio.sleep(1)
        return 42

    async def fails():
        await asyncio.sleep(1)
        raise Boom("bad")

    async def catches_cancel():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # cleanup, then let the cancellation go on
            raise

    async def main():
        with trace() as tl:
            a = asyncio.create_task(answer())
            b = asyncio.create_task(fails())
            c = asyncio.create_task(catches_cancel())
            await asyncio.sleep(2)
            c.cancel()
            results = await asyncio.gather(a, b, c, return_exceptions=True)
        return tl, results

    tl, results = run_virtual(main()).unwrap()
    assert results[0] == 42
    assert isinstance(results[1], Boom)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r.outcome for r in tl.records] == ["finished", "failed", "cancelled"]
    assert tl.records[2].steps[-1][0] == pytest.approx(tl.t0 + 3)  # the cleanup ran its second
