"""Checks for notebook 14_blocking_and_cpu: CPU work handed to an executor, off the loop.

``process_all(items, cpu_work, executor)`` is judged with a course ``cpu_work``
(marked ``@blocking``, so a call on the loop's thread is recorded with the
learner's line) and an executor that records what it is given: a thread pool
whose futures notice when ``result()`` is called on the loop's thread before
they are done (``executor.map``, ``future.result()``: the loop freezes while it
waits). A small task runs beside the learner's code and notes whether it ever
got a turn while the pool was working.

The verdict uses the order of events, never a duration. A call of
``cpu_work`` in a pool thread does not finish before two things have happened
(or ``GATE_S`` real seconds have passed): every item has been handed to the
executor, and the task beside has had a turn while the pool was busy. Code that
hands everything over at once and then awaits never meets the time limit, on
any machine, however loaded; code that waits for each item before handing over
the next, or that blocks the loop while the pool works, always does, and shows
as "one at a time" or "no other task got a turn".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import linecache
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from asynclab.blocking import BlockingCall, blocking
from asynclab.checking import Report, hidden_rng, observe, plural, safe_findings, varied

NOTEBOOK = "14_blocking_and_cpu"
POOL_PREFIX = "course-pool"
_SKIP_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) for m in
                   (concurrent.futures, asyncio, sys.modules["asynclab"]))


GATE_S = 0.5  # the most a pool call waits for its gates (real seconds): far longer than a
# loaded machine keeps a ready thread waiting, so only code that never opens the gates meets it


@dataclass(frozen=True)
class Scenario:
    items: tuple[int, ...]
    workers: int


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        return Scenario((7, 2, 9, 4, 1, 8), workers=3)
    rng = hidden_rng(variant, seed)  # hidden: more items than workers, drawn from the seed
    workers = rng.randint(2, 4)
    return Scenario(tuple(rng.sample(range(1, 40), rng.randint(workers + 2, 2 * workers + 2))),
                    workers=workers)


def expected_result(item: int) -> str:
    return f"crunched {item}"


@dataclass
class WorkLog:
    """What the course's cpu_work saw (every call, in which thread), and its two gates."""

    loop_thread: threading.Thread | None = None
    calls: list[tuple[int, str]] = field(default_factory=list)  # (item, thread name)
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_handed_over: threading.Event = field(default_factory=threading.Event)
    other_task_ran: threading.Event = field(default_factory=threading.Event)


def make_cpu_work(log: WorkLog) -> Callable[[int], str]:
    @blocking
    def cpu_work(item: int) -> str:
        """Crunch one item."""
        thread = threading.current_thread()
        with log.lock:
            log.calls.append((item, thread.name))
        if thread is not log.loop_thread:  # on the loop the call is recorded; no need to wait
            log.all_handed_over.wait(GATE_S)
            log.other_task_ran.wait(GATE_S)
        return expected_result(item)

    return cpu_work


def _caller() -> BlockingCall:
    """The learner's frame that called into concurrent.futures, as a BlockingCall."""
    frame = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_SKIP_DIRS):
        frame = frame.f_back
    if frame is None:
        return BlockingCall("future.result()", "?", 0, "?", "")
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    return BlockingCall("future.result()", filename, lineno, frame.f_code.co_name,
                        linecache.getline(filename, lineno).strip())


class WatchedFuture(concurrent.futures.Future):
    """A future that notes a blocking wait for it on the loop's thread."""

    def __init__(self, executor: "WatchedExecutor") -> None:
        super().__init__()
        self._executor = executor

    def _note_wait(self) -> None:
        if not self.done() and threading.current_thread() is self._executor.loop_thread:
            self._executor.blocking_waits.append(_caller())

    def result(self, timeout: float | None = None) -> Any:
        self._note_wait()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._note_wait()
        return super().exception(timeout)


