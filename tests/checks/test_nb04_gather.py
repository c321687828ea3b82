"""The call_all_services check passes the reference and rejects what learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import define, failed_props

REFERENCE = '''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*(services[name]() for name in names),
                                    return_exceptions=True)
    results, errors = {}, {}
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, Exception):
            errors[name] = str(outcome)
        else:
            results[name] = outcome
    return results, errors
'''

# Another correct way: one small coroutine per service that catches its own error.
PER_SERVICE_TRY = '''
import asyncio

async def call_all_services(services):
    results, errors = {}, {}

    async def call(name, service):
        try:
            results[name] = await service()
        except Exception as error:
            errors[name] = str(error)

    await asyncio.gather(*(call(name, service) for name, service in services.items()))
    return results, errors
'''

SPLIT = '''
    results, errors = {}, {}
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, Exception):
            errors[name] = str(outcome)
        else:
            results[name] = outcome
    return results, errors
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "one by one": ('''
async def call_all_services(services):
    results, errors = {}, {}
    for name, service in services.items():
        try:
            results[name] = await service()
        except Exception as error:
            errors[name] = str(error)
    return results, errors
''', "calls all services at once", "took 240 ms of virtual time with at most 1 call(s) in flight"),
    "gather without return_exceptions": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*(services[name]() for name in names))
''' + SPLIT, "a failure does not lose the successes",
        "raised ConnectionError: cart: connection refused"),
    "a TaskGroup": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(services[name]()) for name in names]
    outcomes = [task.result() for task in tasks]
''' + SPLIT, "a failure does not lose the successes", "raised ExceptionGroup"),
    "as_completed zipped with the names": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = []
    for next_done in asyncio.as_completed([services[name]() for name in names]):
        try:
            outcomes.append(await next_done)
        except Exception as error:
            outcomes.append(error)
''' + SPLIT, "successes under their names", "filed under the wrong names"),
    "exception objects in errors": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*(services[name]() for name in names),
                                    return_exceptions=True)
    results, errors = {}, {}
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, Exception):
            errors[name] = outcome
        else:
            results[name] = outcome
    return results, errors
''', "failures as messages", "errors['cart'] is a ConnectionError object; store its message"),
    "failures left in results": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*(services[name]() for name in names),
                                    return_exceptions=True)
    results = dict(zip(names, outcomes))
    errors = {name: str(o) for name, o in results.items() if isinstance(o, Exception)}
    return results, errors
''', "successes under their names", "results holds 2 failures as exception objects"),
    "only ConnectionError caught": ('''
import asyncio

async def call_all_services(services):
    results, errors = {}, {}

    async def call(name, service):
        try:
            results[name] = await service()
        except ConnectionError as error:
            errors[name] = str(error)

    await asyncio.gather(*(call(name, service) for name, service in services.items()))
    return results, errors
''', "a failure does not lose the successes", "raised TimeoutError: stock: no answer"),
    "service functions instead of calls": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*services.values(), return_exceptions=True)
''' + SPLIT, "runs without error", "TypeError"),
    "each service called twice": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = await asyncio.gather(*(services[name]() for name in names),
                                    return_exceptions=True)
    results, errors = {}, {}
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, Exception):
            errors[name] = str(outcome)
        else:
            results[name] = await services[name]()
    return results, errors
''', "each service called once", "auth was called 2 times"),
    "forgotten await on gather": ('''
import asyncio

async def call_all_services(services):
    names = list(services)
    outcomes = asyncio.gather(*(services[name]() for name in names), return_exceptions=True)
    return outcomes, {}
''', "every coroutine awaited", "a _GatheringFuture object: a forgotten `await`"),
    "returns a list": ('''
import asyncio

async def call_all_services(services):
    return await asyncio.gather(*(s() for s in services.values()), return_exceptions=True)
''', "returns (results, errors)", "it returned ['auth data', 'profile data', Connection"),
    "time.sleep between calls": ('''
import asyncio, time

async def call_all_services(services):
    results, errors = {}, {}

    async def call(name, service):
        time.sleep(0.01)  # "do not hammer the services"
        try:
            results[name] = await service()
        except Exception as error:
            errors[name] = str(error)

    await asyncio.gather(*(call(name, service) for name, service in services.items()))
    return results, errors
''', "never blocks the event loop", "time.sleep(0.01) in call()"),
    "not async": ('''
def call_all_services(services):
    return {}, {}
''', "is a coroutine function", "plain function"),
    "stub": ('''
async def call_all_services(services):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, PER_SERVICE_TRY], ids=["reference", "try per call"])
def test_correct_solutions_pass(code, variant):
    report = check(define(code, "call_all_services"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'one by one': 'one after another',
    'gather without return_exceptions': 'first failure escapes',
    'a TaskGroup': 'taskgroup cancels all',
    'as_completed zipped with the names': 'results under the wrong names',
    'exception objects in errors': 'exception objects instead of messages',
    'failures left in results': 'failures left in results',
    'only ConnectionError caught': 'first failure escapes',
    'service functions instead of calls': 'raised an error',
    'each service called twice': 'service called twice',
    'forgotten await on gather': 'forgotten await',
    'returns a list': 'not a pair of dicts',
    'time.sleep between calls': 'blocked the loop',
    'not async': 'not async',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "call_all_services"))
    assert not report.passed
    failed = failed_props(report)
    props = [f.prop for f in report.findings]
    assert len(props) == len(set(props)), report.text()
    assert prop in failed, report.text()
    assert DIAGNOSIS[name] in report.diagnoses, (report.diagnoses, report.text())
    assert fragment in failed[prop], report.text()


@pytest.mark.parametrize("name", ["one by one", "gather without return_exceptions",
                                  "as_completed zipped with the names",
                                  "only ConnectionError caught"])
def test_hidden_variant_rejects_them_too(name):
    code, prop, _ = WRONG[name]
    report = check(define(code, "call_all_services"), variant="hidden")
    assert prop in failed_props(report), report.text()


def test_report_text_is_deterministic():
    fn = define(WRONG["as_completed zipped with the names"][0], "call_all_services")
    assert check(fn).text() == check(fn).text()
