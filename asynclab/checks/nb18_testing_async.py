"""Checks for notebook 18_testing_async: the learner's tests for ``RateLimiter``.

The learner writes a class ``TestRateLimiter`` whose ``async def test_...(self,
limiter_cls)`` methods build every limiter with ``limiter_cls``. The check runs
each test on virtual time, once with the correct ``asynclab.ratelimit.RateLimiter``
(every test must pass, take no real time, and be able to fail at all) and once
with each broken limiter below (at least one test must fail for each). A test
that fails on the correct limiter says nothing about a broken one, so only the
tests that pass on the correct limiter count as catching.
"""

from __future__ import annotations

import asyncio
import dis
import inspect
import linecache
import random
import time
import types
from dataclasses import dataclass
from typing import Any, Callable

from asynclab.checking import Observation, Report
from asynclab.ratelimit import RateLimiter
from asynclab.timeline import trace, traced
from asynclab.vtime import HangError, run_virtual

NOTEBOOK = "18_testing_async"
EXERCISE = "TestRateLimiter"
MAX_VIRTUAL_S = 600.0  # ten virtual minutes per test: far more than any test of this limiter needs
WALL_LIMIT_S = 5.0  # a test still running after this much real time is stopped
REAL_TIME_BUDGET_S = 2.0  # a test on virtual time takes milliseconds; this is a generous bound


# -- the broken limiters: each one is a bug a real limiter has had ------------------------------


class NoLimit(RateLimiter):
    """Lets everyone in at once: acquire() returns straight away."""

    async def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None


class OneTooMany(RateLimiter):
    """An off-by-one in its count: max_at_once + 1 callers get in."""

    def __init__(self, max_per_s: float, max_at_once: int) -> None:
        super().__init__(max_per_s, max_at_once)
        self._slots = asyncio.Semaphore(max_at_once + 1)


class KeepsSlotOnError(RateLimiter):
    """Gives the slot back only when the block ends without an exception."""

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.release()


class AsyncWithSkipsAcquire(RateLimiter):
    """``async with`` forgets to await acquire(): that form limits nothing (acquire() works)."""

    async def __aenter__(self) -> "AsyncWithSkipsAcquire":
        forgotten = self.acquire()  # the bug: no await, so acquire() never runs
        forgotten.close()  # (closed here so that Python does not warn about it later)
        return self


