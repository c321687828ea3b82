"""The TestRateLimiter check passes good tests and rejects the test suites learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from asynclab.checks.nb18_testing_async import BUGS, can_fail, check_tests
from asynclab.ratelimit import RateLimiter
from conftest import define, failed_props

REFERENCE = '''
import asyncio

import pytest


class TestRateLimiter:
    async def test_peak_inside_is_max_at_once(self, limiter_cls):
        limiter = limiter_cls(max_per_s=100, max_at_once=3)
        inside = peak = 0

        async def caller():
            nonlocal inside, peak
            async with limiter:
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(1)
                inside -= 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(10):
                tg.create_task(caller())
        assert peak == 3

    async def test_entries_are_spaced(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=10)
        assert await self.entry_times(limiter, 5) == [0, 0.25, 0.5, 0.75, 1.0]

    async def test_no_burst_after_an_idle_pause(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=10)
        async with limiter:
            pass
        await asyncio.sleep(60)
        assert await self.entry_times(limiter, 3) == [0, 0.25, 0.5]

    async def test_slot_given_back_after_an_exception(self, limiter_cls):
        limiter = limiter_cls(max_per_s=100, max_at_once=1)
        with pytest.raises(RuntimeError):
            async with limiter:
                raise RuntimeError("the call failed")
        async with asyncio.timeout(10):
            async with limiter:
                pass

    async def test_cancelled_waiter_gives_its_slot_back(self, limiter_cls):
        limiter = limiter_cls(max_per_s=1, max_at_once=1)
        await limiter.acquire()
        limiter.release()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.5)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        async with asyncio.timeout(10):
            await limiter.acquire()
        limiter.release()

    @staticmethod
    async def entry_times(limiter, n):
        loop = asyncio.get_running_loop()
        start = loop.time()
        entries = []

        async def caller():
            async with limiter:
                entries.append(loop.time() - start)

        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(caller())
        return entries
'''


def reference_without(*names: str) -> str:
    """The reference with some test methods renamed so that they are no longer tests."""
    code = REFERENCE
    for name in names:
        code = code.replace(f"def {name}(", f"def skipped_{name}(")
    return code


# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "asserts nothing": ('''
import asyncio

class TestRateLimiter:
    async def test_many_callers(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=2)

        async def caller():
            async with limiter:
                await asyncio.sleep(1)

        await asyncio.gather(*(caller() for _ in range(6)))
''', "every test can fail", "test_many_callers asserts nothing"),
    "only return values": ('''
import asyncio

class TestRateLimiter:
    async def test_results_come_back(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=2)

        async def square(x):
            async with limiter:
                await asyncio.sleep(0.5)
                return x * x

        assert await asyncio.gather(*(square(x) for x in range(6))) == [0, 1, 4, 9, 16, 25]
''', "catches: no limit at all", "your test passes on a limiter that lets everyone in at once"),
    "sleeps in real time": ('''
import asyncio
import time

class TestRateLimiter:
    async def test_entries_are_spaced(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=10)
        loop = asyncio.get_running_loop()
        async with limiter:
            first = loop.time()
        time.sleep(0.3)  # "let the interval pass"
        async with limiter:
            second = loop.time()
        assert second - first >= 0.25
''', "no real waiting", "sleeps for real: time.sleep(0.3)"),
    "wrong expectation": ('''
import asyncio

class TestRateLimiter:
    async def test_four_per_second_go_in_together(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=10)
        loop = asyncio.get_running_loop()
        entries = []

        async def caller():
            async with limiter:
                entries.append(loop.time())

        await asyncio.gather(*(caller() for _ in range(4)))
        assert max(entries) - min(entries) < 0.25  # "4 per second may start at once"
''', "passes on the correct limiter", "raised AssertionError"),
    "measures with the wall clock": ('''
import asyncio
import time

class TestRateLimiter:
    async def test_entries_are_spaced(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=10)
        started = time.monotonic()
        for _ in range(5):
            async with limiter:
                pass
        assert time.monotonic() - started >= 1.0
''', "passes on the correct limiter", "raised AssertionError"),
    "misses the exception case": (
        reference_without("test_slot_given_back_after_an_exception"),
        "catches: slot kept after an exception",
        "pass on a limiter that keeps the slot when the `async with` block raises"),
    "only an upper bound": (
        REFERENCE.replace("assert peak == 3", "assert peak <= 3"),
        "catches: callers let in one at a time", "lets callers in one at a time"),
    "misses cancellation": (
        reference_without("test_cancelled_waiter_gives_its_slot_back"),
        "catches: slot kept by a cancelled waiter", "cancelled while it waits for its turn"),
    "no idle pause": (
        reference_without("test_no_burst_after_an_idle_pause"),
        "catches: a burst after an idle pause", "burst in after an idle pause"),
    "state kept at class level": ('''
import asyncio

class TestRateLimiter:
    entries = []  # shared by every run of every test

    async def test_entries_are_spaced(self, limiter_cls):
        loop = asyncio.get_running_loop()
        limiter = limiter_cls(max_per_s=4, max_at_once=10)

        async def caller():
            async with limiter:
                self.entries.append(loop.time())

        await asyncio.gather(*(caller() for _ in range(3)))
        assert self.entries == [0, 0.25, 0.5]
''', "passes on the correct limiter", "passes once, then fails when run again"),
    "plain test functions": ('''
class TestRateLimiter:
    def test_limit(self, limiter_cls):
        assert limiter_cls(max_per_s=4, max_at_once=2)
''', "tests are coroutine functions", "test_limit is a plain function"),
    "forgets the parameter": ('''
from asynclab.ratelimit import RateLimiter

class TestRateLimiter:
    async def test_limit(self):
        limiter = RateLimiter(max_per_s=4, max_at_once=2)
        async with limiter:
            assert True
''', "tests take limiter_cls", "does not take the parameter limiter_cls"),
    "no tests": ('''
class TestRateLimiter:
    async def check_limit(self, limiter_cls):
        assert limiter_cls
''', "has tests", "no test methods"),
    "stub": ('''
class TestRateLimiter:
    async def test_peak_inside_is_max_at_once(self, limiter_cls):
        raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


def test_every_broken_limiter_is_really_broken_and_the_reference_is_not():
    """Sanity of the check's own material: each bug shows on virtual time, RateLimiter passes."""
    tests = define(REFERENCE, "TestRateLimiter")
    report = check_tests(tests)
    assert report.passed, report.text()
    assert [f.prop for f in report.findings][-len(BUGS):] == [f"catches: {b.name}" for b in BUGS]


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "TestRateLimiter"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("seed", [1, 7, 123])
def test_reference_passes_hidden_seeds(seed):
    report = check_tests(define(REFERENCE, "TestRateLimiter"), variant="hidden", seed=seed)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "TestRateLimiter"))
    assert not report.passed
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()


