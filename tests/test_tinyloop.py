"""The teaching loop of lesson 16 does what asyncio's _run_once does, one step at a time."""

from __future__ import annotations

import socket
import time

import pytest

from asynclab import tinyloop
from asynclab.tinyloop import TinyLoop


def sleeper(name, seconds, log):
    log.append(f"{name}: sleep")
    yield ("sleep", seconds)
    log.append(f"{name}: awake")


def reader(sock, log):
    log.append("reader: waiting")
    yield ("read", sock)
    log.append(f"reader: got {sock.recv(100).decode()}")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def toy_run(loop, pair, log):
    incoming, outgoing = pair
    loop.spawn(sleeper("slow", 0.2, log), "slow")
    loop.spawn(sleeper("fast", 0.1, log), "fast")
    loop.spawn(reader(incoming, log), "reader")
    loop.call_later(0.15, lambda: outgoing.send(b"hello"), "write to the socket")
    return loop.run()


def test_virtual_run_is_exact_and_in_deadline_order(pair):
    log = []
    with TinyLoop(virtual=True) as loop:
        iterations = toy_run(loop, pair, log)
    assert log == ["slow: sleep", "fast: sleep", "reader: waiting", "fast: awake",
                   "reader: got hello", "slow: awake"]
    assert [it.timeout for it in iterations] == [0.0, pytest.approx(0.1), pytest.approx(0.05),
                                                 pytest.approx(0.05), pytest.approx(0.05)]
    assert [it.ran for it in iterations] == [
        ["start slow", "start fast", "start reader"], ["wake fast"], ["write to the socket"],
        ["reader: socket readable"], ["wake slow"]]
    # The socket became readable in iteration 4: select returned without waiting for the timer.
    assert iterations[3].io == ["reader: socket readable"] and iterations[3].waited == 0
    assert loop.clock() == pytest.approx(0.2)


def test_timeline_records_each_task(pair):
    with TinyLoop(virtual=True) as loop:
        toy_run(loop, pair, [])
    timeline = loop.timeline
    assert timeline.names() == ["slow", "fast", "reader"]
    assert [r.outcome for r in timeline.records] == ["finished"] * 3
    assert [round(r.ended, 3) for r in timeline.records] == [0.2, 0.1, 0.15]
    assert [len(r.steps) for r in timeline.records] == [2, 2, 2]
    assert timeline.elapsed == pytest.approx(0.2)
    assert timeline.figure() is not None


def test_real_clock_really_waits(pair):
    log = []
    started = time.monotonic()
    with TinyLoop() as loop:
        toy_run(loop, pair, log)
    assert 0.19 <= time.monotonic() - started < 3.0
    assert log[-1] == "slow: awake"


def test_timeout_rules():
    with TinyLoop(virtual=True) as loop:
        assert loop.compute_timeout() == (0.0, "nothing scheduled at all")
        loop.call_at(3.0, lambda: None, "t")
        assert loop.compute_timeout()[0] == 3.0
        loop.clock.advance_to(5.0)
        assert loop.compute_timeout()[0] == 0.0  # overdue: never negative
        loop.call_soon(lambda: None, "now")
        assert loop.compute_timeout()[0] == 0.0


def test_only_io_means_no_timeout(pair):
    with TinyLoop(virtual=True) as loop:
        loop.add_reader(pair[0], lambda: None, "r")
        timeout, why = loop.compute_timeout()
        assert timeout is None and "only I/O" in why


def test_due_timers_move_earliest_first_and_later_ones_stay():
    with TinyLoop(virtual=True) as loop:
        for when, label in [(5, "t5"), (1, "t1"), (30, "t30"), (2, "t2"), (2, "t2 again")]:
            loop.call_at(when, lambda: None, label)
        loop.clock.advance_to(10)
        assert loop.move_due_timers() == ["t1", "t2", "t2 again", "t5"]
        assert [h.label for _, _, h in loop.timers] == ["t30"]


def test_callbacks_scheduled_while_running_wait_for_the_next_iteration():
    ran = []
    with TinyLoop(virtual=True) as loop:
        loop.call_soon(lambda: (ran.append("parent"),
                                loop.call_soon(lambda: ran.append("child"), "child")), "parent")
        first = loop.step()
        assert first.ran == ["parent"] and ran == ["parent"]
        assert [h.label for h in loop.ready] == ["child"]
        assert loop.step().ran == ["child"]


def test_a_failing_task_ends_alone():
    def broken():
        yield ("sleep", 0.1)
        raise KeyError("boom")

    log = []
    with TinyLoop(virtual=True) as loop:
        bad = loop.spawn(broken(), "broken")
        loop.spawn(sleeper("ok", 0.2, log), "ok")
        loop.run()
    assert bad.done and isinstance(bad.error, KeyError)
    assert [r.outcome for r in loop.timeline.records] == ["failed", "finished"]
    assert log == ["ok: sleep", "ok: awake"]


def test_unknown_request_is_refused():
    def odd():
        yield ("teleport", 1)

    with TinyLoop(virtual=True) as loop:
        task = loop.spawn(odd(), "odd")
        loop.run()
    assert isinstance(task.error, ValueError)


def test_state_lists_the_three_structures(pair):
    with TinyLoop(virtual=True) as loop:
        loop.call_soon(lambda: None, "cb")
        loop.call_at(0.5, lambda: None, "timer")
        loop.add_reader(pair[0], lambda: None, "sock")
        assert loop.state().splitlines() == ["  ready queue: cb", "  timer heap:  timer at 0.500 s",
                                             "  selector:    sock"]


def test_virtual_deadlock_is_reported(pair, monkeypatch):
    monkeypatch.setattr(tinyloop, "IO_WAIT_LIMIT_S", 0.05)
    with TinyLoop(virtual=True) as loop:
        loop.spawn(reader(pair[0], []), "reader")
        with pytest.raises(RuntimeError, match="deadlock"):
            loop.run()


def test_iteration_text():
    with TinyLoop(virtual=True) as loop:
        loop.call_at(0.25, lambda: None, "tick")
        text = loop.step().describe()
    assert text.splitlines() == [
        "iteration 1 at 0.000 s",
        "  1. timeout = 0.250: the nearest timer is 'tick'",
        "  2. select waited 0.250 s; I/O ready: none",
        "  3. due timers moved to the ready queue: tick",
        "  4. ran: tick",
    ]
