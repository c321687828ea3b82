"""The single-flight cache check passes the reference and rejects what learners really write."""

from __future__ import annotations

from functools import lru_cache

import pytest

from asynclab.checks import check
from asynclab.checks.nb08_races_and_sync import check_single_flight_cache, scenes
from conftest import define, failed_props

NAME = "SingleFlightCache"

REFERENCE = '''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key))
            self._tasks[key] = task

            def forget_if_failed(done):
                if done.cancelled() or done.exception() is not None:
                    del self._tasks[key]

            task.add_done_callback(forget_if_failed)
        return await asyncio.shield(task)
'''

# Another correct design: values in one dict, Futures for the fetches in flight, the fetch in a
# Task of its own that settles the Future whatever happens.
ALTERNATIVE = '''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._pending = {}

    async def _run(self, key, future):
        try:
            value = await self._fetch(key)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            self._values[key] = value
            future.set_result(value)
        finally:
            del self._pending[key]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved, even if every caller has gone

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key not in self._pending:
            future = asyncio.get_running_loop().create_future()
            self._pending[key] = future
            asyncio.create_task(self._run(key, future))
        return await asyncio.shield(self._pending[key])
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "no de-duplication: check, await, then store": ('''
class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        value = await self._fetch(key)
        self._values[key] = value
        return value
''', "one fetch per key, however many ask", "'alpha' was fetched 4 times"),
    "one lock for all keys": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._lock = asyncio.Lock()

    async def get(self, key):
        async with self._lock:
            if key not in self._values:
                self._values[key] = await self._fetch(key)
            return self._values[key]
''', "different keys fetched at the same time", "as if one lock guarded every key"),
    "a lock per key: waiters retry after a failure": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._locks = {}

    async def get(self, key):
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._values:
                self._values[key] = await self._fetch(key)
            return self._values[key]
''', "a failure reaches every waiter",
        "did not get its error: they fetched it again themselves (1 more fetch, from 1 s)"),
    "the failure is kept forever": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._fetch(key))
        return await asyncio.shield(self._tasks[key])
''', "a failure is not kept", "got the old error again without a new fetch"),
    "an Event set only on success": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._events = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key in self._events:
            await self._events[key].wait()
            return self._values[key]
        self._events[key] = asyncio.Event()
        value = await self._fetch(key)
        self._values[key] = value
        self._events[key].set()
        return value
''', "a failure reaches every waiter", "callers 2 and 3 were still waiting for it 30 s later"),
    "an Event set in finally, the error not shared": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._events = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key in self._events:
            await self._events[key].wait()
            return self._values[key]
        event = self._events[key] = asyncio.Event()
        try:
            self._values[key] = await self._fetch(key)
            return self._values[key]
        finally:
            del self._events[key]
            event.set()
''', "a failure reaches every waiter", "caller 2 (waiting since 0.25 s) raised KeyError: 'flaky'"),
    "the Task awaited without shield": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = asyncio.create_task(self._fetch(key))

            def forget_if_failed(done):
                if done.cancelled() or done.exception() is not None:
                    del self._tasks[key]

            task.add_done_callback(forget_if_failed)
        return await task
''', "a cancelled caller does not strand the others",
        "cancelling caller 1 at 1 s cancelled the shared fetch of 'report' too: caller 2 got "
        "CancelledError"),
    "the first caller fetches inline: cancelling it strands the waiters": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._futures = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key in self._futures:
            return await asyncio.shield(self._futures[key])
        future = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        try:
            value = await self._fetch(key)
        except Exception as exc:
            del self._futures[key]
            future.set_exception(exc)
            raise
        del self._futures[key]
        self._values[key] = value
        future.set_result(value)
        return value
''', "a cancelled caller does not strand the others", "callers 2 and 3 were still waiting"),
    "the coroutine stored instead of a Task": ('''
class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._pending = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key not in self._pending:
            self._pending[key] = self._fetch(key)
        value = await self._pending[key]
        self._values[key] = value
        return value
''', "every caller gets its value", "RuntimeError: coroutine is being awaited already"),
    "polling for the value": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._busy = set()

    async def get(self, key):
        while key in self._busy:
            await asyncio.sleep(0.3)
        if key in self._values:
            return self._values[key]
        self._busy.add(key)
        try:
            self._values[key] = await self._fetch(key)
        finally:
            self._busy.discard(key)
        return self._values[key]
