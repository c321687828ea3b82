"""Checks for notebook 01_event_loop: make three waits overlap."""

from __future__ import annotations

import asyncio

from asynclab.checking import (Report, basic_findings, closing_unstarted, hidden_rng, observe,
                               require_coroutine_function, varied)
from asynclab.fakes import Kitchen

NOTEBOOK = "01_event_loop"
TOLERANCE_S = 1e-3


def scenario(variant: str, seed: int | None = None) -> dict[str, float]:
    """Minutes per step. Hidden: three different durations drawn from ``seed``."""
    if variant == "public":
        return {"boil_egg": 7.0, "toast_bread": 3.0, "brew_coffee": 5.0}
    rng = hidden_rng(variant, seed)
    minutes = rng.sample([1.5, 2.0, 2.5, 3.0, 4.0, 4.5, 5.5, 6.0, 7.5, 9.0], 3)
    if minutes == sorted(minutes):  # the steps must not finish in argument order
        minutes.reverse()
    return dict(zip(("boil_egg", "toast_bread", "brew_coffee"), minutes))


def _order_diagnosis(got: list, expected: list[str], log: list[tuple[str, float, float]]) -> tuple[str, str]:
    """What a wrong list of results says about the code: (diagnosis, hint)."""
    if sorted(map(str, got)) != sorted(expected):
        return ("wrong results", "Return the three results themselves (what each step's "
                "coroutine returns), as a list in the order of the arguments.")
    finished = [f"{name} ready" for name, _, _ in sorted(log, key=lambda entry: entry[2])]
    if got == finished:
        return ("results in completion order",
                "Your list follows the order in which the steps finished (as_completed, or "
                "appending as each one ends). Return them in the order of the arguments: "
                "`asyncio.gather(...)` keeps that order, whichever finishes first.")
    return ("results in set order",
            "Your list follows the order of a set (`asyncio.wait` returns its `done` tasks as "
            "a set, and a set has no order: it changes from run to run). Keep the tasks in a "
            "list and read `task.result()` in that order, or use `asyncio.gather(...)`.")


@varied
def check_make_breakfast(fn, *, variant: str = "public",
                         seed: int | None = None) -> Report:
    """Judge ``make_breakfast(boil_egg, toast_bread, brew_coffee)``.

    Properties: the three results in argument order; each step started once;
    the three overlap, so breakfast takes as long as the slowest step; no
    blocking call.
    """
    report = Report("make_breakfast")
    bad = require_coroutine_function("make_breakfast", fn)
    if bad:
        report.findings.append(bad)
        return report
    minutes = scenario(variant, seed)
    kitchen = Kitchen(minutes)
    steps = [kitchen.step(name) for name in minutes]
    obs = observe(lambda: closing_unstarted(lambda: fn(*steps)), name="make_breakfast",
                  namespaces=(getattr(fn, "__globals__", {}),))
    report.timeline = obs.timeline
    early = basic_findings("make_breakfast", obs)
    report.findings.extend(early)
    if obs.hang is not None or obs.error is not None or any(
            not f.passed and f.prop in ("every coroutine awaited",
                                        "returns a value, not an awaitable") for f in early):
        return report  # a step that never ran makes the other findings meaningless

    expected = [f"{name} ready" for name in minutes]
    got = list(obs.result) if isinstance(obs.result, (list, tuple, set)) else obs.result
    if got == expected:
        report.add("results in order", True, f"returned {expected}")
    elif not isinstance(got, list):
        report.add("results in order", False, f"returned {got!r}, expected {expected}",
                   "Return the three results as a list, in the order of the arguments.",
                   "not a list")
    else:
        diagnosis, hint = _order_diagnosis(got, expected, kitchen.log)
        report.add("results in order", False, f"returned {got!r}, expected {expected}", hint,
                   diagnosis)
    counts = {name: sum(1 for s, _, _ in kitchen.log if s == name) for name in minutes}
    wrong_counts = {n: c for n, c in counts.items() if c != 1}
    twice = any(c > 1 for c in wrong_counts.values())
    report.add("each step done once", not wrong_counts,
               "each step ran exactly once" if not wrong_counts else
               ", ".join(f"{n} ran {c} times" for n, c in wrong_counts.items()),
               "A step ran more than once: each coroutine function is called once, and its "
               "coroutine awaited once (by gather, or through its task)." if twice else
               "A step never ran: call each of the three coroutine functions once.",
               "step started twice" if twice else "step never started")
    slowest = max(minutes.values()) * 60
    total = sum(minutes.values()) * 60
    overlap = obs.elapsed <= slowest + TOLERANCE_S
    report.add("the steps overlap", overlap,
               f"breakfast took {obs.elapsed / 60:g} virtual minutes, as long as the slowest step"
               if overlap else
               f"breakfast took {obs.elapsed / 60:g} virtual minutes; with the steps overlapping "
               f"it takes {slowest / 60:g} (one after another: {total / 60:g})",
               ("Awaiting each step before starting the next runs them one after another. Start "
                "all three, then wait for all of them: `await asyncio.gather(...)`.")
               if obs.elapsed >= total - TOLERANCE_S else
               ("Some steps overlap, but at least one waited for another to finish first. Start "
                "all three before awaiting any of them: one `await asyncio.gather(...)` of all "
                "three."),
               "one after another" if obs.elapsed >= total - TOLERANCE_S else "partly one after another")
    return report


EXERCISES = {"make_breakfast": check_make_breakfast}
