"""Run a coroutine on virtual time: sleeping costs nothing, the order stays exact.

Why looptime: it is a maintained library made for exactly this (fast-forwarding
an asyncio loop's clock to the next timer when nothing is ready), and it keeps
the real selector, so sockets and ``call_soon_threadsafe`` still work. Its
documented limits, and what this module does about them:

* A blocking call such as ``time.sleep`` takes 0 virtual seconds, so a timing
  check alone would pass blocking code. ``run_virtual`` therefore runs the
  coroutine under ``asynclab.blocking.BlockingDetector`` and reports every
  blocking call it saw (``VirtualRun.blocking_calls``).
* Work in executor threads is waited for in small real-time steps; fine for the
  lessons, but checks should not rely on threads finishing at exact virtual times.
* Its end-of-time and idle timeouts inject ``TimeoutError`` into the running
  tasks, which a learner's ``except TimeoutError`` can swallow. ``run_virtual``
  enforces its own limits from outside instead: a timer at the virtual limit
  stops the loop, and tells a deadlock (no other timer left) from a slow run.

Jupyter's kernel already runs an event loop in its main thread, so the virtual
loop always runs in a worker thread of its own; this also keeps a learner's
stuck coroutine from freezing the kernel: after ``wall_limit_s`` the caller gets
``HangError`` while the worker is abandoned (it is a daemon thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import heapq
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, Iterable

import looptime

from asynclab.blocking import BlockingCall, BlockingDetector

__all__ = ["HangError", "VirtualRun", "Variation", "run_virtual", "new_virtual_loop",
           "varied_runs", "current_variation"]

DEFAULT_MAX_VIRTUAL_S = 24 * 3600.0
DEFAULT_WALL_LIMIT_S = 10.0
# looptime runs a few zero-time cycles before each jump so that freshly created
# tasks get to register their timers first; a handful is enough for asyncio's
# call_soon ordering and keeps many-timer workloads fast.
NOOP_CYCLES = 5


class HangError(Exception):
    """The coroutine did not finish: a deadlock, an endless loop, or time ran out."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "deadlock", "virtual-limit" or "wall-limit"


