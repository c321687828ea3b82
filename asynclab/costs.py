"""Measure what threads, coroutines and tasks cost, on this machine (lesson 17).

Small, honest measuring tools:

* ``memory()``: this process's resident (RSS) and virtual (VMS) size, in bytes;
* ``ParkedThreads(n)``: start ``n`` threads that wait on one ``Event``, and
  measure what they added to RSS and VMS; bounded (at most ``n``), and it
  stops cleanly at the first thread the system refuses to start;
* ``Allocated()``: the bytes Python allocated (``tracemalloc``) in a ``with``
  block and still holds at its end (works across ``await``);
* ``best_of(measure, repeat)``: the smallest of several measurements (the
  least disturbed by other programs on a busy machine);
* ``limits()``: the system limits that decide how many threads fit.

Every figure they return depends on the machine; lessons print them in cells
whose output is not compared, and assert only generous bounds.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

__all__ = ["Allocated", "Memory", "ParkedThreads", "best_of", "fmt_bytes", "limits", "memory",
           "stack_limit"]

_PROCESS = psutil.Process()
WARM_UP_THREADS = 64


@dataclass(frozen=True)
class Memory:
    """Resident and virtual size of this process, in bytes."""

    rss: int
    vms: int

    def __sub__(self, other: "Memory") -> "Memory":
        return Memory(self.rss - other.rss, self.vms - other.vms)


def memory() -> Memory:
    """This process's memory now: RSS (pages really in RAM) and VMS (address space reserved)."""
    info = _PROCESS.memory_info()
    return Memory(info.rss, info.vms)


def fmt_bytes(n: float) -> str:
    """``fmt_bytes(8 * 2**20) == "8.0 MiB"``; bytes, KiB, MiB or GiB with one decimal."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def stack_limit() -> int | None:
    """``ulimit -s`` in bytes (the default stack reserved for a new thread on Linux), or None."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return None if soft == resource.RLIM_INFINITY else soft


def _rlimit(name: str) -> str:
    try:
        import resource
    except ImportError:
        return "n/a"
    if not hasattr(resource, name):
        return "n/a"
    soft, _ = resource.getrlimit(getattr(resource, name))
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft:,}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "n/a"


def limits() -> dict[str, str]:
    """The limits on threads: ``ulimit -u``, ``ulimit -v``, ``ulimit -s``, pid_max, threads-max,
    and the container's pids.max (cgroup v2). "n/a" where this system has no such limit."""
    stack = stack_limit()
    return {
        "ulimit -u (processes and threads of this user)": _rlimit("RLIMIT_NPROC"),
        "ulimit -v (address space)": _rlimit("RLIMIT_AS"),
        "ulimit -s (stack reserved per thread)": fmt_bytes(stack) if stack else "unlimited or n/a",
        "kernel.pid_max (every thread needs an id)": _read("/proc/sys/kernel/pid_max"),
        "kernel.threads-max": _read("/proc/sys/kernel/threads-max"),
        "cgroup pids.max (container limit)": _read("/sys/fs/cgroup/pids.max"),
    }


@dataclass
class ParkedThreads:
    """Start up to ``n`` threads that wait on one Event; measure the memory they add.

    Use as a context manager: the threads are alive inside the block and are
    released and joined when it ends. ``started`` says how many really
    started; ``refused`` holds the error of the first start the system refused
    (then no more are tried). Some threads are parked and released first, so
    that one-time costs of a process's first threads are not counted.
    """

    n: int
    stack_size: int | None = None  # bytes; None keeps the default
    started: int = 0
    refused: str | None = None
    before: Memory | None = None
    after: Memory | None = None
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    def __enter__(self) -> "ParkedThreads":
        previous = threading.stack_size(self.stack_size) if self.stack_size else None
        try:
            self._warm_up()
            gc.collect()
            self.before = memory()
            for _ in range(self.n):
                t = threading.Thread(target=self._release.wait, daemon=True)
                try:
                    t.start()
                except RuntimeError as exc:  # "can't start new thread": a limit was reached
                    self.refused = str(exc)
                    break
                self._threads.append(t)
                self.started += 1
            self.after = memory()
        finally:
            if previous is not None:
                threading.stack_size(previous)
        return self

    @staticmethod
    def _warm_up(count: int = WARM_UP_THREADS) -> None:
        """Park a few threads at once, then release them: the C library creates its per-thread
        memory pools (glibc's malloc arenas, up to 8 per core) for the first threads of a
        process, once; without this they would be counted as the cost of the measured threads."""
        release = threading.Event()
        warm = [threading.Thread(target=release.wait, daemon=True) for _ in range(count)]
        try:
            for t in warm:
                t.start()
        except RuntimeError:
            pass
        release.set()
        for t in warm:
            if t.ident is not None:
                t.join()

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        for t in self._threads:
            t.join()
        self._threads.clear()

    @property
    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    @property
    def per_thread(self) -> Memory:
        """Average RSS and VMS added per started thread."""
        assert self.before is not None and self.after is not None, "use it in a with block"
        delta = self.after - self.before
        count = max(self.started, 1)
        return Memory(delta.rss // count, delta.vms // count)


class Allocated:
    """``with Allocated() as a: ...`` then ``a.bytes``: what Python allocated in the block
    (tracemalloc) and did not free before it ended.

    Keep the objects you measure alive until the block ends (bind them to a
    name): the figure is then what keeping them costs, not what building them
    briefly needed. Works across ``await``, so it can measure parked tasks.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._base = 0
        self._started_here = False

    def __enter__(self) -> "Allocated":
        gc.collect()
        self._started_here = not tracemalloc.is_tracing()
        if self._started_here:
            tracemalloc.start()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.bytes = tracemalloc.get_traced_memory()[0] - self._base
        if self._started_here:
            tracemalloc.stop()


def best_of(measure: Callable[[], float], repeat: int = 3) -> float:
    """The smallest of ``repeat`` calls of ``measure()``: the run least disturbed by others."""
    return min(measure() for _ in range(repeat))
