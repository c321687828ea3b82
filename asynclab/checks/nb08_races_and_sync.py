"""Checks for notebook 08_races_and_sync: a single-flight cache.

``SingleFlightCache(fetch)`` with ``await cache.get(key)`` is played three small
scenes on virtual time, against a fake ``fetch`` the check controls:

* **a rush**: several callers ask for the same keys while their fetches run,
  different keys overlap, and a few callers come back after the fetches ended;
* **an outage**: the first fetch of a key fails while callers wait for it; a
  caller comes back later, when the service works again;
* **a walk-away**: the first caller of a slow key is cancelled while another
  waits for the same fetch, and a third asks after the cancellation.

The scenes are played one after the other in one virtual run (one timeline),
each with a new cache and a new fake service. Each caller is a task of the
check's own that records what ``get`` gave it (a value, an error, a
cancellation) and when, on the virtual clock, from the start of its scene. Callers
still waiting long after everything should have ended are recorded as stuck
(the check then stops them), so that a cache that strands its waiters is
diagnosed by name instead of ending the run as a deadlock.

The guarantee the exercise states, and the check holds the learner to: a
cancelled caller only stops *its own* wait; the fetch goes on for the others
(and its value is kept). A fetch that fails reaches every caller waiting for
it, and is not kept: the next call fetches again.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import dataclass, field, replace
from typing import Any

from asynclab.checking import (Finding, Observation, Report, common_findings, describe_error,
                               observe, varied)
from asynclab.fakes import Call, FakeService, ServiceError

NOTEBOOK = "08_races_and_sync"
EXERCISE = "SingleFlightCache"
TOLERANCE_S = 1e-3  # virtual time is exact; this only absorbs float rounding
STUCK_AFTER_S = 30.0  # a caller still waiting this long after the last expected end is stuck
DEFAULT_SEED = 15

# -- the scenes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One caller: who, which key, when it calls ``get`` and when the check cancels it."""

    who: str
    key: str
    at: float
    cancel_at: float | None = None


@dataclass(frozen=True)
class Scene:
    latency_s: dict[str, float]
    asks: tuple[Ask, ...]
    failures: dict[str, int] = field(default_factory=dict)  # key -> how many first fetches fail

    def first_at(self, key: str) -> float:
        return min(a.at for a in self.asks if a.key == key)

    def first_end(self, key: str) -> float:
        """When the first fetch of ``key`` ends, if it starts when the first caller asks."""
        return self.first_at(key) + self.latency_s[key]

    def keys(self) -> list[str]:
        return list(dict.fromkeys(a.key for a in self.asks))

    def horizon(self) -> float:
        ends = [a.at + self.latency_s[a.key] for a in self.asks]
        return max(ends) + STUCK_AFTER_S


def _callers(plan: list[tuple[str, float]]) -> tuple[Ask, ...]:
    """Number the callers in the order they arrive: ``caller 1``, ``caller 2`` ..."""
    ordered = sorted(plan, key=lambda kv: kv[1])
    return tuple(Ask(f"caller {i}", key, at) for i, (key, at) in enumerate(ordered, start=1))


