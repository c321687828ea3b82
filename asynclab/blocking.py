"""Catch blocking calls made on the event loop's thread.

A blocking call (``time.sleep``, a synchronous HTTP request, heavy CPU work, a
wait on a thread) freezes every task on the loop. On a virtual clock it is also
invisible: it takes 0 virtual seconds. ``BlockingDetector`` makes it visible in
two ways, both tied to the learner's own file and line:

* **What blocking is.** While a watched loop runs, a watchdog thread knows when
  the loop last got control back (each return to its selector). When one step
  of the loop has kept the thread for longer than ``threshold_s`` real seconds
  *on the same line of learner code*, that line blocked the loop, whatever it
  calls: a CPU-bound loop, a socket read, a lock. The line is read from the
  loop thread's stack (``sys._current_frames``). The threshold is generous, so
  a loaded machine does not make correct code look blocking; a slow line that
  stays on the stack for that long is blocking on any machine.
* **A fast path** for the common cases, which need no real time at all:
  ``time.sleep`` (which then returns at once), every function marked with
  ``@blocking``, and any wait on a thread (``threading.Condition.wait``: what
  ``future.result()``, ``executor.map``, ``Event.wait`` and ``queue.get`` do)
  that the loop's thread starts while the thing it waits for is not ready.

Calls from other threads (``asyncio.to_thread``, ``run_in_executor``) are the
right way to run blocking code and are not recorded.
"""

from __future__ import annotations

import _thread
import functools
import linecache
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

__all__ = ["BlockingCall", "BlockingDetector", "blocking", "learner_frame", "WATCHDOG_THRESHOLD_S"]

F = TypeVar("F", bound=Callable[..., Any])

_REAL_SLEEP = time.sleep
_REAL_CONDITION_WAIT = threading.Condition.wait
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__))
_active: list["BlockingDetector"] = []
_lock = threading.Lock()
# A step of the loop that keeps its thread on one learner line, computing for this many CPU
# seconds, or for WATCHDOG_WAIT_S real seconds (a wait: a socket, a lock), blocked the loop.
# CPU time is the thread's own, so a loaded machine does not make a fast line look slow; the
# wall-clock bound only counts for lines that wait, and is long enough that no scheduler
# delay reaches it.
WATCHDOG_THRESHOLD_S = 0.25
WATCHDOG_WAIT_S = 1.0
WATCHDOG_INTERVAL_S = 0.02
HELD = "a call that held the event loop"  # what the watchdog calls what it found


@dataclass(frozen=True)
class BlockingCall:
    """One blocking call seen on the loop's thread."""

    what: str  # e.g. "time.sleep(0.5)"
    filename: str
    lineno: int
    function: str
    source: str  # the learner's line of code, stripped

    def where(self) -> str:
        place = "your cell" if _is_cell(self.filename) else os.path.basename(self.filename)
        text = f"{self.what} in {self.function}(), line {self.lineno} of {place}"
        return f"{text}: `{self.source}`" if self.source else text


def _is_cell(filename: str) -> bool:
    return filename.startswith("<ipython-input") or "ipykernel_" in filename or filename.startswith("<cell")


def _is_learner(frame: Any) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<") and not _is_cell(filename):
        return False  # <frozen ...>, <string>
    filename = os.path.abspath(filename)
    return not (filename.startswith(_PACKAGE_DIR) or filename.startswith(_STDLIB_DIR)
                or "site-packages" in filename)


def learner_frame(frame: Any) -> Any | None:
    """The innermost frame of learner code at or above ``frame`` (None when there is none)."""
    while frame is not None:
        if _is_learner(frame):
            return frame
        frame = frame.f_back
    return None


def _function_name(frame: Any) -> str:
    """The function a line belongs to, the same on every Python.

    Python 3.11 runs a comprehension in a frame of its own (``<listcomp>``), 3.12
    and later inline it into the enclosing function: name the enclosing function.
    """
    code_frame = frame
    while code_frame.f_code.co_name.startswith("<") and code_frame.f_back is not None \
            and code_frame.f_back.f_code.co_filename == frame.f_code.co_filename \
            and code_frame.f_code.co_name in ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"):
        code_frame = code_frame.f_back
    return code_frame.f_code.co_name


