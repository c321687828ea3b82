"""asynclab.blocking: blocking is caught for what it is, with the learner's line, and only then."""

from __future__ import annotations

import asyncio

from asynclab.blocking import HELD
from asynclab.vtime import run_virtual
from conftest import define


def test_a_line_that_computes_for_long_is_caught_without_any_list_of_functions():
    """No time.sleep, no marked function: the watchdog sees the loop's thread held on one line."""
    fn = define('''
        import asyncio, time

        def crunch():
            started, spins = time.thread_time(), 0
            while time.thread_time() - started < 0.35:  # more CPU time than the 0.25 s threshold
                spins += 1
            return spins

        async def handler():
            crunch()
            await asyncio.sleep(1)
    ''', "handler")
    run = run_virtual(fn)
    assert [(c.what, c.function) for c in run.blocking_calls] == [(HELD, "crunch")]
    assert run.blocking_calls[0].lineno in (6, 7)


def test_many_quick_tasks_through_one_line_are_not_blocking():
    """Thousands of task steps in one turn of the loop pass through the same line, each quickly."""
    fn = define('''
        import asyncio

        async def tick(n):
            await asyncio.sleep(0)
            return sum(range(200)) + n

        async def handler():
            return len(await asyncio.gather(*(tick(n) for n in range(2_000))))
    ''', "handler")
    run = run_virtual(fn)
    assert run.result == 2_000
    assert run.blocking_calls == []


def test_waiting_on_a_thread_from_the_loop_is_caught_every_time():
    fn = define('''
        import asyncio, threading
        from concurrent.futures import ThreadPoolExecutor

        async def handler():
            gate = threading.Event()
            with ThreadPoolExecutor(1) as pool:
                future = pool.submit(gate.wait, 5)
                asyncio.get_running_loop().call_later(0, gate.set)  # never runs: we block
                gate.set()
                return future.result()
    ''', "handler")
    for _ in range(3):
        run = run_virtual(fn)
        assert run.result is True
        assert any(c.what == "a wait for another thread" and c.function == "handler"
                   for c in run.blocking_calls), run.blocking_calls


def test_awaiting_a_thread_is_not_blocking():
    async def main():
        loop = asyncio.get_running_loop()
        first = await asyncio.to_thread(sum, range(10))
        second = await loop.run_in_executor(None, max, [3, 1, 2])
        return first, second

    run = run_virtual(main)
    assert run.result == (45, 3)
    assert run.blocking_calls == []


def test_a_comprehension_is_named_by_its_function_on_every_python():
    """3.11 runs `[f(x) for x in xs]` in a `<listcomp>` frame; 3.12+ inline it."""
    fn = define('''
        import time

        async def lookup_all(keys):
            return [time.sleep(0) or key for key in keys]
    ''', "lookup_all")
    run = run_virtual(lambda: fn(["a", "b"]), namespaces=(fn.__globals__,))
    assert run.result == ["a", "b"]
    assert {c.function for c in run.blocking_calls} == {"lookup_all"}
