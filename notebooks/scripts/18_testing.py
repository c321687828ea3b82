"""Lesson 18 as a script: tests of first_of on a virtual clock, which pytest runs.

    python 18_testing.py     # runs the tests in this file with pytest (pytest.main)

The file is also an ordinary test module: `python -m pytest -p no:looptime_plugin 18_testing.py`.
"""

import asyncio
import sys

import pytest


async def first_of(fetchers, timeout_s):
    """Run every fetcher at once; return the first result and cancel the rest (None on timeout)."""
    tasks = [asyncio.create_task(fetch()) for fetch in fetchers]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result() if done else None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def make_mirror(name, delay_s, log):
    """A fake mirror: answers `name` after delay_s, logging (loop time, event) as it goes."""
    async def mirror():
        loop = asyncio.get_running_loop()
        log.append((loop.time(), f"{name} starts"))
        try:
            await asyncio.sleep(delay_s)
        except asyncio.CancelledError:
            log.append((loop.time(), f"{name} cancelled"))
            raise
        log.append((loop.time(), f"{name} answers"))
        return name

    return mirror


@pytest.fixture
def anyio_backend():
    """Every async test runs on asyncio, on a fresh loop with a virtual clock."""
    from asynclab.vtime import new_virtual_loop  # (imported here, after pytest has started)

    return "asyncio", {"loop_factory": new_virtual_loop}


pytestmark = pytest.mark.anyio  # every test in this file runs in an event loop


async def test_fastest_mirror_wins():
    mirrors = [make_mirror("eu", 3, []), make_mirror("us", 1, [])]
    assert await first_of(mirrors, timeout_s=10) == "us"


async def test_gives_up_after_five_minutes():
    log = []
    mirrors = [make_mirror("eu", 3600, log), make_mirror("us", 3600, log)]
    assert await first_of(mirrors, timeout_s=300) is None
    assert asyncio.get_running_loop().time() == 300
    assert [event for _, event in log] == ["eu starts", "us starts", "eu cancelled", "us cancelled"]


if __name__ == "__main__":
    # -p no:looptime_plugin: looptime 0.9's plugin needs pytest-asyncio (lesson 18 shows why);
    # -o addopts=: the course folder's own pytest options (nbval, xdist) are not for this file.
    sys.exit(pytest.main([__file__, "-v", "-p", "no:looptime_plugin", "-p", "no:cacheprovider",
                          "-o", "addopts="]))
