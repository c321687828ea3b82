"""Checks for notebook 17_threads_vs_coroutines: thousands of waits with tasks, not threads.

``send_reminders(due, send)`` must send every user's reminder at that user's
own due time, all waits overlapping, sends that take a while included, and
without any thread: waiting needs none.

The check runs it on virtual time for 2,000 users (1,501 with other times in
the hidden variant). Thread starts are *refused* while the learner's code runs,
as if the system's thread limit were zero: a learner's ``asyncio.to_thread``,
``run_in_executor``, ``threading.Timer`` or ``ThreadPoolExecutor`` fails at
once with a clear ``RuntimeError`` that names the line, instead of really
sleeping in threads (which virtual time cannot speed up).
"""

from __future__ import annotations

import asyncio
import os
import threading
import traceback
from collections import Counter
from dataclasses import dataclass

from asynclab.checking import (Report, hidden_rng, observe, require_coroutine_function,
                               safe_findings, varied)

NOTEBOOK = "17_threads_vs_coroutines"
TOLERANCE_S = 1e-3
REFUSED = "this exercise allows no threads (the check refuses them; waiting needs none)"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__))


@dataclass(frozen=True)
class Scenario:
    due: dict[str, float]  # user -> seconds from the start
    send_s: float  # how long one send takes
    batch_at: float  # the time at which a whole batch of users is due

    @property
    def last(self) -> float:
        return max(self.due.values()) + self.send_s


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        due = {f"user-{i}": 60.0 + (i * 7919) % 3600 for i in range(1_950)}
        due.update({f"newsletter-{i}": 900.0 for i in range(50)})
        return Scenario(due, send_s=2.0, batch_at=900.0)
    rng = hidden_rng(variant, seed)  # hidden: other users, times and batch, from the seed
    spread, prime = rng.choice([1200, 1800, 2400]), rng.choice([104729, 7919, 15485863])
    due = {f"u{i}": 5.0 + ((i * prime) % spread) / 2 for i in range(rng.randint(1_200, 1_900))}
    batch_at = rng.randint(100, spread // 2) + 0.25
    due.update({f"batch-{i}": batch_at for i in range(rng.randint(30, 60))})
    return Scenario(due, send_s=rng.choice([0.5, 0.75, 1.0]), batch_at=batch_at)


class NoThreads:
    """While active, refuse to start threads from any thread but the caller's (the check's).

    Every refused start is recorded with the learner's line, and raises
    ``RuntimeError("can't start new thread ...")``, what Python raises when a
    system limit is reached.
    """

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._original = threading.Thread.start

    def __enter__(self) -> "NoThreads":
        refuser, original, caller = self, self._original, threading.current_thread()

        def start(thread: threading.Thread) -> None:
            if threading.current_thread() is caller:
                return original(thread)
            refuser.refused.append(_learner_line())
            raise RuntimeError(f"can't start new thread: {REFUSED}")

        threading.Thread.start = start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._original  # type: ignore[method-assign]


def _count(n: int, word: str) -> str:
    """``_count(2000, "thread") == "2,000 threads"``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _learner_line() -> str:
    """``"remind(), line 4: `await asyncio.to_thread(time.sleep, delay)`"``: the innermost frame
    outside asynclab and the standard library."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = os.path.abspath(frame.filename)
        if path.startswith(_PACKAGE_DIR) or path.startswith(_STDLIB_DIR) or "site-packages" in path:
            continue
        code = f": `{frame.line.strip()}`" if frame.line else ""
        return f"{frame.name}(), line {frame.lineno}{code}"
    return "a library call"


@varied
def check_send_reminders(fn, *, variant: str = "public",
                         seed: int | None = None) -> Report:
    """Judge ``send_reminders(due, send)``.

    Properties: no thread started (waits need none); every user reminded
    exactly once; every reminder sent at its own due time, so the waits and
    the sends overlap; the function returns once the last reminder is sent,
    with the number sent; no blocking call; no hang.
    """
    report = Report("send_reminders")
    bad = require_coroutine_function("send_reminders", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    n = len(sc.due)
    sent: list[tuple[str, float]] = []
    finished: list[str] = []
    at_return: dict[str, float] = {}

    async def send(user: str) -> None:
        loop = asyncio.get_running_loop()
        sent.append((user, loop.time()))
        await asyncio.sleep(sc.send_s)  # a slow mail server
        finished.append(user)

    async def run() -> object:
        result = await fn(dict(sc.due), send)
        at_return.update(at=asyncio.get_running_loop().time(), sent=len(sent),
                         finished=len(finished))
        return result

    limit = sc.last + 600.0
    with NoThreads() as threads:
        obs = observe(run, name="send_reminders", namespaces=(getattr(fn, "__globals__", {}),),
                      max_virtual_s=limit, wall_limit_s=10.0)
    report.timeline = None  # thousands of rows say nothing; the findings do

    if isinstance(obs.error, NotImplementedError) and not threads.refused:
        report.findings.extend(safe_findings("send_reminders", obs))  # "not written yet", alone
        return report

    # Threads first: when one was refused, the error it caused is explained here.
    report.add("no thread for the waits", not threads.refused,
               "no thread was started: waiting needs none" if not threads.refused else
               f"your code tried to start {_count(len(threads.refused), 'thread')}, the first "
               f"in {threads.refused[0]}",
               "A wait needs no thread: `await asyncio.sleep(delay)` in a task costs about a "
               "kilobyte and no OS thread (lesson 17). asyncio.to_thread, run_in_executor, "
               "threading.Timer and thread pools all start threads.", "a thread per wait")

    early = safe_findings("send_reminders", obs)
    if threads.refused:  # the error is the refused thread, explained above
        early = [f for f in early if not (f.prop == "runs without error" and REFUSED in f.message)]
    if obs.hang is not None and obs.hang.reason == "virtual-limit":
        for finding in early:
            if finding.prop == "finishes":
                finding.hint = ("The last reminder is due at "
                                f"{max(sc.due.values()):g} s, yet it ran far beyond: the waits "
                                "seem to run one after another instead of all at once.")
    report.findings.extend(early)
    if obs.error is not None or (obs.hang is not None and obs.hang.reason != "virtual-limit"):
        return report

    counts = Counter(user for user, _ in sent)
    missing = [u for u in sc.due if counts[u] == 0]
    twice = [u for u in sc.due if counts[u] > 1]
    strangers = [u for u in counts if u not in sc.due]
    if obs.hang is None:
        report.add("every user reminded once", not missing and not twice and not strangers,
                   f"all {n:,} users got exactly one reminder" if not (missing or twice or strangers)
                   else f"{len(missing):,} user(s) got no reminder (e.g. {missing[0]})" if missing
                   else f"{twice[0]} got {counts[twice[0]]} reminders" if twice
                   else f"a reminder went to {strangers[0]!r}, which is not a user id",
                   "Send one reminder per key of `due`, with `await send(user)`.",
                   "reminders lost" if missing else "reminder sent twice" if twice
                   else "reminder to a stranger")

    late = sorted((sc.due[u], t, u) for u, t in sent if u in sc.due
                  and abs(t - sc.due[u]) > TOLERANCE_S)
    on_time = not late and (obs.hang is None and not missing)
    if on_time:
        msg = f"every reminder went out at its own due time (the batch of users due at " \
              f"{sc.batch_at:g} s included): the waits and the sends overlapped"
    elif late:
        due_at, t, user = late[0]
        worst = max(abs(t - d) for d, t, _ in late)
        when = "late" if t > due_at else "early"
        msg = (f"{_count(len(late), 'reminder')} went out at the wrong time; the first, {user}, "
               f"was due at {due_at:g} s and sent at {t:g} s ({abs(t - due_at):g} s {when}); the "
               f"worst was {worst:,.6g} s off")
        if obs.hang is not None:
            msg = (f"only {len(sent):,} of {n:,} reminders had gone out when the check stopped at "
                   f"{limit:g} virtual s; " + msg)
    else:
        msg = (f"after {obs.elapsed if obs.hang is None else limit:g} virtual s only "
               f"{len(sent):,} of {n:,} reminders had gone out")
    hint = ("One task per user, each doing `await asyncio.sleep(due[user])` then "
            "`await send(user)`, all started before any is awaited (a TaskGroup or gather).")
    if late and any(t > d for d, t, _ in late) and len(late) < n \
            and max(abs(t - d) for d, t, _ in late) <= len(sent) * sc.send_s + TOLERANCE_S:
        hint = ("Sends take time: a send awaited before the next wait starts delays every later "
                "reminder. " + hint)
    if on_time:
        diagnosis = ""
    elif late and any(t < d for d, t, _ in late):
        diagnosis = "sent early"
    elif obs.hang is not None or not late:
        diagnosis = "waits one after another"
    elif max(abs(t - d) for d, t, _ in late) <= len(sent) * sc.send_s + TOLERANCE_S:
        diagnosis = "sends delay later waits"  # late by the sends before it, no more
    else:
        diagnosis = "waits held back"  # a wait that started late: not all waits run together
    report.add("each reminder on time", on_time, msg, hint, diagnosis)
    if obs.hang is not None:  # ran out of virtual time: one after another, most likely
        return report

    ended, done_then = at_return.get("at", 0.0), at_return.get("finished", 0)
    waited = done_then == len(sent) == n
    report.add("returns when the last reminder is sent", waited and ended <= sc.last + TOLERANCE_S,
               f"it returned at {ended:g} s, when the last send had finished" if waited and
               ended <= sc.last + TOLERANCE_S else
               f"it returned at {ended:g} s, when {done_then:,} of {n:,} reminders had been sent"
               if not waited else
               f"it returned at {ended:g} s; on time, the last send would have finished at "
               f"{sc.last:g} s",
               "Wait for every task you start (a TaskGroup does it for you); tasks still running "
               "when your function returns are lost when the program ends.",
               "fire and forget" if not waited else "returns late")

    report.add("returns the number sent", obs.result == n,
               f"it returned {n:,}" if obs.result == n else
               f"it returned {obs.result!r}; {n:,} reminders were due",
               "Return how many reminders were sent: len(due) once they all went out.",
               "wrong count")
    return report


EXERCISES = {"send_reminders": check_send_reminders}