class WatchedExecutor(concurrent.futures.Executor):
    """A thread pool that records each submit and how many earlier calls were still unfinished."""

    def __init__(self, workers: int, expected_calls: int, all_handed_over: threading.Event) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                           thread_name_prefix=POOL_PREFIX)
        self._expected_calls = expected_calls
        self._all_handed_over = all_handed_over
        self.loop_thread: threading.Thread | None = None
        self.futures: list[WatchedFuture] = []
        self.unfinished_at_submit: list[int] = []
        self.blocking_waits: list[BlockingCall] = []

    @property
    def busy(self) -> int:
        return sum(not f.done() for f in self.futures)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> WatchedFuture:
        self.unfinished_at_submit.append(self.busy)
        outer = WatchedFuture(self)
        self.futures.append(outer)
        inner = self._pool.submit(fn, *args, **kwargs)
        inner.add_done_callback(lambda done: _copy_state(done, outer))
        self._keep_clock_honest(inner)
        if len(self.futures) >= self._expected_calls:
            self._all_handed_over.set()
        return outer

    @staticmethod
    def _keep_clock_honest(inner: concurrent.futures.Future) -> None:
        """Make the virtual clock wait for this work in real time, however it is awaited.

        looptime only knows about work handed over with ``loop.run_in_executor``;
        a learner's ``asyncio.wrap_future(executor.submit(...))`` would otherwise
        look like a deadlock to the virtual clock.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.run_in_executor(None, _wait_quietly, inner)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _wait_quietly(future: concurrent.futures.Future, limit_s: float = 10.0) -> None:
    """Block until ``future`` is done, cancelled included (``concurrent.futures.wait`` misses a
    plain ``cancel()``, and would keep its thread, and the interpreter, alive forever)."""
    try:
        future.exception(timeout=limit_s)
    except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
        pass


def _copy_state(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
    if source.cancelled():
        target.cancel()
        target.set_running_or_notify_cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


@varied
def check_process_all(fn: Any, *, variant: str = "public",
                      seed: int | None = None) -> Report:
    """Judge ``process_all(items, cpu_work, executor)``.

    Properties: the results in the order of the items; every call of
    ``cpu_work`` made in the given executor, never on the loop; all the items
    handed to the executor at once (not one at a time, not in batches); each
    item processed once; no blocking wait for the pool on the loop (other
    tasks kept running while it worked); no blocking call.
    """
    report = Report("process_all")
    if not callable(fn) or not asyncio.iscoroutinefunction(fn):
        report.add("is a coroutine function", False, "process_all is not an `async def` function.",
                   "Define it with `async def process_all(items, cpu_work, executor):`.",
                   "not async")
        return report
    sc = scenario(variant, seed)
    log = WorkLog()
    cpu_work = make_cpu_work(log)
    executor = WatchedExecutor(sc.workers, len(sc.items), log.all_handed_over)
    turns_while_busy: list[int] = []

    async def drive() -> Any:
        log.loop_thread = executor.loop_thread = threading.current_thread()
        done = asyncio.Event()

        async def other_task() -> None:  # a task that wants a turn every few milliseconds
            while not done.is_set():
                if executor.busy:
                    turns_while_busy.append(executor.busy)
                    log.other_task_ran.set()
                await asyncio.sleep(0.005)

        beside = asyncio.create_task(other_task(), name="another task")
        try:
            return await fn(list(sc.items), cpu_work, executor)
        finally:
            done.set()
            await beside

    try:
        obs = observe(drive, name="process_all", namespaces=(getattr(fn, "__globals__", {}),),
                      max_virtual_s=600.0, wall_limit_s=5.0)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    report.timeline = obs.timeline
    report.findings.extend(safe_findings("process_all", obs))
    if obs.hang is not None or obs.error is not None:
        return report
    _judge(report, sc, log, executor, turns_while_busy, obs.result)
    return report


def _judge(report: Report, sc: Scenario, log: WorkLog, executor: WatchedExecutor,
           turns_while_busy: list[int], result: Any) -> None:
    n, items = len(sc.items), list(sc.items)
    expected = [expected_result(i) for i in items]
    got = list(result) if isinstance(result, (list, tuple)) else result
    pending = isinstance(got, list) and any(hasattr(r, "__await__") for r in got)
    if pending:
        message = "the result holds futures, not the results they stand for"
    elif got != expected and isinstance(got, list) and sorted(map(str, got)) == sorted(expected):
        message = f"the results are there but out of order: {got[:3]}..."
    elif got != expected:
        message = f"returned {got!r}"[:120] + f"; expected {expected[:2]}... ({n} results)"
    else:
        message = f"the {n} results, in the order of the items"
    out_of_order = "out of order" in message
    report.add("results in order", got == expected, message,
               "Your results are right but not in the order of `items`: gather keeps the order "
               "of its arguments; as_completed and sets do not." if out_of_order else
               "Return a list with cpu_work(item) for every item, in the order of `items` "
               "(asyncio.gather keeps the order of its arguments).",
               "forgotten await" if pending else "results out of order" if out_of_order
               else "wrong results")

    # Where the calls ran.
    on_loop = [item for item, thread in log.calls if thread == log.loop_thread.name]
    elsewhere = [item for item, thread in log.calls
                 if thread != log.loop_thread.name and not thread.startswith(POOL_PREFIX)]
    if on_loop:
        where_msg = f"{plural(len(on_loop), 'call')} of cpu_work ran on the event loop's thread"
    elif elsewhere:
        where_msg = (f"{len(elsewhere)} of {len(log.calls)} calls ran in other threads "
                     "(asyncio.to_thread or the loop's default pool), not in `executor`")
    else:
        where_msg = f"all {len(log.calls)} calls ran in the executor's worker threads"
    report.add("runs in the given executor", not on_loop and not elsewhere, where_msg,
               "Hand each call to the executor you were given: "
               "`loop.run_in_executor(executor, cpu_work, item)`. In real programs it is a "
               "process pool, the only way to run Python CPU work on several cores.",
               "ran on the loop" if on_loop else "ran outside the executor")

    # Each item once.
    counts = {i: sum(1 for item, _ in log.calls if item == i) for i in items}
    wrong = {i: c for i, c in counts.items() if c != 1}
    report.add("each item processed once", not wrong,
               f"cpu_work ran once for each of the {n} items" if not wrong else
               ", ".join(f"item {i} ran {c} times" for i, c in list(wrong.items())[:3]),
               "Call cpu_work exactly once per item.",
               "item processed twice" if any(c > 1 for c in wrong.values()) else "item skipped")

    # All handed over at once.
    submits = len(executor.futures)
    peak = max((u + 1 for u in executor.unfinished_at_submit), default=0)
    if submits == 0:
        together_msg = "nothing was handed to the executor"
    elif submits < n:
        together_msg = (f"only {plural(submits, 'call')} went to the executor for {n} items: one "
                        "worker did several items one after another")
    elif peak <= 1:
        together_msg = (f"the {n} items ran one at a time: each was handed to the executor only "
                        "after the previous one had finished")
    elif peak < n:
        together_msg = (f"at most {peak} of the {n} items were in the executor at once: hand it "
                        "all of them together, it queues what its workers cannot take yet")
    else:
        together_msg = (f"all {n} items were handed to the executor at once (it has "
                        f"{sc.workers} workers)")
    diagnosis = ("nothing handed over" if submits == 0 else "one call for many items"
                 if submits < n else "one at a time" if peak <= 1 else "in batches"
                 if peak < n else "")
    report.add("all handed over at once", submits >= n and peak >= n, together_msg,
               "One executor call that loops over every item runs them all in one worker: make "
               "one `loop.run_in_executor(executor, cpu_work, item)` per item."
               if diagnosis == "one call for many items" else
               "Create all the executor calls first (a list of `loop.run_in_executor(...)`), then "
               "await them together with `asyncio.gather(*calls)`; awaiting each call before "
               "making the next runs them one at a time.", diagnosis)

    # The loop stayed free (judged when process_all waited for pool work, not returned futures).
    if not executor.futures or any(hasattr(r, "__await__") for r in (got if isinstance(got, list)
                                                                       else [])):
        return
    if executor.blocking_waits:
        first = executor.blocking_waits[0]
        free_msg = (f"the loop waited for the pool with a blocking call: {first.where()}; "
                    "nothing else could run meanwhile")
    elif not turns_while_busy:
        free_msg = "no other task got a turn while the pool was working: the loop was blocked"
    else:
        free_msg = "another task kept running while the pool worked"
    report.add("other tasks keep running", not executor.blocking_waits and bool(turns_while_busy),
               free_msg,
               "`future.result()`, `executor.map` and `concurrent.futures.wait` block the thread "
               "they are called from. Await instead: `await asyncio.gather(*calls)` on the "
               "futures from loop.run_in_executor.", "blocked the loop")


EXERCISES = {"process_all": check_process_all}