class BurstAfterIdle(RateLimiter):
    """Books turns on a schedule that an idle period leaves behind: after a pause, a burst."""

    async def _wait_for_turn(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last_start is None:
            self._last_start = loop.time() - self._interval_s
        start = self._last_start + self._interval_s  # the next turn on the schedule
        self._last_start = start
        if start > loop.time():
            await asyncio.sleep(start - loop.time())


class OneAtATime(RateLimiter):
    """Holds one lock from acquire() to release(): callers go in one at a time."""

    def __init__(self, max_per_s: float, max_at_once: int) -> None:
        super().__init__(max_per_s, max_at_once)
        self._whole_call = asyncio.Lock()

    async def acquire(self) -> None:
        await self._whole_call.acquire()
        try:
            await super().acquire()
        except BaseException:
            self._whole_call.release()
            raise

    def release(self) -> None:
        super().release()
        self._whole_call.release()


class BlockingWait(RateLimiter):
    """Waits for its turn with time.sleep: it blocks the loop, and the loop's clock stands still."""

    async def _wait_for_turn(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last_start is not None:
            wait_s = self._last_start + self._interval_s - loop.time()
            if wait_s > 0:
                time.sleep(wait_s)  # the bug; the check's blocking detector skips the real wait
        self._last_start = loop.time()


class KeepsSlotWhenCancelled(RateLimiter):
    """A caller cancelled while it waits for its turn keeps its slot for ever."""

    async def acquire(self) -> None:
        await self._slots.acquire()
        await self._wait_for_turn()


class OtherInsides:
    """A correct limiter with other insides: it keeps a RateLimiter where tests cannot see it.

    The hidden check runs the learner's tests on it too: a test that reads private
    attributes (``limiter._slots``) or checks the class pins one implementation, not the
    promises, and fails here.
    """

    def __init__(self, max_per_s: float, max_at_once: int) -> None:
        self.max_per_s, self.max_at_once = max_per_s, max_at_once
        self.__inner = RateLimiter(max_per_s, max_at_once)

    async def acquire(self) -> None:
        await self.__inner.acquire()

    def release(self) -> None:
        self.__inner.release()

    async def __aenter__(self) -> "OtherInsides":
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()


@dataclass(frozen=True)
class Bug:
    name: str  # what the finding is called: "catches: <name>"
    limiter: type
    what: str  # "a limiter that ...", for the messages
    hint: str  # what kind of test catches it, when none of the learner's did


BUGS: list[Bug] = [
    Bug("no limit at all", NoLimit,
        "a limiter that lets everyone in at once",
        "Start more callers than max_at_once at the same moment and record, on the loop's clock, "
        "when each one enters and leaves; assert how many were inside at the peak, and how far "
        "apart the entries were. Checking only what the calls returned cannot see this bug."),
    Bug("one caller too many", OneTooMany,
        "a limiter that lets max_at_once + 1 callers in",
        "Count how many callers are inside at the same time (a counter you raise on entry and "
        "lower on exit, and its maximum) and assert it never goes above max_at_once; give each "
        "caller a long enough body (await asyncio.sleep(...)) that they overlap."),
    Bug("callers let in one at a time", OneAtATime,
        "a limiter that lets callers in one at a time, whatever max_at_once says",
        "Assert that the peak number inside reaches max_at_once, not only that it stays at or "
        "below it: a limiter that lets one caller in at a time respects every upper bound."),
    Bug("entries not spaced in time", BlockingWait,
        "a limiter that waits for the next turn with time.sleep",
        "Record loop.time() at each entry and assert that consecutive entries are at least "
        "1 / max_per_s apart. (This limiter waits with time.sleep: the loop's clock stands "
        "still, so on the clock its callers all go in at once.)"),
    Bug("a burst after an idle pause", BurstAfterIdle,
        "a limiter that lets a burst in after an idle pause",
        "Let the limiter sit idle for a while (await asyncio.sleep(10) costs nothing on "
        "virtual time), then start several callers at once: only one may go in at once, the "
        "next a full interval later."),
    Bug("slot kept after an exception", KeepsSlotOnError,
        "a limiter that keeps the slot when the `async with` block raises",
        "Raise an exception inside `async with limiter:` (and catch it in the test), then check "
        "that another caller still gets in. Wrap that wait in `async with asyncio.timeout(...)` "
        "so that a leaked slot makes the test fail instead of waiting for ever."),
    Bug("async with does not acquire", AsyncWithSkipsAcquire,
        "a limiter whose `async with` does not acquire (acquire() works)",
        "Test the `async with limiter:` form as well as acquire()/release(): this limiter's "
        "acquire() works, but its `async with` lets everyone in."),
    Bug("slot kept by a cancelled waiter", KeepsSlotWhenCancelled,
        "a limiter that keeps the slot of a caller cancelled while it waits for its turn",
        "Start a caller that has to wait for its turn (an earlier caller has just gone in), "
        "cancel it while it waits, then check that later callers still get in (inside "
        "asyncio.timeout, so that a leaked slot fails the test instead of hanging it)."),
]


# -- looking at the learner's tests --------------------------------------------------------------


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_code_objects(const))
    return found


def _reachable_code(fn: Callable[..., Any], owner: type | None = None) -> list[types.CodeType]:
    """The code of ``fn``, of the functions nested in it, and of the helpers it calls by name
    (module-level functions, and methods of ``owner`` called as ``self.helper(...)``)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    namespace = getattr(fn, "__globals__", {})
    seen: dict[int, types.CodeType] = {}
    todo = [code]
    while todo:
        for each in _code_objects(todo.pop()):
            if id(each) in seen:
                continue
            seen[id(each)] = each
            for ins in dis.get_instructions(each):
                if not isinstance(ins.argval, str):
                    continue
                helper = namespace.get(ins.argval) if ins.opname == "LOAD_GLOBAL" else None
                if helper is None and owner is not None and ins.opname in ("LOAD_ATTR",
                                                                           "LOAD_METHOD"):
                    helper = inspect.getattr_static(owner, ins.argval, None)
                    helper = getattr(helper, "__func__", helper)
                if isinstance(helper, types.FunctionType):
                    todo.append(helper.__code__)
    return list(seen.values())


def can_fail(fn: Callable[..., Any], owner: type | None = None) -> bool:
    """Whether a test (with the helpers it calls) holds anything that fails a test: an
    ``assert``, ``pytest.raises``/``pytest.fail``, ``self.assert...``, or a timeout around a wait
    (which fails the test with TimeoutError)."""
    if getattr(fn, "__code__", None) is None:
        return True  # not plain Python code: give it the benefit of the doubt
    for each in _reachable_code(fn, owner):
        for ins in dis.get_instructions(each):
            if ins.opname == "LOAD_ASSERTION_ERROR":
                return True
            if isinstance(ins.argval, str) and (
                    ins.argval in ("raises", "fail", "timeout", "wait_for", "timeout_at")
                    or ins.argval.startswith("assert")):
                return True
    return False


def reads_wall_clock(fn: Callable[..., Any]) -> bool:
    """Whether a test reads the real clock (time.monotonic(), time.perf_counter(), time.time())."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    for each in _code_objects(code):
        previous = None
        for ins in dis.get_instructions(each):
            if ins.argval in ("monotonic", "perf_counter", "monotonic_ns", "perf_counter_ns"):
                return True
            if ins.argval == "time" and previous is not None and previous.argval == "time" \
                    and ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                return True
            previous = ins
    return False


def _failure_place(exc: BaseException, fn: Callable[..., Any]) -> str:
    """``line 12: `assert peak == 2``` for the innermost frame of the learner's test code."""
    codes = {id(c) for c in _code_objects(fn.__code__)} if hasattr(fn, "__code__") else set()
    tb, place = exc.__traceback__, ""
    while tb is not None:
        if id(tb.tb_frame.f_code) in codes:
            source = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
            place = f"line {tb.tb_lineno}" + (f": `{source}`" if source else "")
        tb = tb.tb_next
    return place


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class TestRun:
    name: str
    obs: Observation
    wall_s: float

    @property
    def failed(self) -> bool:
        return self.obs.hang is not None or self.obs.error is not None


def run_test(cls: type, name: str, limiter_cls: type) -> TestRun:
    """Run one test method on virtual time with ``limiter_cls``, in a fresh instance, traced.

    Like ``asynclab.checking.observe`` without its garbage collection (which
    costs a notebook kernel tenths of a second per run, and a check runs
    every test many times).
    """
    fn = getattr(cls, name)
    obs = Observation()

    async def traced_call() -> Any:
        with trace() as timeline:
            obs.timeline = timeline
            return await traced(getattr(cls(), name)(limiter_cls=limiter_cls), name=name)

    started = time.perf_counter()
    try:
        run = run_virtual(traced_call, max_virtual_s=MAX_VIRTUAL_S, wall_limit_s=WALL_LIMIT_S,
                          namespaces=(getattr(fn, "__globals__", {}),))
    except HangError as exc:
        obs.hang = exc
    else:
        obs.result, obs.error, obs.elapsed = run.result, run.error, run.elapsed
        obs.blocking_calls = run.blocking_calls
    if obs.timeline is not None and obs.timeline.t1 is None:
        obs.timeline.t1 = obs.timeline.t0 + obs.elapsed
    return TestRun(name, obs, time.perf_counter() - started)


def fails_with(cls: type, name: str, limiter_cls: type) -> bool:
    """Whether one test fails (raises or never finishes) with ``limiter_cls``.

    Cheaper than ``run_test``: no timeline and no garbage collection per run,
    which matters because every test runs once per broken limiter.
    """
    fn = getattr(cls, name)
    try:
        run = run_virtual(lambda: getattr(cls(), name)(limiter_cls=limiter_cls),
                          max_virtual_s=MAX_VIRTUAL_S, wall_limit_s=WALL_LIMIT_S,
                          namespaces=(getattr(fn, "__globals__", {}),))
    except HangError:
        return True
    return run.error is not None


def collect_test_names(cls: type) -> list[str]:
    """The test methods, in the order the class defines them (its bases' first)."""
    names: list[str] = []
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in vars(klass).items():
            if name.startswith("test") and callable(value) and name not in names:
                names.append(name)
    return names


def _takes_limiter_cls(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]  # after self
    except (TypeError, ValueError):
        return False
    named = {p.name for p in params}
    required = {p.name for p in params if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return ("limiter_cls" in named or any(p.kind is p.VAR_KEYWORD for p in params)) \
        and required <= {"limiter_cls"}


# -- the check -----------------------------------------------------------------------------------


def _why_it_failed(run: TestRun, fn: Callable[..., Any]) -> str:
    obs = run.obs
    if obs.hang is not None:
        return f"{run.name} did not finish: {obs.hang}"
    exc = obs.error
    assert exc is not None
    place = _failure_place(exc, fn)
    return f"{run.name} raised {_describe(exc)}" + (f" ({place})" if place else "")


def check_tests(cls: Any, *, variant: str = "public", seed: int | None = None) -> Report:
    """Judge the learner's ``TestRateLimiter`` class.

    Properties: it has async test methods that take ``limiter_cls``; every test
    passes on the correct limiter, and again when run a second time (no state
    kept between runs); every test can fail at all (it asserts something); no
    test takes real time (``time.sleep``, a real wait); each of the broken
    limiters in ``BUGS`` makes at least one valid test fail. The
    hidden variant runs the tests in an order drawn from ``seed``, and also on
    ``OtherInsides``, a correct limiter built differently: tests of private
    details (``limiter._slots``) fail there.
    """
    report = Report(EXERCISE)
    if not isinstance(cls, type):
        report.add("defined", False, f"{EXERCISE} is not a class (it is {type(cls).__name__}).",
                   f"Write `class {EXERCISE}:` with one `async def test_...(self, limiter_cls)` "
                   "method per behaviour you test.")
        return report
    names = collect_test_names(cls)
    if not names:
        report.add("has tests", False, f"{EXERCISE} has no test methods (their names must start "
                   "with `test`).", "Add methods like `async def test_at_most_max_at_once(self, "
                   "limiter_cls):`.")
        return report
    plain = [n for n in names if not inspect.iscoroutinefunction(getattr(cls, n))]
    if plain:
        report.add("tests are coroutine functions", False,
                   f"{plain[0]} is a plain function, not a coroutine function",
                   f"Define it with `async def {plain[0]}(self, limiter_cls):` so that it can "
                   "await the limiter.")
        return report
    no_param = [n for n in names if not _takes_limiter_cls(getattr(cls, n))]
    if no_param:
        report.add("tests take limiter_cls", False,
                   f"{no_param[0]} does not take the parameter limiter_cls (the check hands each "
                   "test the limiter class to test, and nothing else)",
                   f"Write `async def {no_param[0]}(self, limiter_cls):` and build every limiter "
                   "with `limiter_cls(max_per_s=..., max_at_once=...)`.")
        return report

    order = list(names)
    if variant != "public":
        random.Random(2026 if seed is None else seed).shuffle(order)
    runs = {name: run_test(cls, name, RateLimiter) for name in order}
    report.timeline = runs[names[0]].obs.timeline

    stubs = [n for n in names if isinstance(runs[n].obs.error, NotImplementedError)]
    if stubs:
        report.add("written", False, f"{stubs[0]} is not written yet (it raised "
                   "NotImplementedError).", "Replace the `raise NotImplementedError` line with "
                   "your test, run the cell, then run this check again.")
        return report

    # 1. Every test passes on the correct limiter.
    wrong = [n for n in names if runs[n].failed]
    # Each test that passed runs once more: a test that keeps state from one run to the next
    # (a list at class level) would otherwise "catch" every broken limiter run after it.
    again = {n: run_test(cls, n, RateLimiter) for n in order if n not in wrong}
    stale = [n for n in names if n in again and again[n].failed]
    # The hidden check: the same promises kept by other insides must pass the tests too.
    other = {} if variant == "public" else {
        n: run_test(cls, n, OtherInsides) for n in order if n not in wrong and n not in stale}
    coupled = [n for n in names if n in other and other[n].failed]
    if wrong:
        report.timeline = runs[wrong[0]].obs.timeline
        fn = getattr(cls, wrong[0])
        first = runs[wrong[0]]
        if reads_wall_clock(fn):
            hint = ("The limiter waits on the event loop's clock, which is virtual here: use "
                    "`asyncio.get_running_loop().time()` for every time you record. "
                    "time.monotonic() and time.perf_counter() barely move while it waits.")
        elif first.obs.hang is not None:
            hint = ("The test waits for something the correct limiter never does. Put a "
                    "timeout around waits that may never end, and check what you expect.")
        elif isinstance(first.obs.error, AssertionError):
            hint = ("The correct limiter fails this test, so the expectation is wrong, not the "
                    "limiter: print what you recorded, and reread the RateLimiter docstring for "
                    "what it promises (and what it does not).")
        else:
            hint = "Run the test by hand on RateLimiter to see where it fails."
        message = (f"{len(wrong)} of {len(names)} tests fail on the correct RateLimiter: "
                   f"{_why_it_failed(runs[wrong[0]], getattr(cls, wrong[0]))}")
    elif stale:
        report.timeline = again[stale[0]].obs.timeline
        hint = ("Keep what a test records in local variables (or in attributes it sets "
                "itself): every run of a test must start from scratch, whatever ran before.")
        why = _why_it_failed(again[stale[0]], getattr(cls, stale[0])).removeprefix(stale[0] + " ")
        message = (f"{stale[0]} passes once, then fails when run again: {why}; it keeps "
                   "state from one run to the next (a list at class level?)")
    elif coupled:
        report.timeline = other[coupled[0]].obs.timeline
        hint = ("Test what the docstring promises, through acquire(), release() and `async "
                "with` only: a test that reads private attributes (limiter._slots) or checks "
                "the class fails on every other correct limiter.")
        why = _why_it_failed(other[coupled[0]], getattr(cls, coupled[0])).removeprefix(
            coupled[0] + " ")
        message = (f"{coupled[0]} fails on another correct limiter (the same promises, other "
                   f"insides): {why}")
    else:
        hint, message = "", "every test passes on the correct RateLimiter"
    report.add("passes on the correct limiter", not (wrong or stale or coupled), message, hint)
    wrong += stale + coupled

    # 2. Every test can fail.
    idle = [n for n in names if not can_fail(getattr(cls, n), cls)]
    report.add("every test can fail", not idle,
               "every test asserts something" if not idle else
               f"{idle[0]} asserts nothing: it passes whatever the limiter does"
               + (f" (and so do {len(idle) - 1} more)" if len(idle) > 1 else ""),
               "A test must end by checking what it observed: `assert peak == 2`, "
               "`assert gaps == [...]`. Running the code without asserting proves only that it "
               "does not crash.")

    # 3. No real time.
    sleepers = [n for n in names if runs[n].obs.blocking_calls]
    slow = [n for n in names if runs[n].wall_s > REAL_TIME_BUDGET_S and n not in sleepers]
    if sleepers:
        message = (f"{sleepers[0]} sleeps for real: "
                   f"{runs[sleepers[0]].obs.blocking_calls[0].where()}")
    elif slow:
        message = f"{slow[0]} took {runs[slow[0]].wall_s:.1f} s of real time"
    else:
        message = "no test waits in real time (virtual time throughout)"
    report.add("no real waiting", not sleepers and not slow, message,
               "Wait with `await asyncio.sleep(...)`: on the virtual clock a minute costs "
               "nothing. time.sleep stops the event loop, costs real seconds, and the loop's clock "
               "does not even move while it sleeps.")

    # 4. Each broken limiter is caught by a valid test.
    valid = [n for n in order if n not in wrong and n not in sleepers and n not in slow
             and can_fail(getattr(cls, n), cls)]
    if not valid:
        report.add("catches broken limiters", False,
                   f"none of your tests can tell a broken limiter from the correct one yet: a "
                   f"test counts once it passes on the correct limiter, asserts something and "
                   f"waits on virtual time only (there are {len(BUGS)} broken limiters to catch)",
                   "Fix the findings above first.")
        return report
    for bug in BUGS:
        catcher = next((name for name in valid if fails_with(cls, name, bug.limiter)), None)
        if catcher:
            # The same words whichever test caught it: a passing check prints what the
            # reference's printed (the course's rule for check outputs).
            report.add(f"catches: {bug.name}", True, f"one of your tests fails on {bug.what}")
        else:
            tests = "your test passes" if len(valid) == 1 else \
                f"all {len(valid)} of your valid tests pass"
            report.add(f"catches: {bug.name}", False, f"{tests} on {bug.what}", bug.hint)
    return report


EXERCISES = {EXERCISE: check_tests}