def _call_at(frame: Any, what: str) -> BlockingCall:
    filename = frame.f_code.co_filename
    source = linecache.getline(filename, frame.f_lineno).strip()
    return BlockingCall(what, filename, frame.f_lineno, _function_name(frame), source)


def _caller_frame() -> Any:
    """The innermost frame outside asynclab, the standard library and installed packages."""
    found = learner_frame(sys._getframe(2))
    return found if found is not None else sys._getframe(2)


def _watching(ident: int) -> list["BlockingDetector"]:
    """The detectors watching the thread ``ident`` (by ident: ``threading.current_thread()``
    would register a dummy Thread for every bare ``_thread`` thread that asks)."""
    if not _active:
        return []
    return [d for d in list(_active) if d.loop_thread.ident == ident]


def _record(what: str) -> None:
    """Record a blocking call with every active detector whose loop thread this is."""
    detectors = _watching(threading.get_ident())
    if not detectors:
        return
    call = _call_at(_caller_frame(), what)
    for detector in detectors:
        detector.add(call)


def _detecting_sleep(seconds: float) -> None:
    """Stand-in for ``time.sleep`` while a detector is active."""
    _record(f"time.sleep({seconds!r})")
    if not any(d.skip_sleep for d in _watching(threading.get_ident())):
        _REAL_SLEEP(seconds)


def _detecting_condition_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    """Stand-in for ``threading.Condition.wait``: a wait on the loop's thread blocks the loop."""
    if (timeout is None or timeout > 0) and _active:
        detectors = _watching(threading.get_ident())
        if detectors and not _starting_a_thread(sys._getframe(1)):
            frame = learner_frame(sys._getframe(1))
            if frame is not None:
                call = _call_at(frame, "a wait for another thread")
                for detector in detectors:
                    detector.add(call)
    return _REAL_CONDITION_WAIT(self, timeout)


_THREAD_START = threading.Thread.start.__code__


def _starting_a_thread(frame: Any) -> bool:
    """True inside ``Thread.start``, whose brief wait for the new thread is not blocking."""
    while frame is not None and not _is_learner(frame):
        if frame.f_code is _THREAD_START:
            return True
        frame = frame.f_back
    return False


