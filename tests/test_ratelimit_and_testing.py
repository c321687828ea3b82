"""asynclab.ratelimit keeps its promises; asynclab.testing runs unittest and pytest on a
virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from asynclab.ratelimit import RateLimiter
from asynclab.testing import VirtualTimeTestCase, run_pytest, run_unittest
from asynclab.vtime import run_virtual


async def entries_and_peak(limiter: RateLimiter, n: int, hold_s: float) -> tuple[list[float], int]:
    loop = asyncio.get_running_loop()
    entries: list[float] = []
    inside = peak = 0

    async def caller() -> None:
        nonlocal inside, peak
        async with limiter:
            entries.append(loop.time())
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(hold_s)
            inside -= 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(caller())
    return entries, peak


def test_both_limits_on_virtual_time():
    run = run_virtual(entries_and_peak(RateLimiter(max_per_s=4, max_at_once=2), 5, hold_s=1.0))
    entries, peak = run.unwrap()
    assert peak == 2
    assert entries == [0.0, 0.25, 1.0, 1.25, 2.0]  # a slot frees at 1.0 and at 1.25, then 2.0


def test_no_burst_after_idle_and_slot_back_after_error_and_cancel():
    async def scenario():
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(max_per_s=2, max_at_once=1)
        with pytest.raises(ZeroDivisionError):
            async with limiter:
                1 / 0
        await asyncio.sleep(30)
        entries, _ = await entries_and_peak(limiter, 3, hold_s=0)
        waiter = asyncio.create_task(limiter.acquire())  # waits for its turn at +0.5 s
        await asyncio.sleep(0.1)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        async with asyncio.timeout(5):
            await limiter.acquire()
        limiter.release()
        return entries, loop.time()

    entries, end = run_virtual(scenario).unwrap()
    assert entries == [30.0, 30.5, 31.0]
    assert end == 31.5


class Clock(VirtualTimeTestCase):
    __test__ = False  # run by run_unittest below, not collected by pytest itself

    async def test_five_minutes(self):
        await asyncio.sleep(300)
        self.assertEqual(asyncio.get_running_loop().time(), 300)

    async def test_fails(self):
        self.assertEqual(1, 2)


def test_run_unittest_uses_virtual_time_and_reports():
    report = run_unittest(Clock)
    assert "test_five_minutes" in report and "ok" in report
    assert "FAILED (failures=1)" in report
    assert "Ran 2 tests in <t>s" in report


def test_run_pytest_with_anyio_on_the_virtual_clock():
    run = run_pytest({
        "conftest.py": '''
            import pytest
            from asynclab.vtime import new_virtual_loop

            @pytest.fixture
            def anyio_backend():
                return "asyncio", {"loop_factory": new_virtual_loop}
        ''',
        "test_clock.py": '''
            import asyncio
            import pytest

            pytestmark = pytest.mark.anyio

            async def test_an_hour(tmp_path):
                await asyncio.sleep(3600)
                assert asyncio.get_running_loop().time() == 3600

            async def test_wrong():
                assert 1 == 2
        ''',
    })
    assert not run.passed
    assert "1 failed, 1 passed in <t>s" in run.output, run.output
    assert "asynclab-tests-" not in run.output


def test_run_pytest_prints_the_same_on_a_ci_machine(monkeypatch):
    """pytest stops cutting summary lines to the terminal when it sees CI=...; the notebooks'
    committed outputs were made without it, so run_pytest must not pass it on."""
    long_failure = {"test_long.py": '''
        def test_a_failure_with_a_long_message():
            raise AssertionError("a message much longer than the eighty columns of a terminal " * 3)
    '''}
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    here = run_pytest(long_failure).output
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("BUILD_NUMBER", "7")
    assert run_pytest(long_failure).output == here
    assert "..." in here.splitlines()[-2]   # the summary line is cut, as in the notebooks
