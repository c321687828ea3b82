"""Blocking and CPU-bound work for lesson 14, in a module that worker processes can import.

A ``ProcessPoolExecutor`` sends a function to its workers *by name*: pickle
stores ``asynclab.workloads.count_primes``, not the code, and each worker
imports that module to find it. A function defined in a notebook cell lives in
``__main__``, which a worker started with "spawn" (the default on macOS and
Windows) or "forkserver" cannot import. So the lesson's CPU work lives here.

The functions are marked with ``asynclab.blocking.blocking``: called on the
event loop's thread while a course check is watching, the call is recorded
(with the caller's line). Outside a check the mark costs one list lookup.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable

from asynclab.blocking import blocking

__all__ = ["count_primes", "digest_rounds", "legacy_download", "cpu_timed"]


@blocking
def count_primes(limit: int) -> int:
    """How many primes are below ``limit``: pure-Python CPU work that holds the GIL throughout."""
    count = 0
    for n in range(2, limit):
        divisor = 2
        while divisor * divisor <= n:
            if n % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


@blocking
def digest_rounds(data: bytes, rounds: int) -> str:
    """SHA-256 of ``data`` repeated ``rounds`` times: CPU work done in C, without the GIL."""
    digest = hashlib.sha256()
    for _ in range(rounds):
        digest.update(data)  # hashlib lets go of the GIL while it hashes a large buffer
    return digest.hexdigest()


@blocking
def legacy_download(url: str, seconds: float = 0.3) -> str:
    """A stand-in for a synchronous library call (``requests.get``): it blocks for ``seconds``."""
    time.sleep(seconds)
    return f"<html>{url}</html>"


def cpu_timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """``(fn(*args), CPU seconds this process spent on it, process id)``.

    Meant for worker processes, where the process's CPU time is the call's own.
    In threads it is not: ``time.process_time`` counts every thread of a process.
    """
    start = time.process_time()
    result = fn(*args)
    return result, time.process_time() - start, os.getpid()