def blocking(func: F) -> F:
    """Mark a synchronous function as blocking: calls on a watched loop thread are recorded."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _record(f"{func.__name__}()")
        return func(*args, **kwargs)

    wrapper.__asynclab_blocking__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _cpu_clock(thread_id: int | None) -> Callable[[], float] | None:
    """A function that reads the CPU seconds used by one thread (None where unsupported)."""
    try:
        clock = time.pthread_getcpuclockid(thread_id)  # type: ignore[arg-type]
        time.clock_gettime(clock)
    except (AttributeError, OSError, TypeError, OverflowError):
        return None
    return lambda: time.clock_gettime(clock)


class _Watchdog:
    """Watch one loop: when a step keeps the thread on one learner line too long, record it.

    The loop is "back" whenever it calls its selector; the time between two
    selector calls is one step (the callbacks that were ready). A thread that
    samples the loop thread's stack every ``WATCHDOG_INTERVAL_S`` notes the
    innermost learner line. When one step has shown the same line while the
    loop thread used ``threshold_s`` CPU seconds (a computation), or for
    ``WATCHDOG_WAIT_S`` real seconds (a wait), that line is recorded, once.
    The watchdog is a bare ``_thread`` thread, so that checks which forbid
    ``threading.Thread`` still get it.
    """

    def __init__(self, detector: "BlockingDetector", loop: Any, threshold_s: float) -> None:
        self.detector = detector
        self.threshold_s = threshold_s
        self.thread_id = detector.loop_thread.ident
        self.cpu = _cpu_clock(self.thread_id)
        self.step = 0
        self.busy_since: float | None = None
        # Bare locks, not threading.Event: this thread must not go through threading's
        # Python-level waits (watched by the fast path) nor register itself with threading.
        self._stop = _thread.allocate_lock()
        self._stop.acquire()
        self._done = _thread.allocate_lock()
        selector = loop._selector
        self._selector = selector
        self._original = selector.select

        def select(timeout: float | None = None) -> Any:
            self.busy_since = None
            try:
                return self._original(timeout)
            finally:
                self.step += 1
                self.busy_since = time.perf_counter()

        selector.select = select
        self._done.acquire()
        _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self._watch()
        finally:
            self._done.release()

    def _watch(self) -> None:
        # (step, frame, line): the frame object itself is held between two samples, so that
        # "the same frame" cannot be a new one at a recycled address. Many tasks that each
        # pass through one line quickly are many frames, not one line that holds the loop.
        seen: tuple[int, Any, int] | None = None
        seen_since = seen_cpu = 0.0
        reported_step = -1
        while not self._stop.acquire(timeout=WATCHDOG_INTERVAL_S):
            since, step = self.busy_since, self.step
            now = time.perf_counter()
            if since is None or step == reported_step or now - since < 0.05:
                seen = None
                continue
            frame = sys._current_frames().get(self.thread_id)
            frame = learner_frame(frame) if frame is not None else None
            if frame is None:
                seen = None
                continue
            key = (step, frame, frame.f_lineno)
            cpu = self.cpu() if self.cpu is not None else 0.0
            if seen is None or key[0] != seen[0] or key[1] is not seen[1] or key[2] != seen[2]:
                seen, seen_since, seen_cpu = key, now, cpu
                continue
            computed = self.cpu is not None and cpu - seen_cpu >= self.threshold_s
            waited = now - seen_since >= WATCHDOG_WAIT_S
            if (computed or waited) and self.step == step:
                self.detector.add(_call_at(frame, HELD))
                reported_step = step
                seen = None
            del frame

    def stop(self) -> None:
        self._stop.release()
        if self._done.acquire(timeout=1.0):
            self._done.release()
        self._selector.select = self._original  # looptime's own, which it set on the instance


class BlockingDetector:
    """Record blocking calls made on ``loop_thread`` between ``start()`` and ``stop()``.

    ``namespaces`` are extra dicts (a learner's module globals) in which names
    bound to ``time.sleep`` itself (``from time import sleep``) are swapped for
    the detecting version too, and put back on ``stop()``.

    With ``skip_sleep`` (the default), a detected ``time.sleep`` on the loop's
    thread returns at once: the call is reported, and a check does not waste
    real time on it. ``watch(loop)`` adds the watchdog (see the module docstring).
    """

    def __init__(self, loop_thread: threading.Thread | None = None,
                 namespaces: Iterable[dict[str, Any]] = (), skip_sleep: bool = True,
                 threshold_s: float = WATCHDOG_THRESHOLD_S) -> None:
        self.loop_thread = loop_thread or threading.current_thread()
        self.namespaces = list(namespaces)
        self.skip_sleep = skip_sleep
        self.threshold_s = threshold_s
        self.calls: list[BlockingCall] = []
        self._swapped: list[tuple[dict[str, Any], str]] = []
        self._watchdog: _Watchdog | None = None
        self._calls_lock = threading.Lock()

    def add(self, call: BlockingCall) -> None:
        """Record one call; the same line seen by the watchdog after the fast path is kept once."""
        with self._calls_lock:
            if call.what == HELD and any(
                    (c.filename, c.lineno) == (call.filename, call.lineno) for c in self.calls):
                return
            self.calls.append(call)

    def start(self) -> "BlockingDetector":
        with _lock:
            _active.append(self)
            time.sleep = _detecting_sleep
            threading.Condition.wait = _detecting_condition_wait  # type: ignore[method-assign]
        for namespace in self.namespaces:
            for name, value in list(namespace.items()):
                if value is _REAL_SLEEP:
                    namespace[name] = _detecting_sleep
                    self._swapped.append((namespace, name))
        return self

    def watch(self, loop: Any) -> None:
        """Also watch ``loop`` (run by ``loop_thread``) for steps that hold its thread too long."""
        if self._watchdog is None and getattr(loop, "_selector", None) is not None:
            self._watchdog = _Watchdog(self, loop, self.threshold_s)

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        for namespace, name in self._swapped:
            if namespace.get(name) is _detecting_sleep:
                namespace[name] = _REAL_SLEEP
        self._swapped.clear()
        with _lock:
            if self in _active:
                _active.remove(self)
            if not _active:
                time.sleep = _REAL_SLEEP
                threading.Condition.wait = _REAL_CONDITION_WAIT  # type: ignore[method-assign]

    def __enter__(self) -> "BlockingDetector":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
