"""Checks for notebook 13_retries: a client that retries with backoff and jitter.

``fetch_with_retries(fetch, key, limiter, max_attempts, base_delay_s)`` is
judged against a fake whose answers per key are scripted (success, a
transient ConnectionError or TimeoutError, a permanent LookupError), with a
limiter that records every ``acquire()``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from asynclab.checking import Report, hidden_rng, observe, plural, safe_findings, varied
from asynclab.fakes import RecordingLimiter, ScriptedService

NOTEBOOK = "13_retries"
TOL_S = 1e-5  # virtual time is exact to 1 µs; this absorbs float rounding


def fmt_s(t: float) -> str:
    return f"{t:.2f} s"


TRANSIENT = ("conn", "timeout")


@dataclass(frozen=True)
class RetryScenario:
    max_attempts: int
    base_delay_s: float
    scripts: dict[str, tuple[str, ...]]  # key -> outcome of each attempt; the last repeats
    latency_s: float = 0.1

    def outcome(self, key: str, attempt: int) -> str:
        script = self.scripts[key]
        return script[min(attempt, len(script)) - 1]

    def succeeds(self, key: str) -> int | None:
        """The attempt number that succeeds within max_attempts, or None."""
        for attempt in range(1, self.max_attempts + 1):
            outcome = self.outcome(key, attempt)
            if outcome == "ok":
                return attempt
            if outcome not in TRANSIENT:
                return None
        return None


def retry_scenario(variant: str, seed: int | None = None) -> RetryScenario:
    if variant == "public":
        return RetryScenario(4, 0.5, {
            "a": ("ok",),
            "b": ("conn", "ok"),
            "c": ("timeout", "timeout", "ok"),
            "d": ("conn",),  # always fails
            "e": ("missing",),  # permanent: LookupError
            "f": ("conn", "conn", "conn", "ok"),
            "g": ("timeout", "conn", "conn", "ok"),
            "h": ("conn", "ok"),
        })
    # Hidden, drawn from the seed: the same kinds of keys under other names and numbers.
    rng = hidden_rng(variant, seed)
    m = rng.choice([3, 4, 5])
    names = [f"user-{n}" for n in rng.sample(range(1, 100), 7)]

    def transient(n: int) -> tuple[str, ...]:
        return tuple(rng.choice(TRANSIENT) for _ in range(n))

    kinds = [("ok",),
             transient(rng.randint(1, m - 2)) + ("ok",) if m > 2 else ("conn", "ok"),
             transient(m - 1) + ("ok",),  # succeeds on the very last attempt
             (rng.choice(TRANSIENT),),  # always fails
             ("missing",),
             transient(1) + ("missing",),  # transient, then permanent
             transient(1) + ("ok",)]
    rng.shuffle(kinds)
    return RetryScenario(m, rng.choice([0.125, 0.25, 0.5]), dict(zip(names, kinds)),
                         latency_s=rng.choice([0.125, 0.25]))


def _names(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


def _what(outcome: Any, limit: int = 80) -> str:
    if isinstance(outcome, BaseException):
        text = f"raised {type(outcome).__name__}: {outcome}" if str(outcome) else \
            f"raised {type(outcome).__name__}"
    else:
        text = f"returned {outcome!r}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


@varied
def check_fetch_with_retries(fn: Any, *, variant: str = "public",
                             seed: int | None = None) -> Report:
    """Judge ``fetch_with_retries(fetch, key, limiter, max_attempts, base_delay_s)``.

    Properties: the data returned; transient errors (ConnectionError,
    TimeoutError) retried until success; at most ``max_attempts`` attempts, then
    the last error raised; permanent errors raised at once; waits between
    attempts of about ``base_delay_s * 2 ** (n - 1)``, growing, with jitter;
    ``limiter.acquire()`` awaited before every attempt; no blocking call.
    """
    report = Report("fetch_with_retries")
    if not callable(fn) or not asyncio.iscoroutinefunction(fn):
        report.add("is a coroutine function", False,
                   "fetch_with_retries is not an `async def` function.",
                   "Define it with `async def fetch_with_retries(fetch, key, limiter, "
                   "max_attempts=4, base_delay_s=0.5):`.", "not async")
        return report
    sc = retry_scenario(variant, seed)
    service, limiter = ScriptedService(sc), RecordingLimiter()
    outcomes: dict[str, Any] = {}
    ended: dict[str, float] = {}

    async def drive() -> None:
        loop = asyncio.get_running_loop()

        async def one(key: str) -> None:
            try:
                outcomes[key] = await fn(service.fetch, key, limiter, max_attempts=sc.max_attempts,
                                         base_delay_s=sc.base_delay_s)
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - a raised error is an outcome we judge
                outcomes[key] = exc
            finally:
                ended[key] = loop.time()

        tasks = [asyncio.create_task(one(key), name=key) for key in sc.scripts]
        await asyncio.gather(*tasks)

    obs = observe(drive, name="fetch_with_retries", namespaces=(getattr(fn, "__globals__", {}),),
                  max_virtual_s=300.0, wall_limit_s=3.0)
    forgot_acquire = [w for w in obs.never_awaited if "RecordingLimiter.acquire" in w]
    obs.never_awaited = [w for w in obs.never_awaited if w not in forgot_acquire]
    report.timeline = obs.timeline
    report.findings.extend(safe_findings("fetch_with_retries", obs))
    if obs.error is not None:
        return report

    foreign = [o for o in outcomes.values() if isinstance(o, BaseException)
               and not isinstance(o, (ConnectionError, TimeoutError, LookupError))]
    if obs.hang is None and outcomes and len(foreign) == len(outcomes):
        report.add("runs without error", False,
                   f"fetch_with_retries {_what(foreign[0], limit=200)} for every key",
                   "The check calls `await fetch_with_retries(fetch, key, limiter, "
                   "max_attempts=..., base_delay_s=...)`: keep that signature, and read the error.",
                   "raised an error")
        return report
    if obs.hang is None:
        _judge_results(report, sc, service, outcomes)
    _judge_attempt_counts(report, sc, service, outcomes, finished=obs.hang is None)
    if obs.hang is not None:
        return report
    _judge_backoff(report, sc, service)
    _judge_limiter(report, service, limiter, forgot_acquire)
    _judge_gives_up_at_once(report, sc, service, outcomes, ended)
    return report


def _judge_gives_up_at_once(report: Report, sc: RetryScenario, service: ScriptedService,
                            outcomes: dict[str, Any], ended: dict[str, float]) -> None:
    """After the last attempt (or a permanent error) the error is raised at once, no sleep."""
    late = []
    for key, tries in service.attempts.items():
        if not tries or not isinstance(outcomes.get(key), BaseException) or key not in ended:
            continue
        last_end = tries[-1][1]
        if last_end is not None and ended[key] > last_end + TOL_S:
            late.append((key, ended[key] - last_end))
    if not late:
        report.add("raises at once when it gives up", True,
                   "each key that failed for good raised its error as soon as its last attempt "
                   "failed")
        return
    key, wait = late[0]
    report.add("raises at once when it gives up", False,
               f"{key} failed for good, and its error reached the caller {wait:.2f} s after "
               "its last attempt: a backoff sleep after the final failure delays the error for "
               "nothing",
               "Sleep only when another attempt follows: check for the last attempt (and raise) "
               "before the backoff sleep, not after it.", "sleeps after the last failure")


def _judge_results(report: Report, sc: RetryScenario, service: ScriptedService,
                   outcomes: dict[str, Any]) -> None:
    good = [k for k in sc.scripts if sc.succeeds(k) is not None]
    wrong = [k for k in good if outcomes.get(k) != service.data_for(k)]
    outcome = outcomes.get(wrong[0]) if wrong else None
    if isinstance(outcome, (ConnectionError, TimeoutError)):
        hint = "Catch ConnectionError and TimeoutError and try again, up to max_attempts times."
    elif isinstance(outcome, BaseException):
        hint = "Read the error: it came from your code, not from `fetch`."
    else:
        hint = "Return what `await fetch(key)` returned, from the attempt that succeeded."
    report.add("returns the data", not wrong,
               f"{_names(good)} returned their data" if not wrong else
               f"{wrong[0]} {_what(outcome)}; expected {service.data_for(wrong[0])!r}", hint,
               "no retry" if isinstance(outcome, (ConnectionError, TimeoutError)) else
               "raised an error" if isinstance(outcome, BaseException) else "wrong results")


def _judge_attempt_counts(report: Report, sc: RetryScenario, service: ScriptedService,
                          outcomes: dict[str, Any], finished: bool) -> None:
    m = sc.max_attempts
    counts = {k: len(v) for k, v in service.attempts.items()}
    # 1. Transient errors are retried until the attempt that succeeds.
    flaky = [k for k in sc.scripts if (sc.succeeds(k) or 0) > 1]
    problems = []
    for key in flaky:
        need, got = sc.succeeds(key), counts[key]
        if got == 1:
            error = "TimeoutError" if sc.outcome(key, 1) == "timeout" else "ConnectionError"
            problems.append(f"{key} failed once with {error} and was not tried again")
        elif got < need:
            problems.append(f"{key} needed {need} attempts but was tried only {got} times "
                            f"(max_attempts is {m})")
    if finished:
        report.add("retries transient errors", not problems,
                   f"{_names(flaky)} failed with ConnectionError or TimeoutError first and "
                   "succeeded on a later attempt" if not problems else problems[0],
                   "ConnectionError and TimeoutError mean 'not now': catch both and try again, "
                   "up to max_attempts attempts in all.",
                   "" if not problems else "no retry" if "not tried again" in problems[0]
                   else "too few attempts")
    # 2. Give up after max_attempts, raising the last error.
    doomed = [k for k in sc.scripts if sc.succeeds(k) is None
              and all(o in TRANSIENT for o in sc.scripts[k])]
    key = doomed[0]
    expected = TimeoutError if sc.scripts[key][-1] == "timeout" else ConnectionError
    got, outcome = counts[key], outcomes.get(key)
    if got > m:
        msg = (f"{key} always fails; it was tried {got} times"
               f"{'' if finished else ' and was still being retried when the check stopped it'}; "
               f"max_attempts is {m}")
    elif got < m:
        msg = f"{key} always fails; it was tried only {plural(got, 'time')}; max_attempts is {m}"
    elif not isinstance(outcome, expected):
        msg = (f"after its last attempt {key} {_what(outcome)}; it should raise the "
               f"{expected.__name__} of that attempt")
    else:
        msg = ""
    diagnosis = ("" if not msg else ("retries forever" if not finished else "too many attempts")
                 if got > m else "too few attempts" if got < m
                 else "error swallowed" if not isinstance(outcome, BaseException)
                 else "error replaced")
    hints = {
        "retries forever": "Count the attempts and stop after max_attempts: a `for attempt in "
                           "range(1, max_attempts + 1)` loop ends by itself.",
        "too many attempts": "max_attempts counts every attempt, the first one too: "
                             "`range(1, max_attempts + 1)`, not `range(max_attempts + 1)`.",
        "too few attempts": "max_attempts counts every attempt, the first one too: make "
                            "exactly max_attempts attempts before giving up.",
        "error swallowed": "After the last attempt, `raise` the error (a bare `raise` in the "
                           "except block re-raises it) so that the caller knows this key failed.",
        "error replaced": "After the last attempt, re-raise the error of that attempt itself "
                          "(a bare `raise`), not a new one.",
    }
    report.add("gives up after max_attempts", not msg,
               msg or f"{key} always fails: it was tried {m} times, then its "
                      f"{expected.__name__} was raised", hints.get(diagnosis, ""), diagnosis)
    if not finished:
        return
    # 3. Permanent errors are not retried.
    permanent = [k for k in sc.scripts if sc.succeeds(k) is None and k not in doomed]
    bad = []
    for key in permanent:
        first_permanent = next(i for i, o in enumerate(sc.scripts[key], 1) if o not in TRANSIENT)
        if counts[key] > first_permanent:
            bad.append(f"{key} failed with LookupError (like a 404) and was tried again: "
                       f"{counts[key]} attempts in all")
        elif not isinstance(outcomes.get(key), LookupError):
            bad.append(f"{key} failed with LookupError but fetch_with_retries "
                       f"{_what(outcomes.get(key))}; let that error propagate")
    report.add("no retry of permanent errors", not bad,
               f"{_names(permanent)} raised LookupError at once, with no retry" if not bad
               else bad[0],
               "Only ConnectionError and TimeoutError are worth retrying: catch just those two, "
               "so that any other error goes straight to the caller.",
               "" if not bad else "retries permanent errors" if "tried again" in bad[0]
               else "error replaced")


def _judge_backoff(report: Report, sc: RetryScenario, service: ScriptedService) -> None:
    base = sc.base_delay_s
    retried = [k for k, tries in service.attempts.items() if len(tries) > 1]
    if not retried:
        return  # nothing was retried: "retries transient errors" has already failed
    nominal = [base * 2 ** i for i in range(sc.max_attempts)]
    expected_text = ", ".join(f"{w:g}" for w in nominal[:sc.max_attempts - 1]) + " s"
    problem = ""
    for key in sorted(retried, key=lambda k: -len(service.attempts[k])):
        waits = service.waits(key)
        shown = ", ".join(f"{w:.2f}" for w in waits) + " s"
        if all(w < 0.01 for w in waits):
            problem = (f"{key} was retried immediately: the waits between its attempts were "
                       f"{shown}")
        elif any(b <= a + TOL_S for a, b in zip(waits, waits[1:])):
            problem = (f"the waits between the attempts of {key} did not grow: {shown}; "
                       f"exponential backoff doubles them: about {expected_text}")
        elif any(not 0.8 * w0 - TOL_S <= w <= 1.5 * w0 + base for w, w0 in zip(waits, nominal)):
            problem = (f"the waits between the attempts of {key} were {shown}; exponential "
                       f"backoff makes them about {expected_text}")
        if problem:
            break
    diagnosis = ("" if not problem else "no backoff" if "retried immediately" in problem
                 else "backoff does not grow" if "did not grow" in problem else "wrong backoff")
    report.add("backoff grows exponentially", not problem,
               problem or f"the waits before retries were about {expected_text}, each about "
                          "twice the one before",
               "Before retry number n (1, 2, ...) wait `base_delay_s * 2 ** (n - 1)` seconds, "
               "plus a little random jitter, with `await asyncio.sleep(...)`."
               if diagnosis == "no backoff" else
               "Your waits do not double: make the wait before retry n "
               "`base_delay_s * 2 ** (n - 1)` (times a little random jitter).", diagnosis)
    # Jitter: keys whose first attempt failed at the same moment should not retry together.
    together = [k for k in retried if service.attempts[k][0][1] is not None]
    seconds = sorted({round(service.attempts[k][1][0], 6) for k in together})
    immediate = all(w < 0.01 for k in retried for w in service.waits(k))
    if len(together) >= 2 and not immediate:  # with no wait at all, there is nothing to spread
        spread = len(seconds) > 1
        report.add("jitter spreads the retries", spread,
                   f"the {len(together)} keys that failed together retried at different moments"
                   if spread else
                   f"all {len(together)} keys that failed together retried at the same moment "
                   f"({fmt_s(seconds[0])})",
                   "Multiply each wait by a random factor, e.g. `1 + random.random() / 10`, so "
                   "that clients that failed together do not all come back at the same instant.",
                   "no jitter")


def _judge_limiter(report: Report, service: ScriptedService, limiter: RecordingLimiter,
                   forgot: list[str]) -> None:
    starts = sorted(t[0] for tries in service.attempts.values() for t in tries)
    acquired = sorted(limiter.acquired)
    n, a = len(starts), len(acquired)
    first_unguarded = next((i for i, (g, s) in enumerate(zip(acquired, starts)) if g > s + TOL_S),
                           None)
    if forgot:
        msg = "limiter.acquire() was called without `await`, so it never ran"
    elif a < n:
        msg = (f"limiter.acquire() was awaited {a} times for {n} attempts: retries must wait for "
               "the limiter too")
    elif a > n:
        msg = f"limiter.acquire() was awaited {a} times for {n} attempts: once per attempt is enough"
    elif first_unguarded is not None:
        msg = "an attempt started before its limiter.acquire(): acquire first, then fetch"
    else:
        msg = ""
    diagnosis = ("" if not msg else "forgotten await" if forgot else
                 "limiter skipped on retries" if a < n else "acquired twice" if a > n
                 else "acquired after the fetch started")
    report.add("acquires the limiter before every attempt", not msg,
               msg or f"limiter.acquire() was awaited once before each of the {n} attempts",
               "`limiter.acquire()` only creates a coroutine: write `await limiter.acquire()`."
               if forgot else
               "Put `await limiter.acquire()` inside the retry loop, right before `await "
               "fetch(key)`: every attempt counts against the rate limit.", diagnosis)



EXERCISES = {"fetch_with_retries": check_fetch_with_retries}
