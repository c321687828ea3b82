"""The run_pipeline check passes the reference and rejects what learners really write."""

from __future__ import annotations

import time

import pytest

from asynclab.checks import check
from asynclab.checks.nb06_timeouts import scenario
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(await step())
    except TimeoutError:
        pass
    return results
'''

# Also right: one deadline on the loop's clock, the time left given to each step.
REMAINING_BUDGET = '''
import asyncio

async def run_pipeline(steps, deadline_s):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    results = []
    for step in steps:
        try:
            results.append(await asyncio.wait_for(step(), deadline - loop.time()))
        except TimeoutError:
            break
    return results
'''

TIMEOUT_AT = '''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline_s):
            for step in steps:
                results.append(await step())
    except TimeoutError:
        pass
    return results
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "a timeout per step": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    for step in steps:
        try:
            async with asyncio.timeout(deadline_s):
                results.append(await step())
        except TimeoutError:
            break
    return results
''', "stops when the budget runs out", "so each step had a timeout of its own"),
    "no timeout": ('''
async def run_pipeline(steps, deadline_s):
    return [await step() for step in steps]
''', "stops when the budget runs out", "nothing stopped it (no timeout)"),
    "remaining budget measured with time.monotonic": ('''
import asyncio, time

async def run_pipeline(steps, deadline_s):
    deadline = time.monotonic() + deadline_s
    results = []
    for step in steps:
        try:
            results.append(await asyncio.wait_for(step(), deadline - time.monotonic()))
        except TimeoutError:
            break
    return results
''', "stops when the budget runs out", "each step had a timeout of its own"),
    "asyncio.wait stops waiting but does not cancel": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    results = []
    for step in steps:
        task = asyncio.create_task(step())
        done, pending = await asyncio.wait({task}, timeout=deadline - loop.time())
        if pending:
            break
        results.append(task.result())
    return results
''', "the running step is cancelled", "did not cancel it"),
    "shield keeps the step running": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(await asyncio.shield(step()))
    except TimeoutError:
        pass
    return results
''', "the running step is cancelled", "did not cancel it"),
    "swallows the cancellation and goes on": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    async with asyncio.timeout(deadline_s):
        for step in steps:
            try:
                results.append(await step())
            except BaseException:
                continue  # "one failed step should not stop the others"
    return results
''', "no step starts after the deadline", "send_receipt started at 8 s"),
    "swallows the cancellation and stops": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    async with asyncio.timeout(deadline_s):
        for step in steps:
            try:
                results.append(await step())
            except asyncio.CancelledError:
                break
    return results
''', "cancellation from the caller propagates", "the cancellation was swallowed"),
    "catches CancelledError with TimeoutError": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(await step())
    except (TimeoutError, asyncio.CancelledError):
        pass
    return results
''', "cancellation from the caller propagates", "the cancellation was swallowed"),
    "raises TimeoutError": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    async with asyncio.timeout(deadline_s):
        for step in steps:
            results.append(await step())
    return results
''', "returns the results completed in time", "raised TimeoutError instead of returning the 3"),
    "timeout_at with a duration": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout_at(deadline_s):
            for step in steps:
                results.append(await step())
    except TimeoutError:
        pass
    return results
''', "all results when the budget is enough", "it stopped after 0 of 5 steps"),
    "steps run concurrently": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    try:
        async with asyncio.timeout(deadline_s):
            return list(await asyncio.gather(*(step() for step in steps)))
    except TimeoutError:
        return []
''', "steps one after another", "while log_in was still running"),
    "waits for the deadline": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(await step())
            await asyncio.sleep(deadline_s)  # "use the whole budget"
    except TimeoutError:
        pass
    return results
''', "all results when the budget is enough", "only after 10.0 virtual s"),
    "time.sleep between steps": ('''
import asyncio, time

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(await step())
                time.sleep(0.01)  # "let the server breathe"
    except TimeoutError:
        pass
    return results
''', "never blocks the event loop", "time.sleep(0.01) in run_pipeline()"),
    "forgotten await": ('''
import asyncio

async def run_pipeline(steps, deadline_s):
    results = []
    try:
        async with asyncio.timeout(deadline_s):
            for step in steps:
                results.append(step())
    except TimeoutError:
        pass
    return results
''', "every coroutine awaited", "a forgotten `await`"),
    "not async": ('''
def run_pipeline(steps, deadline_s):
    return []
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def run_pipeline(steps, deadline_s):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, REMAINING_BUDGET, TIMEOUT_AT],
                         ids=["reference", "remaining budget", "timeout_at"])
def test_right_solutions_pass(code, variant):
    report = check(define(code, "run_pipeline"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'a timeout per step': 'a timeout per step',
    'no timeout': 'no timeout',
    'remaining budget measured with time.monotonic': 'a timeout per step',
    'asyncio.wait stops waiting but does not cancel': 'step left running',
    'shield keeps the step running': 'step left running',
    'swallows the cancellation and goes on': 'swallowed cancellation',
    'swallows the cancellation and stops': 'swallowed cancellation',
    'catches CancelledError with TimeoutError': 'swallowed cancellation',
    'raises TimeoutError': 'raises instead of returning',
    'timeout_at with a duration': 'deadline measured from the wrong moment',
    'steps run concurrently': 'steps overlap',
    'waits for the deadline': 'waits for the deadline',
    'time.sleep between steps': 'blocked the loop',
    'forgotten await': 'forgotten await',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "run_pipeline"))
    assert not report.passed
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


@pytest.mark.parametrize("name", ["a timeout per step", "no timeout", "shield keeps the step running",
                                  "swallows the cancellation and stops", "raises TimeoutError"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "run_pipeline"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_report_text_is_deterministic():
    fn = define(WRONG["a timeout per step"][0], "run_pipeline")
    assert check(fn).text() == check(fn).text()


def test_a_check_takes_well_under_a_second():
    fn = define(REFERENCE, "run_pipeline")
    started = time.perf_counter()
    check(fn)
    assert time.perf_counter() - started < 10.0  # generous: proves no real waiting, not speed


def test_scenarios_cut_a_step_in_the_middle():
    for variant, seed in (("public", None), ("hidden", None), ("hidden", 1), ("hidden", 2),
                          ("hidden", 3), ("hidden", 4)):
        sc = scenario(variant, seed)
        done, cut = sc.expected_overrun()
        assert sc.start_of(cut) < sc.deadline_s < sc.start_of(cut) + sc.overrun[cut]
        assert sum(sc.fits.values()) < sc.fits_deadline_s