def scenes(variant: str = "public", seed: int | None = None) -> tuple[Scene, Scene, Scene]:
    """(rush, outage, walk-away) for a variant; hidden ones are drawn from ``seed``."""
    if variant == "public":
        rush = Scene({"alpha": 2.0, "beta": 3.0, "gamma": 1.5}, _callers([
            ("alpha", 0.0), ("alpha", 0.0), ("beta", 0.0), ("alpha", 0.5), ("gamma", 0.5),
            ("beta", 1.0), ("alpha", 1.5), ("alpha", 4.0), ("gamma", 4.0)]))
        outage = Scene({"flaky": 1.0}, _callers([
            ("flaky", 0.0), ("flaky", 0.25), ("flaky", 0.5), ("flaky", 3.0)]), {"flaky": 1})
        walk = Scene({"report": 4.0}, (Ask("caller 1", "report", 0.0, cancel_at=1.0),
                                       Ask("caller 2", "report", 0.5),
                                       Ask("caller 3", "report", 2.0)))
        return rush, outage, walk
    rng = random.Random(DEFAULT_SEED if seed is None else seed)
    names = rng.sample(["users", "prices", "stock", "orders", "rates", "maps", "news"], 5)
    step = 0.25
    # The rush: three keys whose fetches overlap, 2-4 callers each while they run, and two
    # callers after every fetch has ended.
    latency = {k: rng.choice([1.5, 2.0, 2.5, 3.0, 3.5]) for k in names[:3]}
    plan: list[tuple[str, float]] = []
    for key, lat in latency.items():
        first = rng.choice([0.0, 0.25, 0.5])
        plan.append((key, first))
        slots = [first + step * i for i in range(0, int(lat / step))]  # all before the end
        plan.extend((key, t) for t in rng.sample(slots, rng.randint(1, 3)))
    late = max(min(t for k2, t in plan if k2 == k) + lat for k, lat in latency.items()) + 1.0
    plan.extend((key, late + step * i) for i, key in enumerate(rng.sample(list(latency), 2)))
    rush = Scene(latency, _callers(plan))
    # The outage: 2-4 callers while the failing fetch runs, one caller after it failed.
    key, lat = names[3], rng.choice([0.75, 1.0, 1.5, 2.0])
    waits = [0.0] + sorted(rng.sample([step * i for i in range(1, int(lat / step))],
                                      rng.randint(1, min(3, int(lat / step) - 1))))
    outage = Scene({key: lat}, _callers([(key, t) for t in waits]
                                        + [(key, lat + rng.choice([1.0, 2.0, 3.0]))]), {key: 1})
    # The walk-away: the first caller is cancelled; one waits since before, one comes after.
    key, lat = names[4], rng.choice([3.0, 4.0, 5.0])
    cancel = rng.choice([0.5, 1.0, 1.5])
    before = rng.choice([step * i for i in range(1, int(cancel / step))] or [cancel / 2])
    after = rng.choice([cancel + step * i for i in range(1, int((lat - cancel) / step))])
    walk = Scene({key: lat}, (Ask("caller 1", key, 0.0, cancel_at=cancel),
                              Ask("caller 2", key, before), Ask("caller 3", key, after)))
    return rush, outage, walk


# -- playing a scene -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What ``get`` gave one caller, and when."""

    ask: Ask
    how: str = "waiting"  # "value", "error", "cancelled" or "waiting" (stuck)
    value: Any = None
    error: BaseException | None = None
    ended: float | None = None


@dataclass
class Played:
    """One scene as it went: what each caller got, and the fake service's record."""

    scene: Scene
    service: FakeService
    outcomes: list[Outcome]
    t0: float = 0.0  # when the scene started, on the run's virtual clock

    def fetches(self, key: str) -> list[Call]:
        """The fetches of ``key``, timed from the start of the scene."""
        return [replace(c, start=c.start - self.t0, end=None if c.end is None else c.end - self.t0)
                for c in self.service.calls_for(key)]


