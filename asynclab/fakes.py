"""Fake I/O services that record what a learner's code did to them.

Exercises take their I/O as a parameter (a ``fetch`` coroutine, a client), so a
check can hand in one of these and then read off, on the loop's clock, how many
calls were in flight at once, when each started and ended, which ones were
cancelled, and in what order things happened.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from asynclab.blocking import blocking
from asynclab.checking import awaitable_name
from asynclab.timeline import traced

if TYPE_CHECKING:  # only in annotations: the check module imports this one
    from asynclab.checks.nb13_retries import RetryScenario

__all__ = ["Call", "FakeService", "ServiceError"]


class ServiceError(ConnectionError):
    """A failure the fake service was told to raise."""


@dataclass
class Call:
    """One call to a fake service."""

    key: str
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"
    task: object = None  # the asyncio task the call ran in (to see how that task ended)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class FakeService:
    """An async service whose latency and failures the check decides.

    ``latency_s`` maps a key to the virtual seconds a call takes (or is a
    function of the key); ``failures`` maps a key to how many of its first calls
    raise ``ServiceError``. ``fetch(key)`` returns ``result_for(key)``.

    Guarantees: every call is recorded in ``calls`` in the order it started, and
    ``max_in_flight`` is the largest number of calls that were running at once
    (a call that ends and one that starts at the same instant do not overlap).
    """

    def __init__(self, latency_s: Mapping[str, float] | Callable[[str], float],
                 failures: Mapping[str, int] | None = None) -> None:
        self._latency = latency_s
        self._failures = dict(failures or {})
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        # (time, in-flight count) after every change, for plots.
        self.history: list[tuple[float, int]] = [(0.0, 0)]

    @property
    def latency_s_map(self) -> dict[str, float]:
        """The configured latencies (empty when latency is a function)."""
        return {} if callable(self._latency) else dict(self._latency)

    @staticmethod
    def result_for(key: str) -> str:
        return f"data from {key}"

    def latency(self, key: str) -> float:
        if callable(self._latency):
            return float(self._latency(key))
        return float(self._latency[key])

    def _change(self, delta: int) -> None:
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.history.append((asyncio.get_running_loop().time(), self.in_flight))

    async def fetch(self, key: str) -> str:
        """Take ``latency(key)`` virtual seconds, then return or raise as configured."""
        loop = asyncio.get_running_loop()
        call = Call(str(key), loop.time(), task=asyncio.current_task())
        self.calls.append(call)
        self._change(+1)
        try:
            await asyncio.sleep(self.latency(key))
            if self._failures.get(key, 0) > 0:
                self._failures[key] -= 1
                call.outcome = "error"
                raise ServiceError(f"{key} is unavailable")
            call.outcome = "ok"
            return self.result_for(key)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            call.end = loop.time()
            self._change(-1)

    # -- reading ---------------------------------------------------------
    def calls_for(self, key: str) -> list[Call]:
        return [c for c in self.calls if c.key == key]

    def in_flight_series(self) -> tuple[list[float], list[int]]:
        """Times and in-flight counts, ready for a step plot."""
        times = [t for t, _ in self.history]
        counts = [n for _, n in self.history]
        return times, counts


# -- exercise 01: breakfast steps -------------------------------------------------------

class Kitchen:
    """Three breakfast steps as coroutine functions that record when they ran."""

    def __init__(self, minutes: dict[str, float]) -> None:
        self.minutes = minutes
        self.log: list[tuple[str, float, float]] = []  # (step, start, end)

    def step(self, name: str):
        async def run() -> str:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.sleep(self.minutes[name] * 60)
            self.log.append((name, start, loop.time()))
            return f"{name} ready"

        run.__name__ = run.__qualname__ = name
        return run


# -- exercise 02: a shop ----------------------------------------------------------------

class PaymentDeclined(Exception):
    """What ``Shop.charge`` raises for a declined card."""


class ReceiptNotSent(ConnectionError):
    """What ``Shop.send_receipt`` raises when the mail server is down (after the payment)."""


class OutOfStock(Exception):
    """What ``Shop.reserve`` raises when nothing is left to reserve (before any payment)."""


FAILURES = {"reserve": (OutOfStock, "out of stock for order {}"),
            "charge": (PaymentDeclined, "card declined for order {}"),
            "send_receipt": (ReceiptNotSent, "mail server down: no receipt for order {}")}


@dataclass
class ShopCall:
    """One call to the fake shop: which step, with what, when, and how it ended."""

    step: str
    args: tuple[str, ...]
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"
    bad_args: list[str] = field(default_factory=list)  # awaitables passed where values belong


class Shop:
    """A fake shop whose four steps take virtual time and record how they were used.

    ``reserve(order_id)`` returns ``"R-<order_id>"``; ``charge(order_id, reservation)``
    returns ``"P-<order_id>"``, or raises ``PaymentDeclined`` for the orders in
    ``declined``; ``send_receipt(order_id, payment)`` returns the receipt text;
    ``release(reservation)`` returns None.
    """

    def __init__(self, latency_s: dict[str, float] | None = None,
                 declined: frozenset[str] | set[str] = frozenset(),
                 failing_step: str | None = None) -> None:
        self.latency_s = {"reserve": 2.0, "charge": 3.0, "send_receipt": 1.0, "release": 1.0}
        self.latency_s.update(latency_s or {})
        self.declined = set(declined)
        self.failing_step = failing_step  # every call of this step fails
        self.calls: list[ShopCall] = []
        self.raised: list[Exception] = []

    @staticmethod
    def receipt_for(order_id: str, payment: str) -> str:
        return f"receipt for {order_id}, paid by {payment}"

    async def _step(self, step: str, *args: Any, fail: bool = False) -> None:
        call = ShopCall(step, tuple(str(a) if not inspect.isawaitable(a) else "?" for a in args),
                        asyncio.get_running_loop().time())
        for arg in args:
            if inspect.isawaitable(arg):
                call.bad_args.append(awaitable_name(arg))
                if inspect.iscoroutine(arg):
                    arg.close()  # reported by the check; no second warning later
        self.calls.append(call)
        try:
            await asyncio.sleep(self.latency_s[step])
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            call.end = asyncio.get_running_loop().time()
        if fail or step == self.failing_step:
            call.outcome = "error"
            kind, text = FAILURES[step]
            error = kind(text.format(args[0]))
            self.raised.append(error)
            raise error
        call.outcome = "ok"

    def _traced_step(self, step: str, *args: Any, fail: bool = False) -> Any:
        # A row of its own on the timeline of a check (and of a learner's trace()).
        return traced(self._step(step, *args, fail=fail), name=f"shop.{step}")

    async def reserve(self, order_id: str) -> str:
        """Hold the stock for ``order_id``; returns a reservation id."""
        await self._traced_step("reserve", order_id)
        return f"R-{order_id}"

    async def charge(self, order_id: str, reservation: str) -> str:
        """Charge the customer; returns a payment id, or raises PaymentDeclined."""
        await self._traced_step("charge", order_id, reservation, fail=order_id in self.declined)
        return f"P-{order_id}"

    async def release(self, reservation: str) -> None:
        """Give the reserved stock back."""
        await self._traced_step("release", reservation)

    async def send_receipt(self, order_id: str, payment: str) -> str:
        """Email the receipt; returns its text."""
        await self._traced_step("send_receipt", order_id, payment)
        if inspect.isawaitable(payment):
            return self.receipt_for(order_id, "?")
        return self.receipt_for(order_id, payment)

    def steps(self) -> list[str]:
        return [c.step for c in self.calls]


# -- exercise 03: work and a heartbeat's beat -------------------------------------------

# A heartbeat that never really waits (time.sleep, or no sleep at all) calls beat() over and
# over without virtual time passing; beat() then raises, so that the run can end and be judged.
MAX_BEATS = 300


class WorkFailed(Exception):
    """What the fake work raises in the failing scenario."""


@dataclass
class Watch:
    """What happened to the fakes, and what the learner's function left behind."""

    beats: list[float] = field(default_factory=list)
    work_calls: list[float] = field(default_factory=list)
    work_end: float | None = None
    returned_at: float | None = None
    left_running: int = 0  # tasks started by the function, not done, never cancelled
    left_cancelling: int = 0  # tasks cancelled by the function, not finished yet
    error: WorkFailed | None = None
    flood: bool = False  # beat() was called MAX_BEATS times