''', "waiters get the value the moment it arrives", "and got it at 2.1 s"),
    "time.sleep to let the others register": ('''
import asyncio
import time

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        task = self._tasks.get(key)
        if task is None:
            time.sleep(0.01)  # "let the other callers find the task"
            task = self._tasks[key] = asyncio.create_task(self._fetch(key))

            def forget_if_failed(done):
                if done.cancelled() or done.exception() is not None:
                    del self._tasks[key]

            task.add_done_callback(forget_if_failed)
        return await asyncio.shield(task)
''', "never blocks the event loop", "time.sleep(0.01) in get()"),
    "forgotten await: the shielded task returned": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = asyncio.create_task(self._fetch(key))
        return asyncio.shield(task)
''', "every caller gets its value", "a forgotten `await`"),
    "forgotten await on event.wait()": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._values = {}
        self._events = {}

    async def get(self, key):
        if key in self._values:
            return self._values[key]
        if key in self._events:
            self._events[key].wait()
            return self._values.get(key)
        self._events[key] = asyncio.Event()
        self._values[key] = await self._fetch(key)
        self._events[key].set()
        return self._values[key]
''', "every coroutine awaited", "Event.wait"),
    "swallows its own cancellation": ('''
import asyncio

class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        self._tasks = {}

    async def get(self, key):
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = asyncio.create_task(self._fetch(key))

            def forget_if_failed(done):
                if done.cancelled() or done.exception() is not None:
                    del self._tasks[key]

            task.add_done_callback(forget_if_failed)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            return await task  # "the caller still wants its value"
''', "a cancelled caller stops waiting", "the cancellation was swallowed"),
    "a function, not a class": ('''
async def SingleFlightCache(fetch):
    return None
''', "is a class", "not a class"),
    "get is not async": ('''
class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch

    def get(self, key):
        return self._fetch(key)
''', "has an async get()", "plain method"),
    "stub": ('''
class SingleFlightCache:
    def __init__(self, fetch):
        self._fetch = fetch
        # YOUR CODE HERE
        raise NotImplementedError("write your solution here")

    async def get(self, key):
        # YOUR CODE HERE
        raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}

# The hint must fit what the code did: name: (property, a fragment of its hint).
HINTS = {
    "no de-duplication: check, await, then store": ("one fetch per key, however many ask",
                                                    "This is the check-then-act race"),
    "one lock for all keys": ("different keys fetched at the same time",
                              "One lock around all of get()"),
    "a lock per key: waiters retry after a failure": ("a failure reaches every waiter",
                                                      "Share the outcome, not just the turn"),
    "the failure is kept forever": ("a failure is not kept", "Forget a fetch that failed"),
    "an Event set only on success": ("a failure reaches every waiter",
                                     "A Task holds the exception too"),
    "the Task awaited without shield": ("a cancelled caller does not strand the others",
                                        "`asyncio.shield(task)`"),
    "the first caller fetches inline: cancelling it strands the waiters": (
        "a cancelled caller does not strand the others", "a CancelledError is not an Exception"),
    "the coroutine stored instead of a Task": ("every caller gets its value",
                                               "can be awaited only once"),
    "polling for the value": ("waiters get the value the moment it arrives", "Do not poll"),
    "forgotten await: the shielded task returned": ("every caller gets its value",
                                                    "`return await ...`"),
    "swallows its own cancellation": ("a cancelled caller stops waiting",
                                      "Let CancelledError propagate"),
}

# What the code did (Finding.diagnosis), as the check decides it before picking the hint.
DIAGNOSES = {
    "no de-duplication: check, await, then store": "check-then-act race",
    "one lock for all keys": "one lock for all keys",
    "a lock per key: waiters retry after a failure": "waiters retry after a failure",
    "the failure is kept forever": "failure kept forever",
    "an Event set only on success": "waiters never woken after a failure",
    "an Event set in finally, the error not shared": "failure not shared",
    "the Task awaited without shield": "cancellation spreads to the shared fetch",
    "the first caller fetches inline: cancelling it strands the waiters":
        "waiters stranded by a cancelled caller",
    "the coroutine stored instead of a Task": "coroutine awaited twice",
    "polling for the value": "polling",
    "forgotten await: the shielded task returned": "forgotten await",
    "swallows its own cancellation": "swallowed cancellation",
}

