"""Checks for notebook 13_threads_vs_coroutines: thousands of waits with tasks, not threads."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from asynclab.checking import Report, common_findings, observe, plural, require_coroutine_function

NOTEBOOK = "13_threads_vs_coroutines"
TOLERANCE_S = 1e-3


class ThreadCounter:
    """Counts threads started by the code under test (thread pools start threads too).

    Starts made by the thread that entered the counter (the check itself, which
    starts the virtual-time worker) are not counted.
    """

    def __init__(self) -> None:
        self.started = 0
        self._original = threading.Thread.start

    def __enter__(self) -> "ThreadCounter":
        counter, original, caller = self, self._original, threading.current_thread()

        def start(thread: threading.Thread) -> None:
            if threading.current_thread() is not caller:
                counter.started += 1
            original(thread)

        threading.Thread.start = start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._original  # type: ignore[method-assign]


def check_send_reminders(fn, *, variant: str = "public") -> Report:
    """Judge ``send_reminders(user_ids, delay_s, send)``.

    Properties: every user reminded exactly once; every reminder sent
    ``delay_s`` after the start (all the waits overlap); no thread started for
    the waits; no blocking call.
    """
    report = Report("send_reminders")
    bad = require_coroutine_function("send_reminders", fn)
    if bad:
        report.findings.append(bad)
        return report
    n, delay_s = (2_000, 60.0) if variant == "public" else (1_501, 45.5)
    users = [f"user-{i}" for i in range(n)]
    sent: list[tuple[str, float]] = []

    async def send(user: str) -> None:
        sent.append((user, asyncio.get_running_loop().time()))

    with ThreadCounter() as threads:
        obs = observe(lambda: fn(list(users), delay_s, send), name="send_reminders",
                      namespaces=(getattr(fn, "__globals__", {}),), max_virtual_s=n * delay_s + 10,
                      wall_limit_s=10.0)
    report.timeline = None  # thousands of rows say nothing; the findings do
    report.findings.extend(common_findings("send_reminders", obs))
    if obs.hang is not None or obs.error is not None:
        return report

    counts = Counter(user for user, _ in sent)
    missing = [u for u in users if counts[u] == 0]
    twice = [u for u in users if counts[u] > 1]
    report.add("every user reminded once", not missing and not twice,
               f"all {n:,} users got exactly one reminder" if not missing and not twice else
               f"{len(missing):,} user(s) got no reminder, {len(twice):,} got several",
               "Send one reminder per user id.")
    late = [(u, t) for u, t in sent if abs(t - delay_s) > TOLERANCE_S]
    report.add("all waits overlap", not late and sent != [],
               f"every reminder went out at {delay_s:g} s: the {n:,} waits overlapped" if not late
               else f"{plural(len(late), 'reminder')} went out at another time than {delay_s:g} s "
                    f"(e.g. {late[0][0]} at {late[0][1]:g} s); in all it took {obs.elapsed:g} s",
               "Start one task per user (a TaskGroup or gather), each doing "
               "`await asyncio.sleep(delay_s)` then `await send(user)`.")
    report.add("no thread per wait", threads.started == 0,
               "no thread was started: waiting needs none" if threads.started == 0 else
               f"{plural(threads.started, 'thread')} started for {n:,} waits",
               "A wait needs no thread: `await asyncio.sleep(...)` in a task costs a few hundred "
               "bytes; a thread reserves megabytes of stack (lesson 13).")
    return report


EXERCISES = {"send_reminders": check_send_reminders}