def make_fakes(work_s: float, fail: bool, watch: Watch):
    """``work()`` (waits ``work_s``, then returns or raises) and ``beat()`` (instant)."""

    async def _work() -> str:
        loop = asyncio.get_running_loop()
        watch.work_calls.append(loop.time())
        await asyncio.sleep(work_s)
        watch.work_end = loop.time()
        if fail:
            watch.error = WorkFailed(f"the work failed after {work_s:g} s")
            raise watch.error
        return f"work done after {work_s:g} s"

    async def work() -> str:
        return await traced(_work(), name="work")

    work.__qualname__ = "work"  # what a warning about a forgotten `await work()` calls it

    async def beat() -> None:
        if len(watch.beats) >= MAX_BEATS:
            watch.flood = True
            raise RuntimeError(f"beat() was called {MAX_BEATS} times in "
                               f"{watch.beats[-1] - watch.beats[0]:g} virtual s")
        watch.beats.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0)

    beat.__qualname__ = "beat"

    return work, beat


# -- exercise 04: microservices ---------------------------------------------------------

@dataclass
class NamedRun:
    """One run of a named fake (a service of exercise 04, a step of exercise 06), on the loop's
    clock."""

    name: str
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"


@dataclass
class Gateway:
    """Fake microservices: each takes its latency, then answers or raises its error."""

    plan: dict[str, tuple[float, BaseException | None]]
    calls: list[NamedRun] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    @staticmethod
    def answer_of(name: str) -> str:
        return f"{name} data"

    def service(self, name: str):
        latency, error = self.plan[name]

        async def call() -> str:
            loop = asyncio.get_running_loop()
            record = NamedRun(name, loop.time())
            self.calls.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(latency)
            except asyncio.CancelledError:
                record.outcome = "cancelled"
                raise
            finally:
                record.end = loop.time()
                self.in_flight -= 1
            if error is not None:
                record.outcome = "error"
                raise error
            record.outcome = "ok"
            return self.answer_of(name)

        call.__name__ = call.__qualname__ = name  # the timeline row and any warning name it
        return call

    def services(self) -> dict[str, Any]:
        return {name: self.service(name) for name in self.plan}

    def errors(self) -> list[BaseException]:
        return [error for _, error in self.plan.values() if error is not None]

    def calls_of(self, name: str) -> int:
        return sum(1 for c in self.calls if c.name == name)


