"""Tell a cell that waits for ever from one that works or waits for something: the idle report.

A learner's cell stuck in ``await asyncio.Event().wait()`` (or any await nobody will ever end)
would hold its grading slot until the cell's time limit. In the sandbox it can be told apart,
soundly, from a cell that computes or that waits for something that will come. While every one
of these holds, nothing can ever wake the kernel's event loop:

* the main thread is inside the event loop's ``select`` (not in the cell's own code, not in
  ``time.sleep``, not in a synchronous call);
* no callback is ready to run, and no timer is scheduled at all (a timer due after the cell's
  time would only make it time out: that is left to the time limit, which says so);
* no thread exists that was not there when the grader set the kernel up (a thread could call
  ``call_soon_threadsafe``), and no process other than the sandbox's own (a child could write
  to a pipe the loop watches);
* no alarm is pending (``signal.alarm``, ``setitimer``) and no timer file descriptor is open
  (``os.timerfd_create``): either could wake the loop from outside its timer list;
* the kernel's process uses no CPU;
* and a cell is running. Between cells the kernel waits in that very state for the grader's
  next request, for as long as the grader takes to send it (seconds, on a busy machine): that
  wait is not the cell's, and is never counted (IPython's ``pre_run_cell`` and
  ``post_run_cell`` events say when a cell runs).

The sandbox's network is loopback only, and every process on it is counted above: no socket
can receive anything. So a loop in that state stays in it for ever. This module runs inside the
kernel, in a thread started by the grader's setup cell, and reports every ``INTERVAL_S`` what it
sees; the grader (``kernel_process.KernelRun``) stops the cell when the report says the loop
has been in that state for ``IDLE_S``.

The report comes from inside the learner's kernel, so learner code could forge it: it can only
end its own cell early, which it could do anyway. Outside a sandbox (other processes, a real
network) no report is written, and a hung cell runs to its time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["start_reports", "read_report", "INTERVAL_S", "IDLE_S"]

INTERVAL_S = 0.2
IDLE_S = 2.0  # how long the loop must have been unwakeable before the cell is stopped
CPU_PER_INTERVAL_S = 0.01  # "no CPU": the reporter's own reads cost far less


def _processes() -> set[str]:
    return {p for p in os.listdir("/proc") if p.isdigit()}


def _timers_outside_the_loop() -> bool:
    """An alarm pending, or a timerfd open: a wake-up the event loop's own timers do not show."""
    if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return True
    try:
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[timerfd]":
                    return True
    except OSError:
        return True
    return False


def _in_loop_select(frame: Any) -> bool:
    """Is this (the main thread's innermost) frame the event loop waiting in its selector?"""
    return (frame is not None and frame.f_code.co_name == "select"
            and frame.f_code.co_filename.endswith("selectors.py")
            and frame.f_back is not None and frame.f_back.f_code.co_name == "_run_once")


def _has_timers(loop: asyncio.AbstractEventLoop) -> bool:
    return any(not h.cancelled() for h in list(getattr(loop, "_scheduled", [])))


def _ipython() -> Any:
    try:
        return get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return None


def start_reports(path: str | os.PathLike, shell: Any = None) -> threading.Event:
    """Start writing the idle report to ``path`` (call from the kernel's main thread, in a
    cell, before any learner code: the threads and processes alive now are the baseline).
    ``shell``: whose cell events tell when a cell runs (the kernel's IPython by default;
    without one, a cell is taken to be running all the time). Set the returned event to
    stop the reports (a kernel never does: it is killed)."""
    loop = asyncio.get_event_loop()
    main = threading.main_thread().ident
    baseline_threads = {t.ident for t in threading.enumerate()}
    baseline_processes = _processes()
    target, scratch = Path(path), Path(f"{path}.tmp")
    in_cell = [True]  # called from a cell, which is running now
    shell = shell if shell is not None else _ipython()
    if shell is not None:
        shell.events.register("pre_run_cell", lambda *_: in_cell.__setitem__(0, True))
        shell.events.register("post_run_cell", lambda *_: in_cell.__setitem__(0, False))

    stop = threading.Event()

    def report() -> None:
        idle_since: float | None = None
        cpu = time.process_time()
        while not stop.wait(INTERVAL_S):
            now, used = time.monotonic(), time.process_time()
            cpu, spent = used, used - cpu
            ready = len(getattr(loop, "_ready", ()))
            threads = {t.ident for t in threading.enumerate()} - baseline_threads - {
                threading.get_ident()}
            idle = (in_cell[0] and _in_loop_select(sys._current_frames().get(main)) and ready == 0
                    and not _has_timers(loop)
                    and not threads and _processes() <= baseline_processes
                    and spent < CPU_PER_INTERVAL_S and not _timers_outside_the_loop())
            idle_since = (idle_since or now) if idle else None
            scratch.write_text(json.dumps({
                "written_at": now, "idle_for": now - idle_since if idle_since else 0.0}))
            os.replace(scratch, target)

    threading.Thread(target=report, name="asynclab idle report", daemon=True).start()
    return stop


def read_report(path: str | os.PathLike) -> bool:
    """Is the kernel that writes ``path`` waiting for ever? (A fresh report, unwakeable for
    ``IDLE_S``.)"""
    try:
        report = json.loads(Path(path).read_text())
        fresh = time.monotonic() - float(report["written_at"]) < 4 * INTERVAL_S
        return fresh and float(report["idle_for"]) >= IDLE_S
    except (OSError, ValueError, KeyError, TypeError):
        return False
