"""The run_once check passes the reference and rejects the loops learners really write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import heapq

def run_once(ready, timers, clock, select):
    if ready:
        timeout = 0
    elif timers:
        timeout = max(0, timers[0][0] - clock())
    else:
        timeout = None
    ready.extend(select(timeout))
    now = clock()
    while timers and timers[0][0] <= now:
        ready.append(heapq.heappop(timers)[2])
    for _ in range(len(ready)):
        ready.popleft()()
'''

# Another correct shape: helper functions, a list comprehension for the due timers, a for loop
# over a snapshot of the ready queue.
ALTERNATIVE = '''
import heapq

def next_timeout(ready, timers, now):
    if ready:
        return 0
    if not timers:
        return None
    return max(0.0, timers[0][0] - now)

def run_once(ready, timers, clock, select):
    for callback in select(next_timeout(ready, timers, clock())):
        ready.append(callback)
    now = clock()
    due = []
    while timers and timers[0][0] <= now:
        due.append(heapq.heappop(timers))
    ready.extend(callback for _, _, callback in due)
    todo = [ready.popleft() for _ in range(len(ready))]
    for callback in todo:
        callback()
'''


def variant_of(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "always polls (timeout 0: a busy loop)": (
        variant_of("timeout = max(0, timers[0][0] - clock())", "timeout = 0"),
        "waits until the nearest timer", "select(0)"),
    "spins on the clock until the timer is due": (variant_of(
        "    ready.extend(select(timeout))",
        "    while timers and not ready and clock() < timers[0][0]:\n        pass\n"
        "    ready.extend(select(0))"),
        "never busy-waits", "clock() was read 1,000 times in one iteration"),
    "time.sleep instead of select": (variant_of(
        "    ready.extend(select(timeout))",
        "    if timeout:\n        time.sleep(timeout)\n    ready.extend(select(0))")
        .replace("import heapq", "import heapq, time"),
        "waits in select, not in time.sleep", "time.sleep(2.0) in run_once()"),
    "ignores the timers when choosing the timeout": (
        variant_of("timeout = max(0, timers[0][0] - clock())", "timeout = None"),
        "waits until the nearest timer", "select(None)"),
    "waits for the last timer, not the nearest": (
        variant_of("timeout = max(0, timers[0][0] - clock())",
                   "timeout = max(0, timers[-1][0] - clock())"),
        "waits until the nearest timer", "select(4)"),
    "real clock instead of the one given": (variant_of(
        "timeout = max(0, timers[0][0] - clock())",
        "timeout = max(0, timers[0][0] - time.monotonic())")
        .replace("import heapq", "import heapq, time"),
        "waits until the nearest timer", "select(0)"),
    "timers not in deadline order": (variant_of(
        "    while timers and timers[0][0] <= now:\n        ready.append(heapq.heappop(timers)[2])",
        "    for t in [t for t in timers if t[0] <= now]:\n        timers.remove(t)\n"
        "        ready.append(t[2])"),
        "overdue timers run at once, in deadline order", "ran [t1, t2 #2, t2, t6, t5]"),
    "negative timeout for overdue timers": (
        variant_of("max(0, timers[0][0] - clock())", "timers[0][0] - clock()"),
        "overdue timers run at once, in deadline order", "select(-9)"),
    "moves every timer, due or not": (variant_of(
        "    while timers and timers[0][0] <= now:", "    while timers:"),
        "waits until the nearest timer", "ran [soon, late], 0 timer(s) left"),
    "a timer due exactly now is not due (< instead of <=)": (variant_of(
        "timers[0][0] <= now", "timers[0][0] < now"),
        "waits until the nearest timer", "ran [], 2 timer(s) left"),
    "runs callbacks added during the iteration": (variant_of(
        "    for _ in range(len(ready)):\n        ready.popleft()()",
        "    while ready:\n        ready.popleft()()"),
        "new callbacks wait for the next iteration", "ran [parent, child]"),
    "newest first (pop instead of popleft)": (variant_of("ready.popleft()()", "ready.pop()()"),
                                              "polls when work is ready", "ran [b, a]"),
    "timeout 0 when idle": (variant_of("        timeout = None", "        timeout = 0"),
                            "blocks on I/O when nothing is scheduled", "select(0)"),
    "forgets what select returned": (variant_of("    ready.extend(select(timeout))",
                                                "    select(timeout)"),
                                     "blocks on I/O when nothing is scheduled", "ran []"),
    "runs the ready queue before polling (and never runs I/O and timers)": ('''
import heapq

def run_once(ready, timers, clock, select):
    for _ in range(len(ready)):
        ready.popleft()()
    if timers:
        timeout = max(0, timers[0][0] - clock())
    else:
        timeout = None
    ready.extend(select(timeout))
    now = clock()
    while timers and timers[0][0] <= now:
        ready.append(heapq.heappop(timers)[2])
''', "waits until the nearest timer", "ran []"),
    "timer tuples put in the ready queue": (variant_of(
        "ready.append(heapq.heappop(timers)[2])", "ready.append(heapq.heappop(timers))"),
        "runs without error", "TypeError: 'tuple' object is not callable (in run_once(), line"),
    "stub": ('''
def run_once(ready, timers, clock, select):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
    "not a function": ('run_once = None\n', "defined", "not a function"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, ALTERNATIVE], ids=["reference", "alternative"])
def test_correct_loops_pass(code, variant):
    report = check(define(code, "run_once"), variant=variant)
    assert report.passed, report.text()
    assert len(report.findings) == 6


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'always polls (timeout 0: a busy loop)': 'busy wait',
    'spins on the clock until the timer is due': 'busy wait',
    'time.sleep instead of select': 'sleeps instead of select',
    'ignores the timers when choosing the timeout': 'wrong timeout',
    'waits for the last timer, not the nearest': 'wrong timeout',
    'real clock instead of the one given': 'busy wait',
    'timers not in deadline order': 'timers out of order',
    'negative timeout for overdue timers': 'negative timeout',
    'moves every timer, due or not': 'timers run before they are due',
    'a timer due exactly now is not due (< instead of <=)': 'due timer not run',
    'runs callbacks added during the iteration': 'runs new callbacks too',
    'newest first (pop instead of popleft)': 'ready queue in the wrong order',
    'timeout 0 when idle': 'wrong timeout',
    'forgets what select returned': 'i/o callbacks dropped',
    'runs the ready queue before polling (and never runs I/O and timers)': 'due timer not run',
    'timer tuples put in the ready queue': 'raised an error',
    'stub': 'not written',
    'not a function': 'not a function',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_loop_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "run_once"), name="run_once")
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["always polls (timeout 0: a busy loop)",
                                  "timers not in deadline order",
                                  "runs callbacks added during the iteration",
                                  "timeout 0 when idle"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "run_once"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_sleeping_and_spinning_learners_cost_no_real_time():
    started = time.perf_counter()
    for name in ("time.sleep instead of select", "spins on the clock until the timer is due"):
        check(define(WRONG[name][0], "run_once"))
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed


def test_report_text_is_deterministic():
    fn = define(WRONG["timers not in deadline order"][0], "run_once")
    assert check(fn).text() == check(fn).text()


def test_a_stub_gets_only_not_written_yet():
    report = check(define(WRONG["stub"][0], "run_once"))
    assert [(f.prop, f.passed) for f in report.findings] == [("written", False)], report.text()