# -- exercise 06: pipeline steps --------------------------------------------------------

@dataclass
class Steps:
    """Coroutine functions that wait a set time, record when they ran, and return a string."""

    seconds: dict[str, float]
    runs: list[NamedRun] = field(default_factory=list)

    @staticmethod
    def result_for(name: str) -> str:
        return f"{name} done"

    def step(self, name: str):
        async def work() -> str:
            loop = asyncio.get_running_loop()
            run = NamedRun(name, loop.time())
            self.runs.append(run)
            try:
                await asyncio.sleep(self.seconds[name])
            except asyncio.CancelledError:
                run.outcome = "cancelled"
                raise
            except BaseException:
                run.outcome = "error"
                raise
            finally:
                run.end = loop.time()
            run.outcome = "ok"
            return self.result_for(name)

        async def step() -> str:
            return await traced(work(), name=name)  # its own timeline row

        step.__name__ = step.__qualname__ = name
        return step

    def functions(self) -> list:
        return [self.step(name) for name in self.seconds]

    def running(self) -> list[str]:
        return [r.name for r in self.runs if r.outcome == "running"]

    def look(self) -> dict:
        return {"running": self.running()}


# -- exercise 07: releases --------------------------------------------------------------

@dataclass
class Releases:
    """``release(key)``, recording on the loop's clock when each key was released."""

    log: list[tuple[str, float]] = field(default_factory=list)

    def release(self, key: str) -> None:
        self.log.append((key, asyncio.get_running_loop().time()))


