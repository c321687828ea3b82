"""asynclab.vtime: virtual time that is fast, exact, and safe against learner code."""

from __future__ import annotations

import asyncio
import time

import pytest

from asynclab.blocking import BlockingDetector, blocking
from asynclab.vtime import HangError, run_virtual
from conftest import define


def test_ten_thousand_one_minute_sleeps_take_no_real_minute():
    async def sleepy():
        await asyncio.sleep(60)

    async def main():
        await asyncio.gather(*(sleepy() for _ in range(10_000)))

    run = run_virtual(main)
    assert run.elapsed == pytest.approx(60.0)
    # The meaningful claim is "not 60 s"; the benchmark prints the real figure.
    assert run.wall_s < 10.0


def test_order_of_events_is_exact():
    log = []

    async def at(delay, name):
        await asyncio.sleep(delay)
        log.append((asyncio.get_running_loop().time(), name))

    async def main():
        await asyncio.gather(at(3, "c"), at(1, "a"), at(2, "b"))

    run_virtual(main)
    assert log == [(1.0, "a"), (2.0, "b"), (3.0, "c")]


def test_results_and_errors_come_back():
    async def ok():
        await asyncio.sleep(5)
        return 42

    async def bad():
        raise KeyError("k")

    assert run_virtual(ok()).unwrap() == 42
    run = run_virtual(bad())
    assert isinstance(run.error, KeyError)
    with pytest.raises(KeyError):
        run.unwrap()


def test_deadlock_is_reported_not_hung():
    async def waits_forever():
        await asyncio.Queue().get()

    with pytest.raises(HangError) as info:
        run_virtual(waits_forever)
    assert info.value.reason == "deadlock"


def test_virtual_limit_even_when_cancellation_is_swallowed():
    async def stubborn():
        while True:
            try:
                await asyncio.sleep(10)
            except BaseException:  # noqa: BLE001 - the pitfall under test
                pass

    with pytest.raises(HangError) as info:
        run_virtual(stubborn, max_virtual_s=100)
    assert info.value.reason == "virtual-limit"


def test_wall_limit_stops_waiting_for_a_busy_loop():
    async def spins():
        while True:
            await asyncio.sleep(0)

    with pytest.raises(HangError) as info:
        run_virtual(spins, wall_limit_s=0.5)
    assert info.value.reason == "wall-limit"


def test_callable_from_inside_a_running_loop_like_jupyter():
    async def inner():
        await asyncio.sleep(3600)
        return "done"

    async def kernel_cell():
        # The kernel's loop is running here; run_virtual uses a thread of its own.
        return run_virtual(inner()).unwrap()

    assert asyncio.run(kernel_cell()) == "done"


def test_blocking_sleep_is_detected_with_the_learners_line():
    fn = define('''
        import asyncio, time

        async def handler():
            time.sleep(0.2)
            await asyncio.sleep(1)
    ''', "handler")
    started = time.perf_counter()
    run = run_virtual(fn)
    assert time.perf_counter() - started < 0.2 + 5.0  # the sleep itself is skipped, not waited
    (call,) = run.blocking_calls
    assert call.what == "time.sleep(0.2)" and call.function == "handler"
    assert "line 5" in call.where()


def test_from_time_import_sleep_is_caught_through_the_namespace():
    fn = define('''
        import asyncio
        from time import sleep

        async def handler():
            sleep(0.1)
    ''', "handler")
    run = run_virtual(fn, namespaces=(fn.__globals__,))
    assert [c.what for c in run.blocking_calls] == ["time.sleep(0.1)"]
    assert fn.__globals__["sleep"] is time.sleep  # put back afterwards


def test_blocking_work_in_a_thread_is_fine():
    @blocking
    def legacy_io():
        return "ok"

    async def main():
        in_thread = await asyncio.to_thread(legacy_io)
        on_loop = legacy_io()
        return in_thread, on_loop

    run = run_virtual(main)
    assert run.result == ("ok", "ok")
    assert [c.what for c in run.blocking_calls] == ["legacy_io()"]


def test_detector_restores_time_sleep():
    original = time.sleep
    with BlockingDetector():
        assert time.sleep is not original
    assert time.sleep is original
