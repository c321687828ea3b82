"""Checks for notebook 04_gather: a gateway fan-out that keeps the answers when some calls fail."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from asynclab.checking import (Report, basic_findings, closing_unstarted, describe_error,
                               hidden_rng, observe, plural, require_coroutine_function, varied)
from asynclab.fakes import Gateway

NOTEBOOK = "04_gather"
TOLERANCE_S = 1e-4  # the services take tens of virtual milliseconds


def scenario(variant: str, seed: int | None = None) -> dict[str, tuple[float, BaseException | None]]:
    """Fresh exception objects on every call: a check must not share them between runs."""
    if variant == "public":
        return {
            "auth": (0.030, None),
            "profile": (0.080, None),
            "cart": (0.020, ConnectionError("cart: connection refused")),
            "pricing": (0.050, None),
            "stock": (0.060, TimeoutError("stock: no answer within 60 ms")),
        }
    # Hidden, drawn from the seed: 6 to 8 services, three of them failing (one with an
    # error that is neither a ConnectionError nor a TimeoutError), all latencies different.
    rng = hidden_rng(variant, seed)
    names = rng.sample(["search", "ads", "session", "reviews", "images", "tax", "shipping",
                        "loyalty", "weather", "news"], rng.randint(6, 8))
    latencies = rng.sample(range(10, 140, 5), len(names))
    kinds = [None] * (len(names) - 3) + ["value", "conn", "timeout"]
    rng.shuffle(kinds)
    plan: dict[str, tuple[float, BaseException | None]] = {}
    for name, ms, kind in zip(names, latencies, kinds):
        error = {None: None, "value": ValueError(f"{name}: malformed reply"),
                 "conn": ConnectionError(f"{name}: connection reset"),
                 "timeout": TimeoutError(f"{name}: no answer within {ms} ms")}[kind]
        plan[name] = (ms / 1000, error)
    return plan


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _what(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"a {type(value).__name__} object"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@varied
def check_call_all_services(fn, *, variant: str = "public",
                            seed: int | None = None) -> Report:
    """Judge ``call_all_services(services) -> (results, errors)``.

    Properties: every service called once, all at the same time (the fan-out
    takes as long as the slowest service); a failure does not lose the other
    services' answers; ``results`` maps each service that answered to its
    answer, under its own name; ``errors`` maps each service that failed to its
    error message (``str(exception)``); no blocking call, nothing un-awaited.
    """
    report = Report("call_all_services")
    bad = require_coroutine_function("call_all_services", fn)
    if bad:
        report.findings.append(bad)
        return report
    gateway = Gateway(scenario(variant, seed))
    services = gateway.services()
    obs = observe(lambda: closing_unstarted(lambda: fn(services)), name="call_all_services",
                  namespaces=(getattr(fn, "__globals__", {}),), max_virtual_s=60.0)
    report.timeline = obs.timeline

    raised = obs.error
    own = gateway.errors()
    lost_everything = raised is not None and (
        any(raised is e for e in own)
        or (isinstance(raised, BaseExceptionGroup)
            and any(sub is e for sub in raised.exceptions for e in own)))
    if lost_everything:
        answers = sum(1 for _, error in gateway.plan.values() if error is None)
        kind = (f"{type(raised).__name__} ({plural(len(raised.exceptions), 'sub-exception')})"
                if isinstance(raised, BaseExceptionGroup) else describe_error(raised))
        group = isinstance(raised, BaseExceptionGroup)
        report.add("a failure does not lose the successes", False,
                   f"call_all_services raised {kind}: one failing service cost the caller all "
                   f"{answers} answers of the others",
                   "A TaskGroup is the opposite tool here: it cancels everything when one task "
                   "fails. `asyncio.gather(..., return_exceptions=True)` puts each exception in "
                   "the results list instead, in its service's position." if group else
                   "Collect failures instead of letting one escape: "
                   "`asyncio.gather(..., return_exceptions=True)` puts every exception, whatever "
                   "its type, in the results list, in its service's position.",
                   "taskgroup cancels all" if group else "first failure escapes")
        findings = basic_findings("call_all_services", _without_error(obs))
        report.findings.extend(f for f in findings if not f.passed)
        return report

    early = basic_findings("call_all_services", obs)
    report.findings.extend(early)
    if obs.hang is not None or obs.error is not None or any(
            f.prop == "returns a value, not an awaitable" for f in early):
        return report

    result = obs.result
    if not (isinstance(result, (tuple, list)) and len(result) == 2
            and all(isinstance(part, dict) for part in result)):
        if any(not f.passed for f in early):
            return report  # e.g. a forgotten await: that finding says it all
        report.add("returns (results, errors)", False,
                   f"it returned {_what(result)}, not a pair of dicts",
                   "Return two dicts: `return results, errors`.", "not a pair of dicts")
        return report
    results, errors = result

    plan = gateway.plan
    ok_names = [n for n, (_, e) in plan.items() if e is None]
    failed_names = [n for n, (_, e) in plan.items() if e is not None]

    # 1. Successes under their own names.
    answer_owner = {Gateway.answer_of(n): n for n in plan}
    error_owner = {str(e): n for n, (_, e) in plan.items() if e is not None}
    exceptions_in_results = [n for n, v in results.items() if isinstance(v, BaseException)]
    misfiled = [n for n, v in results.items() if isinstance(v, str)
                and answer_owner.get(v, n) != n]
    missing = [n for n in ok_names if n not in results]
    wrong = [n for n in ok_names if n in results and results[n] != Gateway.answer_of(n)]
    if misfiled:
        name = misfiled[0]
        ok, msg = False, (f"results[{name!r}] is {_what(results[name])}, the answer of "
                          f"{answer_owner[results[name]]}: answers are filed under the wrong "
                          "names")
    elif exceptions_in_results:
        ok, msg = False, (f"results holds {plural(len(exceptions_in_results), 'failure')} as "
                          f"exception objects (e.g. results[{exceptions_in_results[0]!r}] is "
                          f"{_what(results[exceptions_in_results[0]])}): failures belong in "
                          "errors")
    elif missing:
        ok, msg = False, (f"{plural(len(missing), 'service')} that answered "
                          f"{'is' if len(missing) == 1 else 'are'} missing from results "
                          f"(first: {missing[0]!r})")
    elif wrong:
        name = wrong[0]
        ok, msg = False, (f"results[{name!r}] is {_what(results[name])}, expected "
                          f"{Gateway.answer_of(name)!r}")
    elif set(results) - set(ok_names):
        extra = sorted(set(results) - set(ok_names))
        ok, msg = False, f"results has keys of services that failed or do not exist: {extra}"
    else:
        ok, msg = True, f"the {len(ok_names)} answers, each under its service's name"
    diagnosis = ("" if ok else "results under the wrong names" if misfiled else
                 "failures left in results" if exceptions_in_results else
                 "answers missing" if missing else "wrong results" if wrong else "extra keys")
    report.add("successes under their names", ok, msg,
               "gather returns results in the order of its arguments: zip them with the "
               "names in that same order (as_completed gives completion order, and wait "
               "gives unordered sets)." if misfiled else
               "An exception in gather's results is a failure: put it in errors (as its "
               "message), not in results." if exceptions_in_results else
               "Put each service's answer in results, keyed by the service's name, and only "
               "the answers.", diagnosis)

    # 2. Failures as messages.
    misfiled_errors = [n for n, v in errors.items() if isinstance(v, str)
                       and error_owner.get(v, n) != n]
    missing_errors = [n for n in failed_names if n not in errors]
    objects = [n for n in failed_names if n in errors and isinstance(errors[n], BaseException)]
    wrong_text = [n for n in failed_names if n in errors and n not in objects
                  and errors[n] != str(plan[n][1])]
    extra_errors = sorted(set(errors) - set(failed_names))
    if misfiled_errors:
        name = misfiled_errors[0]
        ok, msg = False, (f"errors[{name!r}] is {_what(errors[name])}, the error of "
                          f"{error_owner[errors[name]]}: errors are filed under the wrong names")
    elif missing_errors:
        ok, msg = False, (f"{plural(len(missing_errors), 'failed service')} missing from errors "
                          f"(first: {missing_errors[0]!r})")
    elif objects:
        ok, msg = False, (f"errors[{objects[0]!r}] is {_what(errors[objects[0]])}; "
                          "store its message, str(error)")
    elif wrong_text:
        name = wrong_text[0]
        ok, msg = False, (f"errors[{name!r}] is {_what(errors[name])}, expected "
                          f"{str(plan[name][1])!r}")
    elif extra_errors:
        ok, msg = False, f"errors has keys of services that did not fail: {extra_errors}"
    else:
        ok, msg = True, f"the {len(failed_names)} failures, each with its message"
    diagnosis = ("" if ok else "errors under the wrong names" if misfiled_errors else
                 "failures missing" if missing_errors else
                 "exception objects instead of messages" if objects else
                 "wrong messages" if wrong_text else "extra keys")
    report.add("failures as messages", ok, msg,
               "Store the message, `str(error)`, not the exception object." if objects else
               "For each result that is an exception, store `str(result)` under the service's "
               "name in errors.", diagnosis)

    # 3. Concurrency.
    n = len(plan)
    slowest = max(latency for latency, _ in plan.values())
    one_by_one = sum(latency for latency, _ in plan.values())
    fast = obs.elapsed <= slowest + TOLERANCE_S and gateway.max_in_flight >= n
    report.add("calls all services at once", fast,
               f"took {_ms(obs.elapsed)} of virtual time with all {n} calls in flight "
               "together, as long as the slowest service" if fast else
               f"took {_ms(obs.elapsed)} of virtual time with at most {gateway.max_in_flight} "
               f"call(s) in flight; together they take {_ms(slowest)} (one at a time: "
               f"{_ms(one_by_one)})",
               "Awaiting each call in a loop runs them one after another. Create all the "
               "coroutines first and await them together: `await asyncio.gather(...)`.",
               "one after another" if gateway.max_in_flight <= 1 else "partly one after another")

    # 4. Each service once.
    counts = {name: gateway.calls_of(name) for name in plan}
    odd = {name: c for name, c in counts.items() if c != 1}
    report.add("each service called once", not odd,
               "every service was called exactly once" if not odd else
               ", ".join(f"{name} was called {c} times" for name, c in odd.items()),
               "Call each service function once; keep what gather gives back instead of "
               "calling again.",
               "service called twice" if any(c > 1 for c in odd.values()) else "service never called")
    return report


def _without_error(obs):
    return replace(obs, error=None, result=None)


EXERCISES = {"call_all_services": check_call_all_services}