# -- exercise 09: a legacy directory and a job ------------------------------------------

# Real seconds a lookup waits for the others. A correct solution never waits it out (all
# lookups meet at once); a sequential one waits it out once, then the barrier is broken
# and every later lookup returns at once.
BARRIER_WAIT_S = 1.0


# How long a lookup in a worker thread waits for the event loop to get a turn: the loop's thread
# goes from handing the work over to waiting for it in microseconds, far less than this.
LOOP_TURN_WAIT_S = 0.3


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LegacyDirectory:
    """A blocking, thread-safe lookup: ``lookup(key)`` returns ``"value of <key>"``."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties)
        self.calls: list[str] = []
        self.overlapped = True
        self.on_loop = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the check before the call
        self.loop_held = False  # a lookup found the loop's thread busy waiting (executor.map)
        self._lock = threading.Lock()

        def legacy_lookup(key: str) -> str:
            """Look ``key`` up in the old directory; blocks its thread until the answer comes."""
            return self._lookup(key)

        self.lookup = blocking(legacy_lookup)

    def _lookup(self, key: str) -> str:
        with self._lock:
            self.calls.append(key)
        if _on_event_loop_thread():  # recorded by @blocking; never wait on the loop's thread
            self.on_loop += 1
            self.overlapped = False
            return f"value of {key}"
        self._loop_turn()
        try:
            self.barrier.wait(timeout=BARRIER_WAIT_S)
        except threading.BrokenBarrierError:
            self.overlapped = False
        return f"value of {key}"

    def _loop_turn(self) -> None:
        """Answer only once the event loop has had a turn since this lookup started.

        Code that awaits the threads (to_thread, run_in_executor) gives the loop its turn
        at once. Code that waits for them *on* the loop's thread (``executor.map``,
        ``future.result()``) does not, so no answer can be ready when it starts waiting:
        its wait is seen every time, not only when the threads happen to be slow.
        """
        loop = self.loop
        if loop is None:
            return
        turn = threading.Event()
        try:
            loop.call_soon_threadsafe(turn.set)
        except RuntimeError:  # the loop is closed
            return
        if not turn.wait(LOOP_TURN_WAIT_S):
            self.loop_held = True


class JobFailed(Exception):
    """The error the failing job raises; it must reach the caller unchanged."""


class Job:
    """A job that takes ``duration_s`` (and fails if told to) and a cleanup that must run."""

    def __init__(self, duration_s: float, cleanup_s: float, fail: bool = False) -> None:
        self.duration_s = duration_s
        self.cleanup_s = cleanup_s
        self.fail = fail
        self.cleanups = 0

    async def run(self) -> str:
        await asyncio.sleep(self.duration_s)
        if self.fail:
            raise JobFailed("the disk is full")
        return f"job done in {self.duration_s:g} s"

    async def cleanup(self) -> None:
        await asyncio.sleep(self.cleanup_s)  # closing a connection takes a moment
        self.cleanups += 1


# -- exercise 10: a production line -----------------------------------------------------

@dataclass
class Line:
    """A fake production line: ``produce(i)`` makes item i, ``process(item)`` consumes it."""

    produce_s: float
    process_s: float
    produced: list[str] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    not_items: list[str] = field(default_factory=list)  # what process() got that was no item
    started: int = 0
    max_backlog: int = 0  # produced but not yet taken by a consumer

    async def produce(self, i: int) -> str:
        await asyncio.sleep(self.produce_s)
        item = f"item-{i}"
        self.produced.append(item)
        self.max_backlog = max(self.max_backlog, len(self.produced) - self.started)
        return item

    async def process(self, item: str) -> None:
        if not isinstance(item, str):
            self.not_items.append(_kind(item))
            if inspect.iscoroutine(item):
                item.close()  # reported by the check; no "never awaited" warning later
            await asyncio.sleep(self.process_s)
            return
        self.started += 1
        await asyncio.sleep(self.process_s)
        self.processed.append(item)


def _kind(value: object) -> str:
    if inspect.iscoroutine(value):
        return f"a coroutine object {value.__qualname__}()"
    return "None" if value is None else f"a {type(value).__name__} object"


# -- exercise 13: a scripted service and a recording limiter ----------------------------

class ScriptedService:
    """``fetch(key)`` answers as the scenario's script says, and records every attempt."""

    def __init__(self, sc: RetryScenario) -> None:
        self.sc = sc
        self.attempts: dict[str, list[list[Any]]] = {key: [] for key in sc.scripts}

    @staticmethod
    def data_for(key: str) -> str:
        return f"data for {key}"

    async def fetch(self, key: str) -> str:
        loop = asyncio.get_running_loop()
        tries = self.attempts.setdefault(key, [])
        record = [loop.time(), None]
        tries.append(record)
        outcome = self.sc.outcome(key, len(tries)) if key in self.sc.scripts else "missing"
        try:
            await asyncio.sleep(self.sc.latency_s)
        finally:
            record[1] = loop.time()
        if outcome == "ok":
            return self.data_for(key)
        if outcome == "conn":
            raise ConnectionError(f"{key}: connection reset by the server")
        if outcome == "timeout":
            raise TimeoutError(f"{key}: no answer in time")
        raise LookupError(f"{key}: not found (404)")

    def waits(self, key: str) -> list[float]:
        tries = self.attempts[key]
        return [later[0] - earlier[1] for earlier, later in zip(tries, tries[1:])]


