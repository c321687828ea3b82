"""Checks for notebook 12_http_and_rate_limits: a rate limiter that bounds every second.

``RateLimiter(rate_per_s)`` is judged by driving it with requests that arrive
in bursts, on virtual time, and reading when each one was let through: never
more than ``rate_per_s`` starts in any one-second window, and no start later
than the earliest moment the limit allows (a pacer that spaces requests
evenly, or a lock held while sleeping, waits for nothing).
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

from asynclab.checking import Report, hidden_rng, observe, plural, safe_findings, varied
from asynclab.labserver import busiest_window

NOTEBOOK = "12_http_and_rate_limits"
WINDOW_S = 1.0
TOL_S = 1e-5  # virtual time is exact to 1 µs; this absorbs float rounding
# A start may be this much later than the limit allows: enough for a limiter that re-checks
# every few milliseconds, far less than the gap a pacer leaves (1 / rate_per_s).
SLACK_S = 0.05


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fmt_s(t: float) -> str:
    return f"{t:.2f} s"


# -- RateLimiter ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LimiterScenario:
    rate_per_s: int
    arrivals: tuple[float, ...]  # when each request asks the limiter, in virtual seconds
    latency_s: float


def limiter_scenario(variant: str, seed: int | None = None) -> LimiterScenario:
    # Rates, arrivals and latencies are multiples of 1/8 s: exact in binary floating point, so a
    # limiter that computes "oldest start + 1 s" or "tokens * rate" meets no rounding dust (a
    # sleep of 1e-17 s cannot move a virtual clock that counts microseconds).
    if variant == "public":
        # a burst, two small groups, then two groups either side of a whole second
        arrivals = [0.0] * 10 + [3.25] * 3 + [3.5] * 3 + [5.75] * 4 + [6.125] * 4
        return LimiterScenario(4, tuple(arrivals), latency_s=0.25)
    # Hidden, drawn from the seed, with the public scenario's shape: a burst of more than two
    # seconds' worth, a small group soon after it, one after a pause, then two full groups
    # either side of a whole second (a calendar-second window, or a bucket refilled while
    # full, lets too many through there), and a last pair.
    rng = hidden_rng(variant, seed)
    rate = rng.choice([4, 8])  # powers of two: 1 / rate is exact in binary floating point
    arrivals = [0.0] * (2 * rate + rng.randint(2, 4))
    arrivals += [rng.randint(1, 4) / 8] * (rate - rng.randint(1, 2))
    pause = rng.randint(3, 5) + rng.randint(0, 7) / 8
    arrivals += [pause] * rng.randint(1, rate - 1)
    whole = int(pause) + rng.randint(3, 4)
    first, second = whole + rng.choice([0.625, 0.75, 0.875]), whole + 1 + rng.choice([0.125, 0.25])
    arrivals += [first] * rate + [second] * rate + [second + 0.625] * 2
    return LimiterScenario(rate, tuple(arrivals), latency_s=rng.choice([0.125, 0.25, 0.5]))


def earliest_starts(arrivals: list[float], rate_per_s: int, window_s: float = WINDOW_S) -> list[float]:
    """The earliest start of each request (in arrival order) that keeps every window within the limit.

    Request k may start when it arrives, but not before the request ``rate_per_s`` places
    before it has left the window. No limiter can start the k-th request earlier than this.
    """
    starts: list[float] = []
    for k, arrival in enumerate(sorted(arrivals)):
        start = arrival
        if k >= rate_per_s:
            start = max(start, starts[k - rate_per_s] + window_s)
        starts.append(start)
    return starts


@varied
def check_rate_limiter(cls: Any, *, variant: str = "public",
                       seed: int | None = None) -> Report:
    """Judge ``RateLimiter(rate_per_s)`` with ``await limiter.acquire()``.

    Properties: every request let through; never more than ``rate_per_s`` starts
    in any one-second window; no request held back when the window had room
    (each start within ``SLACK_S`` of the earliest the limit allows); no
    blocking call on the loop.
    """
    report = Report("RateLimiter")
    if not callable(cls):
        report.add("defined", False, f"RateLimiter is not a class (it is {type(cls).__name__}).",
                   "Define it with `class RateLimiter:` and an `async def acquire(self)` method.",
                   "not a class")
        return report
    acquire = getattr(cls, "acquire", None)
    if acquire is None or not inspect.iscoroutinefunction(acquire):
        report.add("has an async acquire() method", False,
                   "RateLimiter has no `async def acquire(self)` method."
                   if acquire is None else "RateLimiter.acquire is a plain method, not `async def`.",
                   "Callers do `await limiter.acquire()`: define `async def acquire(self):`.",
                   "no acquire" if acquire is None else "not async")
        return report

    sc = limiter_scenario(variant, seed)
    grants: list[float] = []
    obs = _drive_limiter(cls, sc, grants, use_with=False)
    report.timeline = obs.timeline
    early = safe_findings("RateLimiter", obs)
    report.findings.extend(early)
    n, limit = len(sc.arrivals), sc.rate_per_s
    if obs.hang is not None:
        _explain_limiter_hang(report, obs.hang.reason, len(grants), n)
        return report
    if obs.error is not None:
        return report

    report.add("lets every request through", len(grants) == n,
               f"all {n} requests were let through" if len(grants) == n else
               f"{len(grants)} of {n} requests were let through",
               "Every call of acquire() must return eventually.", "requests lost")

    count, first, last = busiest_window(grants)
    when = f"at the same moment ({fmt_s(first)})" if last - first < TOL_S else \
        f"within one second (between {fmt_s(first)} and {fmt_s(last)})"
    report.add("never above the limit", count <= limit,
               f"at most {plural(count, 'request')} started in any one-second window "
               f"(limit {limit})" if count <= limit else
               f"{count} requests started {when}; the limit is {limit}",
               _above_limit_hint(grants, list(sc.arrivals), limit),
               "limit never applied" if count >= len(sc.arrivals) or count > 2 * limit
               else "limit exceeded")

    best = earliest_starts(list(sc.arrivals), limit)
    got = sorted(grants)
    late = [(k, g, b) for k, (g, b) in enumerate(zip(got, best)) if g > b + SLACK_S]
    if not late:
        message = (f"no request waited longer than the limit requires; the last started at "
                   f"{fmt_s(got[-1])}" if got else "no request started")
    else:
        k, g, b = late[0]
        message = (f"the {ordinal(k + 1)} request to start began at {fmt_s(g)}, but the limit "
                   f"allowed it at {fmt_s(b)}; the last request started at {fmt_s(got[-1])} "
                   f"instead of {fmt_s(best[-1])}")
    report.add("no needless waiting", not late, message,
               "A request may start as soon as fewer than rate_per_s requests started in the "
               "last second. Do not space requests evenly, and never sleep while holding a lock "
               "that other callers need: each one would wait for the previous one's sleep.",
               "waits longer than needed")
    if count <= limit and getattr(cls, "__aenter__", None) is not None:
        _judge_async_with(report, cls, sc)
    return report


def _drive_limiter(cls: Any, sc: LimiterScenario, grants: list[float], use_with: bool) -> Any:
    """Requests arrive as the scenario says; each asks the limiter, then takes its latency."""

    async def drive() -> None:
        limiter = cls(sc.rate_per_s)  # built on the running loop, as in a program
        loop = asyncio.get_running_loop()

        async def request() -> None:
            if use_with:
                async with limiter:
                    grants.append(loop.time())
                    await asyncio.sleep(sc.latency_s)
                return
            await limiter.acquire()
            grants.append(loop.time())
            await asyncio.sleep(sc.latency_s)  # the request itself

        tasks = []
        for at in sc.arrivals:  # each request is created when it arrives
            await asyncio.sleep(at - loop.time())
            tasks.append(asyncio.create_task(request()))  # rows "request #1", ... (row_labels)
        await asyncio.gather(*tasks)

    return observe(drive, name="requests", namespaces=(_globals_of(cls),), max_virtual_s=600.0,
                   wall_limit_s=3.0)


def _judge_async_with(report: Report, cls: Any, sc: LimiterScenario) -> None:
    """The class offers `async with limiter:` too: that form must hold the same limit."""
    grants: list[float] = []
    obs = _drive_limiter(cls, sc, grants, use_with=True)
    prop = "`async with limiter:` keeps the limit too"
    if obs.hang is not None or obs.error is not None:
        problem = next((f.message for f in safe_findings("RateLimiter", obs) if not f.passed),
                       "it did not finish")
        report.add(prop, False, f"used as `async with limiter:`, {problem}",
                   "`async with limiter:` calls `__aenter__` (and `__aexit__` after the block): "
                   "make `__aenter__` do `await self.acquire()`.", "async with form broken")
        return
    count, first, last = busiest_window(grants)
    limit = sc.rate_per_s
    if count <= limit:
        report.add(prop, True, f"used as `async with limiter:`, at most "
                   f"{plural(count, 'request')} started in any one-second window")
        return
    report.add(prop, False, f"used as `async with limiter:`, {count} requests started within "
               f"one second; the limit is {limit}: __aenter__ does not wait for a permit",
               "`async with limiter:` runs `__aenter__`, not `acquire()`: make `__aenter__` "
               "`await self.acquire()`, so that both forms take a permit.",
               "async with does not acquire")


def _above_limit_hint(grants: list[float], arrivals: list[float], limit: int) -> str:
    ordered = sorted(grants)
    if all(g <= a + TOL_S for g, a in zip(ordered, sorted(arrivals))):
        return ("acquire() never made anyone wait. Keep the start times of the last second "
                "(a collections.deque) and wait while rate_per_s of them are still in it; or take "
                "a permit from asyncio.Semaphore(rate_per_s) and give it back one second later "
                "with loop.call_later.")
    same_instant = max((ordered.count(t) for t in set(ordered)), default=0)
    if same_instant > limit:
        return ("Several callers woke up together and all went through. After waiting, check "
                "the window again before going (a `while` loop, not an `if`), and record each "
                "start at once, with no `await` in between.")
    return ("Count the starts of the last second, not of the current calendar second, and do not "
            "let a full bucket of tokens add to the refill: at most rate_per_s starts may fall in "
            "any one-second window.")


def _explain_limiter_hang(report: Report, reason: str, through: int, n: int) -> None:
    """Say what a hang means for a limiter, in place of the generic hint."""
    hints = {
        "deadlock": ("A permit that is taken must come back: return it one second after it was "
                     "taken (loop.call_later), or forget starts older than one second."),
        "wall-limit": ("Waiting with `await asyncio.sleep(0)` (or with sleeps too short to move "
                       "the clock) in a loop keeps the event loop busy forever: sleep until the "
                       "oldest start leaves the window instead."),
    }
    for finding in report.findings:
        if finding.prop == "finishes" and reason in hints:
            finding.hint = hints[reason]
    stuck = {"deadlock": "the others waited forever",
             "wall-limit": "then the event loop spun without letting the clock move",
             "virtual-limit": "the others were still waiting after 600 virtual seconds"}[reason]
    report.add("lets every request through", False,
               f"{through} of {n} requests were let through; {stuck}",
               "Every call of acquire() must return as soon as the window has room.",
               {"deadlock": "permits never come back", "wall-limit": "busy wait",
                "virtual-limit": "permits never come back"}[reason])


def _globals_of(obj: Any) -> dict:
    """The module globals of a learner's function or class (for `from time import sleep`)."""
    if inspect.isclass(obj):
        for value in vars(obj).values():
            if inspect.isfunction(value):
                return value.__globals__
        return {}
    return getattr(obj, "__globals__", {})




EXERCISES = {"RateLimiter": check_rate_limiter}