HIDDEN_SEEDS = [None, 42]


@lru_cache(maxsize=None)
def public_report(name):
    """The public check's report on one wrong solution (each is judged once, for every test)."""
    return check(define(WRONG[name][0], NAME))


@pytest.mark.parametrize("code", [REFERENCE, ALTERNATIVE], ids=["reference", "alternative"])
def test_correct_designs_pass_the_public_check(code):
    report = check(define(code, NAME))
    assert report.passed, report.text()
    assert len(report.findings) == 9, report.text()


@pytest.mark.parametrize("seed", HIDDEN_SEEDS)
def test_reference_passes_hidden_scenes_for_any_seed(seed):
    report = check_single_flight_cache(define(REFERENCE, NAME), variant="hidden", seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = public_report(name)
    assert not report.passed
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()


@pytest.mark.parametrize("name", sorted(HINTS))
def test_the_hint_fits_the_mistake(name):
    prop, fragment = HINTS[name]
    report = public_report(name)
    hints = {f.prop: f.hint for f in report.findings if not f.passed}
    assert fragment in hints[prop], report.text()


@pytest.mark.parametrize("name", sorted(DIAGNOSES))
def test_the_diagnosis_names_the_mistake(name):
    report = public_report(name)
    prop = WRONG[name][1]
    finding = next(f for f in report.findings if f.prop == prop)
    assert getattr(finding, "diagnosis", "") == DIAGNOSES[name], report.text()
    # Every failed finding of the exercise's own says what the code did.
    own = [f for f in report.findings if not f.passed and f.prop not in
           ("every coroutine awaited", "never blocks the event loop")]
    assert all(getattr(f, "diagnosis", "") for f in own), report.text()


def test_stub_gets_only_the_not_written_finding():
    report = public_report("stub")
    assert [(f.prop, f.passed) for f in report.findings] == [("written", False)], report.text()


@pytest.mark.parametrize("name, seed", [
    ("no de-duplication: check, await, then store", None), ("one lock for all keys", 5),
    ("an Event set only on success", 11), ("the Task awaited without shield", 23)])
def test_hidden_scenes_reject_them_too(name, seed):
    code, prop, _ = WRONG[name]
    report = check_single_flight_cache(define(code, NAME), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()


def test_one_lock_for_all_keys_is_correct_but_serial():
    """The diagnoses are specific: one lock for all keys gives every caller its value, once."""
    report = public_report("one lock for all keys")
    failed = failed_props(report)
    assert "every caller gets its value" not in failed
    assert "one fetch per key, however many ask" not in failed


def test_hidden_scenes_are_meaningful_for_any_seed():
    for seed in range(40):
        rush, outage, walk = scenes("hidden", seed)
        # The rush: at least two keys' fetches overlap; callers come while each fetch runs
        # and after it ended.
        keys = rush.keys()
        assert len(keys) == 3
        assert any(rush.first_at(b) < rush.first_end(a) for a in keys for b in keys if a != b)
        for key in keys:
            during = [a for a in rush.asks if a.key == key and a.at < rush.first_end(key)]
            assert len(during) >= 2, (seed, key)
        assert sum(a.at > rush.first_end(a.key) for a in rush.asks) == 2
        # The outage: 2+ waiters before the failure, one caller after it.
        (key,) = outage.keys()
        assert outage.failures == {key: 1}
        assert sum(a.at < outage.first_end(key) for a in outage.asks) >= 2
        assert sum(a.at > outage.first_end(key) for a in outage.asks) == 1
        # The walk-away: one waiter from before the cancellation, one after it, both before
        # the fetch ends.
        first, before, after = walk.asks
        end = walk.first_end(walk.keys()[0])
        assert first.at == 0 and 0 < before.at < first.cancel_at < after.at < end, seed


def test_report_text_is_deterministic():
    name = "one lock for all keys"
    assert check(define(WRONG[name][0], NAME)).text() == public_report(name).text()
