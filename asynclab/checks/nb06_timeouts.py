"""Checks for notebook 06_timeouts: several steps within one overall time budget."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from asynclab.checking import (Ending, Report, add_new, ending_of, hidden_rng, observe, plural,
                               require_coroutine_function, safe_findings, seconds, short_repr,
                               varied)
from asynclab.fakes import NamedRun, Steps

NOTEBOOK = "06_timeouts"
TOLERANCE_S = 1e-3  # virtual time is exact; this only absorbs float rounding
# A remaining budget computed with time.monotonic() instead of the loop's clock drifts
# from the virtual clock by the real time the check takes: far less than this.
PER_STEP_SLACK_S = 0.5
FITS_START_S = 50.0  # the "enough budget" run starts late, so a budget counted from 0 shows


@dataclass(frozen=True)
class PipelineScenario:
    overrun: dict[str, float]  # step -> seconds; together longer than deadline_s
    deadline_s: float
    fits: dict[str, float]  # together shorter than fits_deadline_s
    fits_deadline_s: float
    cancel_at_s: float  # when the caller cancels, in the third run

    def expected_overrun(self) -> tuple[list[str], str]:
        """The steps that complete within the budget, and the one that is cut off."""
        done, t = [], 0.0
        for name, duration in self.overrun.items():
            if t + duration > self.deadline_s:
                return done, name
            done.append(name)
            t += duration
        raise ValueError("the overrun scenario fits in its budget")

    def start_of(self, name: str) -> float:
        t = 0.0
        for other, duration in self.overrun.items():
            if other == name:
                return t
            t += duration
        raise KeyError(name)


def scenario(variant: str, seed: int | None = None) -> PipelineScenario:
    if variant == "public":
        names = ["log_in", "load_cart", "price_items", "reserve_stock", "send_receipt"]
        return PipelineScenario(dict(zip(names, [1.0, 2.0, 1.5, 30.0, 1.0])), 8.0,
                                dict(zip(names, [1.0, 2.0, 1.5, 2.5, 1.0])), 10.0, 2.0)
    # Hidden, drawn from the seed: one step far too long, which the budget cuts while it
    # runs (never at a step boundary); the same steps, quick, within a larger budget; the
    # caller cancels in the middle of the second step.
    rng = hidden_rng(variant, seed)
    names = rng.sample(["connect", "authenticate", "query", "aggregate", "export", "notify",
                        "archive"], rng.randint(5, 6))
    quick = [rng.choice([0.25, 0.5, 0.75, 1.0, 1.5, 2.0]) for _ in names]
    cut = rng.randint(2, len(names) - 2)
    overrun = list(quick)
    overrun[cut] = rng.choice([30.0, 40.0])
    deadline = sum(quick[:cut]) + rng.choice([0.25, 0.75, 1.25])
    return PipelineScenario(dict(zip(names, overrun)), deadline, dict(zip(names, quick)),
                            sum(quick) + rng.choice([1.0, 2.0]), quick[0] + quick[1] / 2)


def _overlap(runs: list[NamedRun], t0: float = 0.0) -> str | None:
    """A sentence about the first step that started before the previous one ended, if any.

    Times are said in seconds after ``t0``, the moment run_pipeline was called.
    """
    ordered = sorted(runs, key=lambda r: r.start)
    for before, after in zip(ordered, ordered[1:]):
        if before.end is None or after.start < before.end - TOLERANCE_S:
            until = "the end" if before.end is None else seconds(before.end - t0)
            return (f"{after.name} started at {seconds(after.start - t0)} while {before.name} was "
                    f"still running (until {until})")
    return None


def _order_problem(runs: list[NamedRun], names: list[str]) -> str | None:
    started = [r.name for r in runs]
    repeated = sorted({n for n in started if started.count(n) > 1})
    if repeated:
        return f"{repeated[0]} was started {started.count(repeated[0])} times"
    if started != names[:len(started)]:
        return f"the steps started in the order {started}, not in the order given"
    return None


@varied
def check_run_pipeline(fn, *, variant: str = "public",
                       seed: int | None = None) -> Report:
    """Judge ``run_pipeline(steps, deadline_s)``.

    Three runs on virtual time: one whose steps fit in the budget (it must return
    every result, in order, started one after another); one whose steps do not fit
    (it must return the results completed in time exactly when the budget runs out,
    the running step cancelled, no later step started); and one that the caller
    cancels (the cancellation must propagate). No blocking call.
    """
    report = Report("run_pipeline")
    bad = require_coroutine_function("run_pipeline", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    namespaces = (getattr(fn, "__globals__", {}),)

    # The run that runs out of budget: its timeline is the one the learner sees.
    over = Steps(dict(sc.overrun))
    obs = observe(lambda: ending_of(lambda: fn(over.functions(), sc.deadline_s), over.look,
                                    catch=(TimeoutError,), name="run_pipeline"),
                  name="caller", namespaces=namespaces, max_virtual_s=600.0)
    report.timeline = obs.timeline
    ending: Ending | None = obs.result if isinstance(obs.result, Ending) else None
    add_new(report, safe_findings("run_pipeline", replace(obs, result=ending and ending.value)))
    if ending is None or any(not f.passed for f in report.findings
                             if f.prop != "never blocks the event loop"):
        return report

    # The run with enough budget, started late on the clock.
    fits = Steps(dict(sc.fits))

    async def late_call():
        await asyncio.sleep(FITS_START_S)
        return await ending_of(lambda: fn(fits.functions(), sc.fits_deadline_s), fits.look,
                               name="run_pipeline")

    fits_obs = observe(late_call, name="caller", namespaces=namespaces, max_virtual_s=600.0)
    fits_ending = fits_obs.result if isinstance(fits_obs.result, Ending) else None
    fits_problems = safe_findings("run_pipeline",
                                  replace(fits_obs, result=fits_ending and fits_ending.value))

    # The run its caller cancels.
    cancelled = Steps(dict(sc.overrun))
    big_budget = sum(sc.overrun.values()) * 2
    cancel_obs = observe(lambda: ending_of(lambda: fn(cancelled.functions(), big_budget),
                                           cancelled.look, cancel_after_s=sc.cancel_at_s,
                                           name="run_pipeline", catch=(Exception,)),
                         name="caller", namespaces=namespaces, max_virtual_s=600.0)
    cancel_ending = cancel_obs.result if isinstance(cancel_obs.result, Ending) else None

    _judge_fits(report, sc, fits, fits_ending, fits_problems)
    _judge_order(report, sc, over, fits)
    _judge_overrun(report, sc, over, ending)
    _judge_caller_cancel(report, sc, cancelled, cancel_ending, cancel_obs)
    add_new(report, [f for f in safe_findings("run_pipeline", replace(cancel_obs, result=None))
                     if f.prop == "never blocks the event loop"])
    return report


def _judge_fits(report: Report, sc: PipelineScenario, fits: Steps, ending: Ending | None,
                problems: list) -> None:
    names = list(sc.fits)
    expected = [Steps.result_for(n) for n in names]
    total = sum(sc.fits.values())
    budget = f"with a {seconds(sc.fits_deadline_s)} budget for {seconds(total)} of steps"
    prop = "all results when the budget is enough"
    hint = "Run each step with `await step()`, in order, and return the list of their results."
    problems = [f for f in problems if f.prop != "never blocks the event loop"]
    if ending is None or problems:
        failure = next((f for f in problems if not f.passed), None)
        report.add(prop, False, f"{budget}: {failure.message if failure else 'no result'}",
                   failure.hint if failure else hint,
                   (failure.diagnosis if failure else "") or "fails with enough budget")
        return
    got = ending.value
    if got == expected or (isinstance(got, tuple) and list(got) == expected):
        took = ending.at - FITS_START_S
        on_time = took <= total + TOLERANCE_S  # sooner means overlapping steps: judged apart
        report.add(prop, on_time,
                   f"{budget}, it returned all {len(names)} results in order" if on_time else
                   f"{budget}, it returned all {len(names)} results, but only after "
                   f"{took:.1f} virtual s instead of {seconds(total)}",
                   "Return as soon as the last step is done; do not wait for the deadline.",
                   "waits for the deadline")
        return
    if ending.how == "returned" and isinstance(got, list) and len(got) < len(expected) \
            and fits.running() == [] and ending.at - FITS_START_S < total - TOLERANCE_S:
        report.add(prop, False, f"{budget}, it stopped after {len(got)} of {len(names)} steps, "
                   f"{ending.at - FITS_START_S:.1f} s after it was called",
                   "Count the budget from the moment run_pipeline is called: "
                   "`asyncio.timeout(deadline_s)` takes a duration; `asyncio.timeout_at()` takes a "
                   "point in time on the loop's clock, `loop.time() + deadline_s`.",
                   "deadline measured from the wrong moment")
        return
    report.add(prop, False, f"{budget}, it returned {short_repr(got)}, not {expected}", hint,
               "wrong results")


def _judge_order(report: Report, sc: PipelineScenario, over: Steps, fits: Steps) -> None:
    problem = None
    for steps, names, t0 in ((over, list(sc.overrun), 0.0), (fits, list(sc.fits), FITS_START_S)):
        problem = _overlap(steps.runs, t0) or _order_problem(steps.runs, names)
        if problem:
            break
    report.add("steps one after another", problem is None,
               "each step started after the previous one had finished" if problem is None
               else problem,
               "The steps depend on each other: await each one before starting the next, "
               "`for step in steps: results.append(await step())`, with no gather or tasks.",
               "steps overlap")


def _judge_overrun(report: Report, sc: PipelineScenario, over: Steps, ending: Ending) -> None:
    done_names, cut = sc.expected_overrun()
    cut_start = sc.start_of(cut)
    deadline = sc.deadline_s
    runs = {r.name: r for r in over.runs}
    cut_run = runs.get(cut)
    budget = f"the budget of {seconds(deadline)} for all steps"

    # 1. Stops when the budget runs out.
    took = ending.at
    stopped_on_time = abs(took - deadline) <= TOLERANCE_S
    diagnosis = ""
    if stopped_on_time:
        msg = f"it stopped after {seconds(deadline)}, when {budget} ran out"
        hint = ""
    elif took < deadline:
        diagnosis = "stops too early"
        msg = f"it stopped after {took:.1f} virtual s, before {budget} ran out"
        hint = "Let the running step use all of the budget that is left; stop only at the deadline."
    else:
        per_step = (cut_run is not None and cut_run.outcome == "cancelled" and cut_run.end
                    is not None and abs(cut_run.end - cut_run.start - deadline) <= PER_STEP_SLACK_S)
        cancelled_on_time = (cut_run is not None and cut_run.outcome == "cancelled"
                             and cut_run.end is not None and abs(cut_run.end - deadline) <= TOLERANCE_S)
        went_on = [r for r in over.runs if r.start >= deadline - TOLERANCE_S]
        hint = ("Put ONE `async with asyncio.timeout(deadline_s):` around the whole loop over the "
                "steps. (Or give each step the time that is left until one deadline computed with "
                "the loop's clock, `asyncio.get_running_loop().time()`, not time.monotonic().)")
        if cancelled_on_time and went_on:
            msg = (f"it ran for {took:.1f} virtual s, past {budget}: {cut} was cancelled at "
                   f"{seconds(deadline)}, but the cancellation was swallowed and {went_on[0].name} "
                   "started after it")
            hint = ("Let CancelledError through: catching it (or BaseException, or using a bare "
                    "`except:`) around a step stops the timeout from ending the pipeline. Catch "
                    "TimeoutError once, outside the `async with asyncio.timeout(...)` block.")
            diagnosis = "swallowed cancellation"
        elif per_step:
            diagnosis = "a timeout per step"
            msg = (f"it ran for {took:.1f} virtual s, past {budget}: {cut} was cancelled "
                   f"{seconds(deadline)} after it started, at {seconds(cut_start + deadline)}, "
                   "so each step had a timeout of its own")
        elif cut_run is not None and cut_run.outcome == "ok":
            msg = (f"it ran for {took:.1f} virtual s, past {budget}: {cut} takes "
                   f"{seconds(sc.overrun[cut])} and nothing stopped it (no timeout)")
            diagnosis = "no timeout"
        else:
            msg = f"it ran for {took:.1f} virtual s, past {budget}"
            diagnosis = "deadline measured late"
    report.add("stops when the budget runs out", stopped_on_time, msg, hint, diagnosis)

    # 2. The step that was running at the deadline is cancelled, and has ended when we return.
    if cut_run is None:
        ok, msg = False, f"{cut} never started, although {seconds(cut_start)} of the budget was used"
    elif cut in ending.seen.get("running", []):
        ok, msg = False, (f"{cut} was still running when run_pipeline "
                          f"{'returned' if ending.how == 'returned' else 'ended'} at "
                          f"{ending.at:.1f} s: the timeout stopped waiting for it but did not "
                          "cancel it")
    elif cut_run.outcome == "ok":
        ok, msg = False, f"{cut} ran to its end at {seconds(cut_run.end)}: nothing cancelled it"
    elif cut_run.outcome == "cancelled" and cut_run.end is not None \
            and abs(cut_run.end - deadline) <= TOLERANCE_S:
        ok, msg = True, f"{cut}, running when the budget ran out, was cancelled at {seconds(deadline)}"
    elif cut_run.outcome == "cancelled":
        ok, msg = False, (f"{cut} was cancelled at {cut_run.end:.1f} s, not when the budget ran "
                          f"out at {seconds(deadline)}")
    else:
        ok, msg = False, f"{cut} ended with outcome {cut_run.outcome!r}"
    diagnosis = ("" if ok else "step never started" if cut_run is None else
                 "step left running" if cut in ending.seen.get("running", []) else
                 "step never cancelled" if cut_run.outcome == "ok" else "cancelled late")
    report.add("the running step is cancelled", ok, msg,
               "asyncio.timeout and asyncio.wait_for cancel the step they guard and wait for it "
               "to end; asyncio.wait(..., timeout=...) and asyncio.shield do not. If you made a "
               "task, cancel it and await it before you return.", diagnosis)

    # 3. Nothing starts after the budget ran out.
    late = [r for r in over.runs if r.start >= deadline - TOLERANCE_S]
    report.add("no step starts after the deadline", not late,
               "no step started after the budget ran out" if not late else
               f"{late[0].name} started at {seconds(late[0].start)}, after the budget of "
               f"{seconds(deadline)} had run out",
               "Stop when the budget runs out. Catching CancelledError (or BaseException, or a "
               "bare `except:`) around a step swallows the timeout's cancellation and the loop "
               "goes on; catch TimeoutError once, outside the `async with asyncio.timeout(...)` "
               "block.", "swallowed cancellation")

    # 4. What it returns: the results completed in time.
    expected = [Steps.result_for(n) for n in done_names]
    if ending.how == "raised" and isinstance(ending.error, TimeoutError):
        ok, msg = False, (f"it raised TimeoutError instead of returning the "
                          f"{plural(len(expected), 'result')} completed in time")
        hint = ("Catch TimeoutError outside the `async with asyncio.timeout(...)` block and "
                "return the list of results you have so far.")
    else:
        got = ending.value
        ok = got == expected or (isinstance(got, tuple) and list(got) == expected)
        msg = (f"it returned the {plural(len(expected), 'result')} completed in time"
               if ok else f"it returned {short_repr(got)}; the steps completed in time give {expected}")
        hint = ("Append each step's result as soon as it is done, and return that list when the "
                "budget runs out.")
    report.add("returns the results completed in time", ok, msg, hint,
               "" if ok else "raises instead of returning" if ending.how == "raised"
               and isinstance(ending.error, TimeoutError) else "wrong results")


def _judge_caller_cancel(report: Report, sc: PipelineScenario, steps: Steps,
                         ending: Ending | None, obs) -> None:
    prop = "cancellation from the caller propagates"
    at = seconds(sc.cancel_at_s)
    hint = ("Never catch CancelledError without re-raising it. Catch only TimeoutError, outside "
            "the timeout block: `except BaseException`, a bare `except:` or "
            "`except (TimeoutError, asyncio.CancelledError)` swallow the caller's cancellation.")
    if ending is None:
        failure = next((f for f in safe_findings("run_pipeline", replace(obs, result=None))
                        if not f.passed), None)
        report.add(prop, False, f"when its caller cancelled it at {at}: "
                   f"{failure.message if failure else 'it did not end'}", hint,
                   "swallowed cancellation")
        return
    late = [r for r in steps.runs if r.start > sc.cancel_at_s + TOLERANCE_S]
    if ending.how == "cancelled" and not late:
        report.add(prop, True, f"cancelled by its caller at {at}, it stopped at once and let "
                   "CancelledError through")
    elif late:
        report.add(prop, False, f"cancelled by its caller at {at}, it went on: {late[0].name} "
                   f"started at {seconds(late[0].start)}", hint, "swallowed cancellation")
    elif ending.how == "returned":
        report.add(prop, False, f"cancelled by its caller at {at}, it returned {short_repr(ending.value)} "
                   "instead of letting CancelledError through: the cancellation was swallowed",
                   hint, "swallowed cancellation")
    else:
        error = type(ending.error).__name__ if ending.error else ending.how
        report.add(prop, False, f"cancelled by its caller at {at}, it raised {error} instead of "
                   "letting CancelledError through", hint, "cancellation replaced")


EXERCISES = {"run_pipeline": check_run_pipeline}
