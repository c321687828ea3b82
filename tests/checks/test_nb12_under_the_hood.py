"""The run_once check passes the reference and rejects the loops learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import define, failed_props

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


def variant_of(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


WRONG = {
    "busy wait": (variant_of("timeout = max(0, timers[0][0] - clock())", "timeout = 0"),
                  "waits until the nearest timer", "select(0)"),
    "timers not in deadline order": (variant_of(
        "    while timers and timers[0][0] <= now:\n        ready.append(heapq.heappop(timers)[2])",
        "    for t in [t for t in timers if t[0] <= now]:\n        timers.remove(t)\n"
        "        ready.append(t[2])"), "overdue timers run at once, in deadline order", "ran ['t1', 't5', 't2', 't6']"),
    "negative timeout": (variant_of("max(0, timers[0][0] - clock())", "timers[0][0] - clock()"),
                         "overdue timers run at once, in deadline order", "select timeouts [-9.0]"),
    "runs new callbacks too": (variant_of("    for _ in range(len(ready)):\n        ready.popleft()()",
                                          "    while ready:\n        ready.popleft()()"),
                               "new callbacks wait for the next iteration", "ran ['parent', 'child']"),
    "timeout 0 when idle": (variant_of("        timeout = None", "        timeout = 0"),
                            "blocks on I/O when nothing is scheduled", "select timeouts [0]"),
    "forgets I/O events": (variant_of("    ready.extend(select(timeout))", "    select(timeout)"),
                           "blocks on I/O when nothing is scheduled", "ran []"),
    "stub": ('''
def run_once(ready, timers, clock, select):
    raise NotImplementedError("write your solution here")
''', "runs", "NotImplementedError"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "run_once"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_loop_is_rejected(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "run_once"))
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()