@dataclass
class VirtualRun:
    """What one virtual-time run produced."""

    result: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0  # virtual seconds
    wall_s: float = 0.0  # real seconds it took
    blocking_calls: list[BlockingCall] = field(default_factory=list)

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def new_virtual_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop whose clock starts at 0 and jumps over idle waits.

    looptime's own ``end`` and ``idle_timeout`` are not used: with both set, the
    end-of-time check masks the idle check (looptime 0.9), and both work by
    injecting ``TimeoutError`` into the learner's tasks, which learner code may
    catch. ``run_virtual`` enforces its limits from outside the tasks instead.
    """
    return looptime.new_event_loop(start=0.0, end=None, idle_timeout=None, noop_cycles=NOOP_CYCLES)


@dataclass(frozen=True)
class Variation:
    """How a virtual run settles what asyncio leaves open, so that code relying on luck shows.

    asyncio promises nothing about two things a program can nevertheless depend on:

    * ``ties``: which of two timers due at the same instant fires first
      (``"natural"``: the heap's own order, ``"reversed"``: the later-scheduled first,
      ``"shuffled"``: an order drawn from ``seed``);
    * ``identity``: the hash of each task, which decides the order in which a set of
      tasks (``asyncio.wait``'s ``done``) is iterated (``"natural"``: by memory address,
      which changes from run to run; ``"created"``: in creation order; ``"reversed"``:
      the last-created first; ``"shuffled"``: drawn from ``seed``).

    A run under a given variation is the same every time; code that is correct
    whatever the order gives the same outcome under every variation.
    """

    name: str = "as scheduled"
    ties: str = "natural"
    identity: str = "natural"
    seed: int = 0

    @property
    def natural(self) -> bool:
        return self.ties == "natural" and self.identity == "natural"


_VARIATION: contextvars.ContextVar[Variation | None] = contextvars.ContextVar(
    "asynclab_variation", default=None)


def current_variation() -> Variation | None:
    """The variation that ``run_virtual`` applies in this context (None: no variation)."""
    return _VARIATION.get()


class varied_runs:  # noqa: N801 - used as a context manager, like contextlib's
    """``with varied_runs(variation):`` every ``run_virtual`` in the block applies it."""

    def __init__(self, variation: Variation | None) -> None:
        self.variation = variation
        self._token: contextvars.Token | None = None

    def __enter__(self) -> Variation | None:
        self._token = _VARIATION.set(self.variation)
        return self.variation

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _VARIATION.reset(self._token)


class _RankedTimer(asyncio.TimerHandle):
    """A timer that breaks ties between equal due times by its rank, not by heap luck."""

    __slots__ = ("_rank",)

    def _key(self) -> tuple[float, float]:
        return (self._when, getattr(self, "_rank", 0.0))

    def __lt__(self, other: Any) -> bool:
        if isinstance(other, asyncio.TimerHandle):
            return self._key() < (other._when, getattr(other, "_rank", 0.0))
        return NotImplemented

    def __gt__(self, other: Any) -> bool:
        if isinstance(other, asyncio.TimerHandle):
            return self._key() > (other._when, getattr(other, "_rank", 0.0))
        return NotImplemented

    def __le__(self, other: Any) -> bool:
        return not self.__gt__(other)

    def __ge__(self, other: Any) -> bool:
        return not self.__lt__(other)

    __hash__ = asyncio.TimerHandle.__hash__


class _KeyedTask(asyncio.Task):
    """A task whose hash (and so its place in a set) is decided by the variation."""

    def __init__(self, coro: Any, *, loop: Any, asynclab_key: int, **kwargs: Any) -> None:
        self._asynclab_key = asynclab_key
        super().__init__(coro, loop=loop, **kwargs)

    def __hash__(self) -> int:
        return self._asynclab_key

    __eq__ = object.__eq__


_KeyedTask.__name__ = _KeyedTask.__qualname__ = "Task"  # what a learner's report calls it


def _apply_variation(loop: asyncio.AbstractEventLoop, variation: Variation) -> None:
    """Make ``loop`` settle timer ties and task hashes as ``variation`` says."""
    rng = random.Random(variation.seed)
    if variation.ties != "natural":
        order = itertools.count()

        def call_at(when: float, callback: Any, *args: Any, context: Any = None) -> Any:
            if when is None:
                raise TypeError("when cannot be None")
            loop._check_closed()  # type: ignore[attr-defined]
            timer = _RankedTimer(when, callback, args, loop, context)
            timer._rank = -next(order) if variation.ties == "reversed" else rng.random()
            heapq.heappush(loop._scheduled, timer)  # type: ignore[attr-defined]
            timer._scheduled = True
            return timer

        loop.call_at = call_at  # type: ignore[method-assign]
    if variation.identity != "natural":
        created = itertools.count()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
            n = next(created)
            if variation.identity == "created":
                key = n  # small hashes in creation order: a set iterates in creation order
            elif variation.identity == "reversed":
                key = -(n + 2)  # small negative hashes fill a set's table from its end
            else:
                key = rng.getrandbits(61)
            return _KeyedTask(coro, loop=loop, asynclab_key=key, **kwargs)

        loop.set_task_factory(factory)


class _Abandoned(BaseException):
    """Raised inside a worker thread whose run went past its wall-clock limit."""


def _stop_worker(worker: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
    """Stop a run that is past its limit, so it does not burn CPU forever in the background.

    A loop that still cycles (an endless ``await asyncio.sleep(0)``) is stopped
    from outside; Python code that never awaits gets an exception raised inside
    its thread (``PyThreadState_SetAsyncExc``), which takes effect at its next
    bytecode. Only a call stuck inside C code (a very long ``time.sleep``) keeps
    running until it returns; the thread is a daemon, so it never blocks exit.
    """
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # the loop is already closed
        return
    worker.join(0.2)
    if worker.is_alive() and worker.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                   ctypes.py_object(_Abandoned))
        worker.join(0.2)


def run_virtual(
    coro_or_factory: Coroutine[Any, Any, Any] | Callable[[], Awaitable[Any]],
    *,
    max_virtual_s: float = DEFAULT_MAX_VIRTUAL_S,
    wall_limit_s: float = DEFAULT_WALL_LIMIT_S,
    detect_blocking: bool = True,
    namespaces: Iterable[dict[str, Any]] = (),
    variation: Variation | None = None,
) -> VirtualRun:
    """Run a coroutine to completion on a virtual clock, from sync or async code.

    Returns a ``VirtualRun`` with the result or the exception the coroutine
    raised, the virtual seconds it took, and the blocking calls it made on the
    loop (``namespaces``: module globals in which ``from time import sleep``
    must be watched too).

    Raises ``HangError`` when the code cannot finish: ``reason`` is
    ``"deadlock"`` when every task waits and no timer is left to wake any of
    them, ``"virtual-limit"`` after ``max_virtual_s`` virtual seconds, and
    ``"wall-limit"`` when it is still running after ``wall_limit_s`` real
    seconds (an endless loop that never awaits). The limits are enforced by
    stopping the loop, so code that swallows cancellation cannot escape them.

    ``variation`` (by default the one set with ``varied_runs``, if any) decides
    how timers due at the same instant and sets of tasks are ordered.
    """
    outcome = VirtualRun()
    hang: list[HangError] = []

    async def main() -> Any:
        awaitable = coro_or_factory() if callable(coro_or_factory) else coro_or_factory
        return await awaitable

    loop = new_virtual_loop()
    variation = variation if variation is not None else current_variation()
    if variation is not None and not variation.natural:
        _apply_variation(loop, variation)

    def target() -> None:

        def at_the_limit() -> None:
            # Our timer was the last one: nothing else could ever have woken the tasks.
            if not loop._scheduled and not loop._ready:  # type: ignore[attr-defined]
                hang.append(HangError(
                    "the code waited for something that never happened: every task was "
                    "waiting and no timer or I/O could wake any of them (a deadlock)",
                    "deadlock"))
            else:
                hang.append(HangError(
                    f"the code was still running after {max_virtual_s:g} virtual seconds",
                    "virtual-limit"))
            loop.stop()

        loop.call_at(max_virtual_s, at_the_limit)
        detector = (BlockingDetector(loop_thread=threading.current_thread(), namespaces=namespaces)
                    if detect_blocking else None)
        started = time.perf_counter()
        try:
            if detector is not None:
                detector.start()
                detector.watch(loop)
            try:
                outcome.result = loop.run_until_complete(main())
            except _Abandoned:
                return
            except BaseException as exc:  # the learner's own error: report, do not crash
                if not hang:
                    outcome.error = exc
            outcome.elapsed = loop.time()
        finally:
            if detector is not None:
                detector.stop()
                outcome.blocking_calls = list(detector.calls)
            outcome.wall_s = time.perf_counter() - started
            _close_loop(loop)

    worker = threading.Thread(target=target, name="asynclab-virtual-time", daemon=True)
    worker.start()
    worker.join(wall_limit_s)
    if worker.is_alive():
        _stop_worker(worker, loop)
        raise HangError(
            f"the code was still running after {wall_limit_s:g} s of real time "
            "(an endless loop, or a blocking call that never returns?)",
            "wall-limit",
        )
    if hang:
        raise hang[0]
    return outcome


# Tasks that refused to end when cancelled (``except BaseException: pass`` in a
# loop). They are kept referenced forever on purpose: when such a coroutine is
# garbage-collected, Python closes it by throwing GeneratorExit into it, the
# coroutine swallows that too and loops on in whatever thread ran the garbage
# collector, which freezes the kernel. A small leak is the safe choice.
_UNDEAD: list[asyncio.Task] = []


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left, then close the loop without waiting on real time."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        _UNDEAD.extend(t for t in pending if not t.done())
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException:  # noqa: BLE001 - closing must never mask the real outcome
        pass
    finally:
        loop.close()
