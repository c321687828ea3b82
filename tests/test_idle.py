"""The idle report (asynclab.grading.idle) on a real event loop, without a kernel.

The sandbox tests grade real notebooks (an endless await is stopped, a patient one is not);
these pin down one rule that a graded run only breaks on a busy machine.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from asynclab.grading import idle


class Shell:
    """What start_reports uses of IPython: its cell events."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list] = {}
        self.events = self

    def register(self, event: str, callback) -> None:
        self.callbacks.setdefault(event, []).append(callback)

    def trigger(self, event: str) -> None:
        for callback in self.callbacks.get(event, []):
            callback(None)


@pytest.mark.parametrize("between_cells", [False, True], ids=["in a cell", "between cells"])
def test_only_a_running_cell_can_wait_for_ever(tmp_path, monkeypatch, between_cells):
    """The loop waits in select with nothing scheduled for longer than IDLE_S. In a cell that
    is a cell nothing can wake; between cells it is the kernel waiting for the grader's next
    request, which on a busy machine can take seconds: the next cell must not be stopped for it.
    """
    monkeypatch.setattr(idle, "_processes", lambda: set())  # other processes on this machine
    report, shell, seen = tmp_path / "idle.json", Shell(), {}

    async def wait_unwakeable() -> None:
        loop, woken = asyncio.get_running_loop(), asyncio.Event()

        def look_then_wake() -> None:  # a thread from before the reports: the baseline
            time.sleep(idle.IDLE_S + 5 * idle.INTERVAL_S)
            seen["for ever"] = idle.read_report(report)
            loop.call_soon_threadsafe(woken.set)

        threading.Thread(target=look_then_wake, daemon=True).start()
        stop = idle.start_reports(report, shell=shell)
        if between_cells:
            shell.trigger("post_run_cell")
        try:
            await woken.wait()
        finally:
            stop.set()

    asyncio.run(wait_unwakeable())
    assert seen["for ever"] is (not between_cells)