def test_the_stub_only_says_not_written_yet():
    report = check(define(WRONG["stub"][0], "TestRateLimiter"))
    assert [f.prop for f in report.findings] == ["written"], report.text()


def test_wall_clock_hint_names_the_loop_clock():
    report = check(define(WRONG["measures with the wall clock"][0], "TestRateLimiter"))
    finding = next(f for f in report.findings if f.prop == "passes on the correct limiter")
    assert "asyncio.get_running_loop().time()" in finding.hint


def test_a_test_without_asserts_catches_nothing_and_is_not_counted():
    report = check(define(WRONG["asserts nothing"][0], "TestRateLimiter"))
    failed = failed_props(report)
    assert "none of your tests can tell a broken limiter" in failed["catches broken limiters"]


def test_an_assert_in_a_helper_counts():
    code = '''
def check_peak(peak):
    assert peak == 2

class TestRateLimiter:
    async def test_peak(self, limiter_cls):
        check_peak(2)

    async def test_method_helper(self, limiter_cls):
        self.expect(True)

    def expect(self, value):
        assert value
'''
    cls = define(code, "TestRateLimiter")
    assert can_fail(cls.test_peak, cls) and can_fail(cls.test_method_helper, cls)


def test_not_a_class():
    report = check(define("async def TestRateLimiter(limiter_cls):\n    assert True\n",
                          "TestRateLimiter"))
    assert failed_props(report) == {"defined": "TestRateLimiter is not a class (it is function)."}


def test_report_text_is_deterministic():
    cls = define(WRONG["only return values"][0], "TestRateLimiter")
    assert check(cls).text() == check(cls).text()


def test_rate_limiter_rejects_nonsense():
    with pytest.raises(ValueError):
        RateLimiter(max_per_s=0, max_at_once=1)
    with pytest.raises(ValueError):
        RateLimiter(max_per_s=1, max_at_once=0)


def test_the_solution_notebook_passes_and_its_exercise_is_the_stub(root):
    import nbformat

    def answer(folder: str) -> str:
        nb = nbformat.read(root / folder / "18_testing_async.ipynb", as_version=4)
        return next(c.source for c in nb.cells if "answer" in c.metadata.get("tags", []))

    namespace_code = "import asyncio\nimport pytest\n"
    assert check(define(namespace_code + answer("solutions"), "TestRateLimiter")).passed
    stub = check(define(namespace_code + answer("exercises"), "TestRateLimiter"))
    assert [f.prop for f in stub.findings] == ["written"], stub.text()


def test_a_passing_report_reads_the_same_whatever_the_tests_are_called():
    """The course's rule: a passing check prints what the reference's check printed."""
    renamed = REFERENCE.replace("def test_", "def test_renamed_").replace(
        "async def test_renamed_entries_are_spaced", "async def test_renamed_entries_are_spaced")
    ours = check(define(REFERENCE, "TestRateLimiter"))
    theirs = check(define(renamed, "TestRateLimiter"))
    assert theirs.passed and theirs.text() == ours.text()


PRIVATE = REFERENCE.replace("    @staticmethod", """    async def test_three_slots_at_first(self, limiter_cls):
        limiter = limiter_cls(max_per_s=4, max_at_once=3)
        assert limiter._slots._value == 3

    @staticmethod""")


def test_tests_of_private_insides_pass_public_but_fail_hidden():
    cls = define(PRIVATE, "TestRateLimiter")
    assert check(cls).passed
    report = check(cls, variant="hidden")
    failed = failed_props(report)
    assert "fails on another correct limiter" in failed["passes on the correct limiter"], \
        report.text()
    assert "_slots" in failed["passes on the correct limiter"]