class RecordingLimiter:
    """A limiter that never holds anyone back and notes when ``acquire()`` was awaited."""

    def __init__(self) -> None:
        self.acquired: list[float] = []

    async def acquire(self) -> None:
        self.acquired.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        pass


# -- exercise 16: a clock and a selector ------------------------------------------------

MAX_CLOCK_READS = 1_000  # more reads of the clock in one iteration: a busy wait


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else repr(value)


class BusyWait(Exception):
    """Raised by the fake clock when an iteration keeps reading it instead of waiting."""


class World:
    """A fake clock and selector for one iteration, and a log of the callbacks that ran."""

    def __init__(self, now: float, io_ready: list[str] | None = None) -> None:
        self.now = now
        self.log: list[str] = []
        self.select_calls: list[float | None] = []
        self.io_ready = list(io_ready or [])
        self.clock_reads = 0
        self._seq = itertools.count()

    def clock(self) -> float:
        self.clock_reads += 1
        if self.clock_reads > MAX_CLOCK_READS:
            raise BusyWait(f"clock() was read {MAX_CLOCK_READS:,} times in one iteration")
        return self.now

    def select(self, timeout: float | None = None) -> list[Callable[[], None]]:
        """Record the timeout; time passes by it (a wait); return the ready sockets' callbacks."""
        self.select_calls.append(timeout)
        if isinstance(timeout, (int, float)) and timeout > 0:
            self.now += timeout
        ready, self.io_ready = self.io_ready, []
        return [self.callback(name) for name in ready]

    def callback(self, name: str, then: Callable[[], None] | None = None) -> Callable[[], None]:
        def run() -> None:
            self.log.append(name)
            if then is not None:
                then()
        run.__name__ = run.__qualname__ = name.replace(" ", "_")
        return run

    def timer(self, deadline: float, name: str) -> tuple[float, int, Callable[[], None]]:
        return (deadline, next(self._seq), self.callback(name))

    def selects(self) -> str:
        if not self.select_calls:
            return "select was never called"
        return ", ".join(f"select({_num(t)})" for t in self.select_calls)
