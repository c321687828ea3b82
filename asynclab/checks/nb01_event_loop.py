"""Checks for notebook 01_event_loop: make three waits overlap."""

from __future__ import annotations

import asyncio

from asynclab.checking import (Report, basic_findings, closing_unstarted, observe,
                               require_coroutine_function, varied)

NOTEBOOK = "01_event_loop"
TOLERANCE_S = 1e-3


class Kitchen:
    """Three breakfast steps as coroutine functions that record when they ran."""

    def __init__(self, minutes: dict[str, float]) -> None:
        self.minutes = minutes
        self.log: list[tuple[str, float, float]] = []  # (step, start, end)

    def step(self, name: str):
        async def run() -> str:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.sleep(self.minutes[name] * 60)
            self.log.append((name, start, loop.time()))
            return f"{name} ready"

        run.__name__ = run.__qualname__ = name
        return run


def scenario(variant: str, seed: int | None = None) -> dict[str, float]:
    if variant == "public":
        return {"boil_egg": 7.0, "toast_bread": 3.0, "brew_coffee": 5.0}
    return {"boil_egg": 2.0, "toast_bread": 9.0, "brew_coffee": 4.5}


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
    got = list(obs.result) if isinstance(obs.result, (list, tuple)) else obs.result
    report.add("results in order", got == expected,
               f"returned {expected}" if got == expected else
               f"returned {got!r}, expected {expected}",
               "Return the three results as a list, in the order of the arguments "
               "(asyncio.gather keeps that order for you).")
    counts = {name: sum(1 for s, _, _ in kitchen.log if s == name) for name in minutes}
    wrong_counts = {n: c for n, c in counts.items() if c != 1}
    report.add("each step done once", not wrong_counts,
               "each step ran exactly once" if not wrong_counts else
               ", ".join(f"{n} ran {c} times" for n, c in wrong_counts.items()),
               "Call each of the three coroutine functions exactly once.")
    slowest = max(minutes.values()) * 60
    total = sum(minutes.values()) * 60
    overlap = obs.elapsed <= slowest + TOLERANCE_S
    report.add("the steps overlap", overlap,
               f"breakfast took {obs.elapsed / 60:g} virtual minutes, as long as the slowest step"
               if overlap else
               f"breakfast took {obs.elapsed / 60:g} virtual minutes; with the steps overlapping "
               f"it takes {slowest / 60:g} (one after another: {total / 60:g})",
               "Awaiting each step before starting the next runs them one after another. Start "
               "all three, then wait for all of them: `await asyncio.gather(...)`.")
    return report


EXERCISES = {"make_breakfast": check_make_breakfast}