def _quiet_about_unretrieved(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A learner's failed fetch task that nobody awaited would log a traceback under the
    verdict, long after the check; the failure is judged by the check instead."""
    if "never retrieved" not in context.get("message", ""):
        loop.default_exception_handler(context)


async def _act(cls: Any, played: Played) -> None:
    """Play one scene: a new cache, the callers arriving on time, stuck callers stopped."""
    scene = played.scene
    loop = asyncio.get_running_loop()
    played.t0 = t0 = loop.time()
    cache = cls(played.service.fetch)
    closing = False

    async def ask(out: Outcome) -> None:
        """One caller. It ends as get() did (so its timeline row shows a failure or a
        cancellation), once the outcome is recorded."""
        try:
            out.value = await cache.get(out.ask.key)
            out.how = "value"
        except asyncio.CancelledError:
            if closing:  # stopped by the check because it was stuck: it stays "waiting"
                return
            out.how = "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - the learner's error is an outcome
            out.how, out.error = "error", exc
            raise
        finally:
            if out.how != "waiting":
                out.ended = loop.time() - t0

    tasks = []
    for out in played.outcomes:
        delay = t0 + out.ask.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(ask(out), name=f"{out.ask.who}: get({out.ask.key!r})")
        if out.ask.cancel_at is not None:
            loop.call_at(t0 + out.ask.cancel_at, task.cancel)
        tasks.append(task)
    await asyncio.wait(tasks, timeout=max(t0 + scene.horizon() - loop.time(), 0.0))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # recorded in its Outcome; retrieved, so asyncio does not log it
    stuck = [t for t in tasks if not t.done()]
    closing = True
    for task in stuck:
        task.cancel()
    if stuck:
        await asyncio.wait(stuck, timeout=1.0)
    for out in played.outcomes:
        if isinstance(out.error, NotImplementedError):
            raise out.error  # an unwritten get(): reported as "not written yet"


def play(cls: Any, scenes_: tuple[Scene, ...]) -> tuple[Observation, list[Played]]:
    """Play the scenes one after the other in one virtual run, each with a cache of its own."""
    played = [Played(sc, FakeService(sc.latency_s, failures=sc.failures),
                     [Outcome(a) for a in sorted(sc.asks, key=lambda a: a.at)])
              for sc in scenes_]

    async def callers() -> None:
        asyncio.get_running_loop().set_exception_handler(_quiet_about_unretrieved)
        for one in played:
            await _act(cls, one)

    obs = observe(callers, name="the check's callers",
                  max_virtual_s=sum(sc.horizon() for sc in scenes_) + 600.0,
                  namespaces=(_globals_of(cls),))
    return obs, played


def _globals_of(cls: Any) -> dict:
    """The learner's module globals (for ``from time import sleep``), found through a method."""
    for value in vars(cls).values() if isinstance(cls, type) else ():
        found = getattr(value, "__globals__", None)
        if isinstance(found, dict):
            return found
    return getattr(cls, "__globals__", {}) or {}


# -- words -------------------------------------------------------------------------------------


def _s(t: float | None) -> str:
    """``3.0 -> "3 s"``, ``0.25 -> "0.25 s"``."""
    return "never" if t is None else f"{round(t, 3):g} s"


def _names(outs: list[Outcome]) -> str:
    """``caller 2`` / ``callers 2 and 3`` / ``callers 2, 3 and 5``."""
    nums = [o.ask.who.split()[-1] for o in outs]
    if len(nums) == 1:
        return f"caller {nums[0]}"
    return f"callers {', '.join(nums[:-1])} and {nums[-1]}"


def _awaitable_name(value: Any) -> str:
    if inspect.iscoroutine(value):
        value.close()  # reported here: no "never awaited" warning later
        return f"a coroutine object {value.__qualname__}()"
    return f"a {type(value).__name__} object"


def _reused_coroutine(exc: BaseException | None) -> bool:
    return isinstance(exc, RuntimeError) and ("awaited already" in str(exc)
                                              or "already awaited" in str(exc))


def _got(out: Outcome, timed: bool = True) -> str:
    """What a caller got, in words (with when, if ``timed``)."""
    at = f" at {_s(out.ended)}" if timed and out.ended is not None else ""
    if out.how == "value":
        if inspect.isawaitable(out.value):
            return f"got {_awaitable_name(out.value)}{at} instead of the value: a forgotten `await`"
        return f"got {repr(out.value)[:80]}{at}"
    if out.how == "error":
        return f"raised {describe_error(out.error)}{at}"
    if out.how == "cancelled":
        return f"got CancelledError{at}, though the check never cancelled it"
    return "was still waiting when the check gave up on it"


def _instead(out: Outcome, end: float) -> str:
    """``", instead of its value at 4 s"``, unless what it got already says what went wrong."""
    if _hint_for(out, "") or out.how == "waiting":
        return ""
    return f", instead of its value at {_s(max(out.ask.at, end))}"


def _diag_for(out: Outcome, default: str) -> str:
    """The diagnosis that fits what a caller got (see ``_hint_for``)."""
    if out.how == "value" and inspect.isawaitable(out.value):
        return "forgotten await"
    if _reused_coroutine(out.error):
        return "coroutine awaited twice"
    return default


def _add(report: Report, prop: str, passed: bool, message: str, hint: str,
         diagnosis: str) -> None:
    """``report.add``, with what the code did when it failed (``Finding.diagnosis``)."""
    report.add(prop, passed, message, hint)
    if not passed:
        report.findings[-1].diagnosis = diagnosis  # read by tests and by the grader's report


def _fail(report: Report, diagnosis: str, prop: str, message: str, hint: str) -> None:
    _add(report, prop, False, message, hint, diagnosis)


def _hint_for(out: Outcome, default: str) -> str:
    """The hint that fits what a caller got, when it points at a mistake of its own."""
    if out.how == "value" and inspect.isawaitable(out.value):
        return HINT_FORGOTTEN_AWAIT
    if _reused_coroutine(out.error):
        return HINT_SHARE_TASK
    return default


# -- judging --------------------------------------------------------------------------------

HINT_SHARE_TASK = ("A coroutine object can be awaited only once, so storing `fetch(key)` for the "
                   "other callers cannot work. Store `asyncio.create_task(fetch(key))`: a Task "
                   "runs once, and any number of callers may await it.")
HINT_FORGOTTEN_AWAIT = ("get() must give back the value itself: `return await ...`. Returning a "
                        "Task, Future or coroutine hands the caller something still to await.")
HINT_CHECK_THEN_ACT = ("This is the check-then-act race: every caller checks the cache, finds "
                       "nothing (the value only arrives when the fetch ends), and starts a fetch "
                       "of its own. Record the fetch itself, a Task, in a dict *before* any "
                       "`await`, and let every later caller await that same Task.")
HINT_ONE_LOCK = ("One lock around all of get() makes every key wait for every other key's fetch. "
                 "Hold nothing shared by all keys while a fetch is awaited; a shared Task per key "
                 "needs no lock at all.")


def _judge_rush(report: Report, p: Played) -> None:
    sc = p.scene
    outs = p.outcomes

    # 1. Every caller gets the right value.
    bad = [o for o in outs if not (o.how == "value" and o.value == p.service.result_for(o.ask.key))]
    if not bad:
        report.add("every caller gets its value", True,
                   f"all {len(outs)} callers got the value of their key")
    else:
        first = bad[0]
        reused = next((o for o in bad if _reused_coroutine(o.error)), None)
        awaitable = next((o for o in bad if o.how == "value" and inspect.isawaitable(o.value)),
                         None)
        shown = reused or awaitable or first
        diag = ("coroutine awaited twice" if reused else "forgotten await" if awaitable else
                "waiters never woken" if shown.how == "waiting" else "wrong value")
        hint = (HINT_SHARE_TASK if reused else HINT_FORGOTTEN_AWAIT if awaitable else
                "Nothing woke that caller up: every caller waiting for a key must be woken when "
                "its fetch ends." if shown.how == "waiting" else
                "Give every caller the value that `await fetch(key)` returned for its key.")
        _fail(report, diag,
              "every caller gets its value",
              f"{len(bad)} of {len(outs)} callers did not get their value; "
              f"{shown.ask.who} (get({shown.ask.key!r}) at {_s(shown.ask.at)}) {_got(shown)}",
              hint)

    # 2. One fetch per key for the callers who ask while it runs.
    dupes = []
    for key in sc.keys():
        during = [c for c in p.fetches(key) if c.start < sc.first_end(key) - TOLERANCE_S]
        if len(during) > 1:
            dupes.append((key, during))
    if not dupes:
        report.add("one fetch per key, however many ask", True,
                   "each key was fetched once for all the callers who asked while it ran")
    else:
        key, during = dupes[0]
        starts = ", ".join(_s(c.start).removesuffix(" s") for c in during)
        _fail(report, "check-then-act race",
              "one fetch per key, however many ask",
              f"{key!r} was fetched {len(during)} times (started at {starts} s) for the "
              f"callers who asked while its first fetch was running", HINT_CHECK_THEN_ACT)

    # 3. Different keys are fetched at the same time.
    late = []
    for key in sc.keys():
        fetches = p.fetches(key)
        if not fetches or fetches[0].start > sc.first_at(key) + TOLERANCE_S:
            late.append((key, fetches[0].start if fetches else None))
    if not late:
        report.add("different keys fetched at the same time", True,
                   f"each key's fetch started when it was first asked for; up to "
                   f"{p.service.max_in_flight} fetches ran at once")
    else:
        key, start = late[0]
        serial = p.service.max_in_flight <= 1
        _fail(report, "one lock for all keys" if serial else "fetch started late",
              "different keys fetched at the same time",
              f"{key!r} was first asked for at {_s(sc.first_at(key))}, but its fetch "
              + (f"started only at {_s(start)}" if start is not None else "never started")
              + ("; fetches of different keys ran one at a time (at most 1 in flight), as "
                 "if one lock guarded every key" if serial else ""),
              HINT_ONE_LOCK if serial else
              "Start the fetch of a key the moment its first caller asks for it.")

    # 4. A fetched value is kept: later callers get it at once, without a new fetch.
    serial_hint = ("It waited behind other keys' fetches: see 'different keys fetched at the same "
                   "time' above.")
    kept_bad: list[tuple[Outcome, str]] = []
    for o in outs:
        end = sc.first_end(o.ask.key)
        if o.ask.at <= end + TOLERANCE_S:
            continue
        asked = f"{o.ask.who} asked for {o.ask.key!r} at {_s(o.ask.at)}, after its fetch had ended"
        if any(c.start >= end - TOLERANCE_S for c in p.fetches(o.ask.key)):
            kept_bad.append((o, f"{asked}, and it was fetched again"))
        elif o.how != "value" or o.ended is None or o.ended > o.ask.at + TOLERANCE_S:
            kept_bad.append((o, f"{asked}, and {_got(o)}"))
    if not kept_bad:
        report.add("a fetched value is kept", True,
                   "callers who came after a fetch had ended got its value at once, with no new "
                   "fetch")
    else:
        o, msg = kept_bad[0]
        slow_only = o.how == "value" and not inspect.isawaitable(o.value) and late
        _fail(report, "one lock for all keys" if slow_only else _diag_for(o, "value not kept"),
              "a fetched value is kept", msg,
              serial_hint if slow_only else
              _hint_for(o, "Keep the value (or the finished Task) once a fetch succeeds, "
                           "and give it straight back to later callers."))

    # 5. Each waiting caller gets the value the moment its fetch ends.
    slow = [o for o in outs if o.how == "value" and o.ended is not None
            and o.ask.at <= sc.first_end(o.ask.key) + TOLERANCE_S
            and o.ended > max(o.ask.at, sc.first_end(o.ask.key)) + TOLERANCE_S]
    if not slow:
        report.add("waiters get the value the moment it arrives", True,
                   "every waiting caller got its value at the instant the fetch ended")
    else:
        o = slow[0]
        own = o.ask.key in {k for k, _ in dupes}
        _fail(report, "check-then-act race" if own else "one lock for all keys" if late else "polling",
              "waiters get the value the moment it arrives",
              f"{o.ask.who} asked for {o.ask.key!r} at {_s(o.ask.at)} and got it at "
              f"{_s(o.ended)}, though the first fetch of it ended at "
              f"{_s(sc.first_end(o.ask.key))}",
              "It waited for a fetch of its own instead of the one already running: see "
              "'one fetch per key' above." if own else serial_hint if late else
              "Do not poll (`while ...: await asyncio.sleep(...)` notices late): await the "
              "running fetch itself, a Task or a Future, which wakes you the moment it ends.")


HINT_SHARE_OUTCOME = ("Share the outcome, not just the turn: callers that only wait for their "
                      "turn (behind a lock, or polling a flag) each fetch again after a failure. "
                      "Let them all await the same Task, which raises the same error in each of "
                      "them.")


def _judge_outage(report: Report, p: Played) -> None:
    sc = p.scene
    (key,) = sc.keys()
    failed_at = sc.first_end(key)
    waiting = [o for o in p.outcomes if o.ask.at < failed_at - TOLERANCE_S]
    later = [o for o in p.outcomes if o.ask.at > failed_at + TOLERANCE_S]
    fetches = p.fetches(key)
    retry_at = min(o.ask.at for o in later)
    during = [c for c in fetches if c.start < failed_at - TOLERANCE_S]
    extra = [c for c in fetches if failed_at - TOLERANCE_S <= c.start < retry_at - TOLERANCE_S]

    # 6. The failure reaches every caller waiting for that fetch.
    stuck = [o for o in waiting if o.how == "waiting"]
    wrong = [o for o in waiting if not (o.how == "error" and isinstance(o.error, ServiceError)
                                        and o.ended is not None
                                        and abs(o.ended - failed_at) <= TOLERANCE_S)]
    prop = "a failure reaches every waiter"
    if not wrong:
        report.add(prop, True, f"the fetch of {key!r} failed at {_s(failed_at)}, and all "
                               f"{len(waiting)} callers waiting for it got its error then")
    elif len(during) > 1:
        starts = ", ".join(_s(c.start).removesuffix(" s") for c in during)
        _fail(report, "check-then-act race",
              prop,
              f"{key!r} was fetched {len(during)} times (started at {starts} s) while its "
              f"first fetch was failing: each caller had a fetch of its own, so they did not "
              f"share its outcome",
              "One fetch per key, shared by its callers: see 'one fetch per key' above.")
    elif stuck:
        one = len(stuck) == 1
        _fail(report, "waiters never woken after a failure",
              prop,
              f"the fetch of {key!r} failed at {_s(failed_at)}, and {_names(stuck)} "
              f"{'was' if one else 'were'} still waiting for it {STUCK_AFTER_S:g} s later: "
              f"nothing woke {'it' if one else 'them'} up (an Event set only on success?)",
              "When the fetch fails, every waiter must be woken with that failure. A Task "
              "holds the exception too: callers awaiting it all get it raised.")
    elif extra:
        _fail(report, "waiters retry after a failure",
              prop,
              f"the fetch of {key!r} failed at {_s(failed_at)}; the callers waiting for "
              f"it did not get its error: they fetched it again themselves "
              f"({len(extra)} more fetch{'es' if len(extra) > 1 else ''}, from "
              f"{_s(extra[0].start)})", HINT_SHARE_OUTCOME)
    else:
        o = wrong[0]
        _fail(report, _diag_for(o, "failure not shared"),
              prop,
              f"the fetch of {key!r} failed at {_s(failed_at)} with ServiceError; "
              f"{o.ask.who} (waiting since {_s(o.ask.at)}) {_got(o)}",
              _hint_for(o, "Give every waiter the fetch's own outcome: await the one Task, "
                           "which raises the same exception in every caller awaiting it."))

    # 7. A failure is not kept: a later call gets a value (a new fetch's).
    o = later[0]
    ok = (o.how == "value" and o.value == p.service.result_for(key) and o.ended is not None
          and o.ended <= o.ask.at + sc.latency_s[key] + TOLERANCE_S)
    since = f"{o.ask.who} asked for {key!r} at {_s(o.ask.at)}, {_s(o.ask.at - failed_at)} after "
    hint = ("Forget a fetch that failed (remove its Task from the dict when it fails, for "
            "example in a done callback), so that the next call tries again.")
    diag = ""
    if ok:
        msg = f"{since}the failure, and got the value of a fetch that worked"
    elif o.how == "error" and isinstance(o.error, ServiceError) \
            and not any(c.start >= o.ask.at - TOLERANCE_S for c in fetches):
        msg = f"{since}the failure, and got the old error again without a new fetch: the " \
              f"failure is kept forever"
        diag = "failure kept forever"
    elif o.how == "waiting":
        msg = (f"{since}the failure, and was still waiting {STUCK_AFTER_S:g} s later: the failed "
               f"fetch left {key!r} marked as in progress")
        diag = "failure leaves the key in progress"
    else:
        msg = f"{since}the failure, and {_got(o)}"
        hint, diag = _hint_for(o, hint), _diag_for(o, "no new fetch after a failure")
    _add(report, "a failure is not kept", ok, msg, hint, diag)


def _judge_walk_away(report: Report, p: Played) -> None:
    sc = p.scene
    (key,) = sc.keys()
    quitter = next(o for o in p.outcomes if o.ask.cancel_at is not None)
    cancel_at = quitter.ask.cancel_at
    others = [o for o in p.outcomes if o is not quitter]
    end = sc.first_end(key)
    fetches = p.fetches(key)

    def fine(o: Outcome) -> bool:
        return (o.how == "value" and o.value == p.service.result_for(key)
                and o.ended is not None and abs(o.ended - max(o.ask.at, end)) <= TOLERANCE_S)

    # 8. A cancelled caller leaves the fetch to the others.
    prop = "a cancelled caller does not strand the others"
    bad = [o for o in others if not fine(o)]
    before = [c for c in fetches if c.start < cancel_at - TOLERANCE_S]
    killed = bool(fetches) and fetches[0].outcome == "cancelled" \
        and fetches[0].end is not None and abs(fetches[0].end - cancel_at) <= TOLERANCE_S
    victims = [o for o in others if o.how == "cancelled"]
    stuck = [o for o in others if o.how == "waiting"]
    one = len(victims) == 1
    if len(fetches) == 1 and fetches[0].outcome == "ok" and not bad:
        report.add(prop, True, f"{quitter.ask.who} was cancelled at {_s(cancel_at)}; the fetch of "
                               f"{key!r} went on and {_names(others)} got its value at {_s(end)}")
    elif len(before) > 1:
        starts = ", ".join(_s(c.start).removesuffix(" s") for c in before)
        _fail(report, "check-then-act race",
              prop,
              f"{key!r} was fetched {len(before)} times (started at {starts} s) before "
              f"{quitter.ask.who} was even cancelled: each caller waited for a fetch of "
              f"its own", "One fetch per key, shared by its callers: see 'one fetch per "
                          "key' above.")
    elif killed and victims:
        _fail(report, "cancellation spreads to the shared fetch",
              prop,
              f"cancelling {quitter.ask.who} at {_s(cancel_at)} cancelled the shared fetch "
              f"of {key!r} too: {_names(victims)} got CancelledError though nobody "
              f"cancelled {'it' if one else 'them'}",
              "Awaiting a Task directly passes the caller's cancellation on to the Task. "
              "Await it through `asyncio.shield(task)`: a cancelled caller stops waiting, "
              "and the fetch goes on for the others (lesson 07).")
    elif stuck:
        _fail(report, "waiters stranded by a cancelled caller",
              prop,
              f"{quitter.ask.who} was cancelled at {_s(cancel_at)}, and {_names(stuck)} "
              f"{'was' if len(stuck) == 1 else 'were'} still waiting for {key!r} "
              f"{STUCK_AFTER_S:g} s after its fetch should have ended",
              "The fetch died with its first caller and left the others waiting for a "
              "result that never comes (a CancelledError is not an Exception: `except "
              "Exception` does not see it). Run the fetch in a Task of its own, and await "
              "it with asyncio.shield.")
    elif killed:
        o = bad[0] if bad else others[0]
        again = (f" (it was started again at {_s(fetches[1].start)})" if len(fetches) > 1 else "")
        _fail(report, _diag_for(o, "fetch dies with its first caller"),
              prop,
              f"the fetch of {key!r} was cancelled with {quitter.ask.who} at "
              f"{_s(cancel_at)}{again}; {o.ask.who} {_got(o)}{_instead(o, end)}",
              _hint_for(o, "The fetch must not belong to its first caller: run it in a Task "
                           "of its own, and await it with asyncio.shield, so that a "
                           "cancelled caller only stops its own wait."))
    else:
        o = bad[0] if bad else others[0]
        _fail(report, _diag_for(o, "a cancelled caller hurts the others"),
              prop,
              f"after {quitter.ask.who} was cancelled at {_s(cancel_at)}, {o.ask.who} "
              f"{_got(o)}{_instead(o, end)}",
              _hint_for(o, "A cancelled caller must only stop its own wait: one fetch, in "
                           "its own Task, awaited through asyncio.shield."))

    # 9. The cancelled caller really stops.
    stopped = quitter.how == "cancelled" and quitter.ended is not None \
        and abs(quitter.ended - cancel_at) <= TOLERANCE_S
    swallowed = quitter.how in ("value", "error") and not inspect.isawaitable(quitter.value) \
        and (quitter.ended or 0.0) > cancel_at + TOLERANCE_S
    _add(report, "a cancelled caller stops waiting", stopped,
               f"{quitter.ask.who} ended with CancelledError at {_s(cancel_at)}, when it was "
               f"cancelled" if stopped else
               f"{quitter.ask.who} was cancelled at {_s(cancel_at)} but {_got(quitter)}"
               + (": the cancellation was swallowed" if swallowed else ""),
               "Let CancelledError propagate out of get(): do not catch it, or re-raise it."
               if swallowed else _hint_for(quitter, "Let CancelledError propagate out of get()."),
               "swallowed cancellation" if swallowed
               else _diag_for(quitter, "cancellation not honoured"))


# -- the check --------------------------------------------------------------------------------


def _require_class(obj: Any) -> Finding | None:
    """A failure finding when ``obj`` is not a class with an ``async def get``."""
    if not isinstance(obj, type):
        found = Finding("is a class", False,
                        f"{EXERCISE} is not a class (it is {type(obj).__name__}).",
                        f"Define it with `class {EXERCISE}:`, with `__init__(self, fetch)` and "
                        f"`async def get(self, key)`.")
        found.diagnosis = "not a class"
        return found
    get = getattr(obj, "get", None)
    if get is None or not inspect.iscoroutinefunction(get):
        found = Finding("has an async get()", False,
                        f"{EXERCISE} has no get method." if get is None else
                        f"{EXERCISE}.get is a plain method, not a coroutine function.",
                        "Give it `async def get(self, key)`." if get is None else
                        "Define it with `async def get(self, key)` so that it can await.")
        found.diagnosis = "no async get()"
        return found
    return None


def check_single_flight_cache(cls: Any, *, variant: str = "public",
                              seed: int | None = None) -> Report:
    """Judge ``SingleFlightCache(fetch)`` and its ``await cache.get(key)``.

    Properties: every caller gets its value; one fetch per key however many
    callers ask while it runs (no check-then-act race); different keys fetched
    at the same time (not serialised by one lock); a fetched value kept and
    given at once to later callers; waiters woken the instant the fetch ends
    (no polling); a failure reaching every waiter, and not kept (the next call
    fetches again); a cancelled caller stopping its own wait only, the fetch
    going on for the others; no blocking call, no forgotten await.
    """
    report = Report(EXERCISE)
    bad = _require_class(cls)
    if bad:
        report.findings.append(bad)
        return report
    obs, (rush, outage, walk) = play(cls, scenes(variant, seed))
    report.timeline = obs.timeline
    report.findings.extend(common_findings(EXERCISE, obs))
    if obs.hang is not None or obs.error is not None:
        return report
    _judge_rush(report, rush)
    _judge_outage(report, outage)
    _judge_walk_away(report, walk)
    return report


EXERCISES = {EXERCISE: varied(check_single_flight_cache)}
