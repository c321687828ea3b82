"""The measuring tools of lesson 17 measure what they say, and clean up after themselves."""

from __future__ import annotations

import asyncio
import sys
import threading
import tracemalloc

import pytest

from asynclab.costs import Allocated, Memory, ParkedThreads, best_of, fmt_bytes, limits, memory


def test_memory_is_positive_and_subtracts():
    now = memory()
    assert now.rss > 0 and now.vms >= now.rss
    assert (now - Memory(1, 2)) == Memory(now.rss - 1, now.vms - 2)


@pytest.mark.parametrize("n, text", [(512, "512 bytes"), (2048, "2.0 KiB"),
                                     (8 * 2**20, "8.0 MiB"), (3 * 2**30, "3.0 GiB")])
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


def test_parked_threads_are_alive_inside_and_joined_after():
    before = threading.active_count()
    with ParkedThreads(20) as parked:
        assert parked.started == 20 and parked.alive == 20 and parked.refused is None
        assert threading.active_count() >= before + 20
    assert parked.alive == 0
    assert threading.active_count() == before
    assert parked.per_thread.rss >= 0


@pytest.mark.skipif(sys.platform != "linux", reason="stack reservations are read from VMS on Linux")
def test_a_smaller_stack_reserves_less_and_the_setting_is_restored():
    default = threading.stack_size()
    with ParkedThreads(50) as big:
        pass
    with ParkedThreads(50, stack_size=256 * 1024) as small:
        pass
    assert threading.stack_size() == default
    assert small.per_thread.vms < big.per_thread.vms / 4


def test_allocated_counts_what_is_kept_and_leaves_tracing_as_it_was():
    with Allocated() as kept:
        blob = bytearray(1_000_000)
    assert 1_000_000 <= kept.bytes < 1_100_000
    assert not tracemalloc.is_tracing()
    del blob


def test_allocated_works_across_await():
    async def main():
        gate = asyncio.get_running_loop().create_future()

        async def parked():
            await gate

        with Allocated() as tasks:
            crowd = [asyncio.create_task(parked()) for _ in range(1_000)]
            await asyncio.sleep(0)
        gate.set_result(None)
        await asyncio.gather(*crowd)
        return tasks.bytes / 1_000

    per_task = asyncio.run(main())
    assert 100 < per_task < 16_384


def test_best_of_takes_the_smallest():
    values = iter([3.0, 1.0, 2.0])
    assert best_of(lambda: next(values)) == 1.0


def test_limits_names_every_limit():
    found = limits()
    assert len(found) == 6
    assert all(isinstance(v, str) and v for v in found.values())
