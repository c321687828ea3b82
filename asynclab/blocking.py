"""Catch blocking calls made on the event loop's thread.

A blocking call (``time.sleep``, a synchronous HTTP request, heavy CPU work)
freezes every task on the loop. On a virtual clock it is also invisible: it
takes 0 virtual seconds. ``BlockingDetector`` makes it visible and
deterministic: while it is active, ``time.sleep`` and every function marked
with ``@blocking`` record each call made *on the loop's thread*, with the
learner's own file and line, instead of relying on wall-clock measurements.

Calls from other threads (``asyncio.to_thread``, ``run_in_executor``) are the
right way to run blocking code and are not recorded.
"""

from __future__ import annotations

import functools
import linecache
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

__all__ = ["BlockingCall", "BlockingDetector", "blocking"]

F = TypeVar("F", bound=Callable[..., Any])

_REAL_SLEEP = time.sleep
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__))
_active: list["BlockingDetector"] = []
_lock = threading.Lock()


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


def _caller_frame() -> Any:
    """The innermost frame outside asynclab and the standard library."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not (filename.startswith(_PACKAGE_DIR) or filename.startswith(_STDLIB_DIR)):
            return frame
        frame = frame.f_back
    return sys._getframe(2)


def _record(what: str) -> None:
    """Record a blocking call with every active detector whose loop thread this is."""
    if not _active:
        return
    current = threading.current_thread()
    detectors = [d for d in list(_active) if d.loop_thread is current]
    if not detectors:
        return
    frame = _caller_frame()
    filename = frame.f_code.co_filename
    source = linecache.getline(filename, frame.f_lineno).strip()
    call = BlockingCall(what, filename, frame.f_lineno, frame.f_code.co_name, source)
    for detector in detectors:
        detector.calls.append(call)


def _detecting_sleep(seconds: float) -> None:
    """Stand-in for ``time.sleep`` while a detector is active."""
    _record(f"time.sleep({seconds!r})")
    if not any(d.loop_thread is threading.current_thread() and d.skip_sleep for d in list(_active)):
        _REAL_SLEEP(seconds)


def blocking(func: F) -> F:
    """Mark a synchronous function as blocking: calls on a watched loop thread are recorded."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _record(f"{func.__name__}()")
        return func(*args, **kwargs)

    wrapper.__asynclab_blocking__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class BlockingDetector:
    """Record blocking calls made on ``loop_thread`` between ``start()`` and ``stop()``.

    ``namespaces`` are extra dicts (a learner's module globals) in which names
    bound to ``time.sleep`` itself (``from time import sleep``) are swapped for
    the detecting version too, and put back on ``stop()``.

    With ``skip_sleep`` (the default), a detected ``time.sleep`` on the loop's
    thread returns at once: the call is reported, and a check does not waste
    real time on it.
    """

    def __init__(self, loop_thread: threading.Thread | None = None,
                 namespaces: Iterable[dict[str, Any]] = (), skip_sleep: bool = True) -> None:
        self.loop_thread = loop_thread or threading.current_thread()
        self.namespaces = list(namespaces)
        self.skip_sleep = skip_sleep
        self.calls: list[BlockingCall] = []
        self._swapped: list[tuple[dict[str, Any], str]] = []

    def start(self) -> "BlockingDetector":
        with _lock:
            _active.append(self)
            time.sleep = _detecting_sleep
        for namespace in self.namespaces:
            for name, value in list(namespace.items()):
                if value is _REAL_SLEEP:
                    namespace[name] = _detecting_sleep
                    self._swapped.append((namespace, name))
        return self

    def stop(self) -> None:
        for namespace, name in self._swapped:
            if namespace.get(name) is _detecting_sleep:
                namespace[name] = _REAL_SLEEP
        self._swapped.clear()
        with _lock:
            if self in _active:
                _active.remove(self)
            if not _active:
                time.sleep = _REAL_SLEEP

    def __enter__(self) -> "BlockingDetector":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
