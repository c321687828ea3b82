"""asynclab.checking and the variations of asynclab.vtime: same verdict every time, for a reason."""

from __future__ import annotations

import asyncio
import random

from asynclab.checking import Report, hidden_rng, varied, variations
from asynclab.vtime import Variation, run_virtual


async def _two_timers_due_together() -> list[str]:
    order: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_later(1.0, order.append, "first scheduled")
    loop.call_later(1.0, order.append, "second scheduled")
    await asyncio.sleep(2.0)
    return order


async def _set_of_tasks_order() -> list[int]:
    async def job(n: int) -> int:
        return n

    tasks = [asyncio.create_task(job(n)) for n in range(5)]
    done, _ = await asyncio.wait(tasks)
    return [t.result() for t in done]


def test_timers_due_together_follow_the_variation():
    reversed_ = Variation("r", ties="reversed")
    assert run_virtual(_two_timers_due_together, variation=reversed_).result == \
        ["second scheduled", "first scheduled"]
    shuffled = [run_virtual(_two_timers_due_together,
                            variation=Variation("s", ties="shuffled", seed=seed)).result
                for seed in range(12)]
    assert {tuple(r) for r in shuffled} == {("first scheduled", "second scheduled"),
                                            ("second scheduled", "first scheduled")}


def test_a_set_of_tasks_is_iterated_as_the_variation_says_not_by_address():
    created = Variation("c", identity="created")
    reversed_ = Variation("r", identity="reversed")
    for _ in range(5):
        assert run_virtual(_set_of_tasks_order, variation=created).result == [0, 1, 2, 3, 4]
        assert run_virtual(_set_of_tasks_order, variation=reversed_).result == [4, 3, 2, 1, 0]
    seeded = Variation("s", identity="shuffled", seed=7)
    assert len({tuple(run_virtual(_set_of_tasks_order, variation=seeded).result)
                for _ in range(5)}) == 1


def test_varied_names_the_run_that_failed_and_stops_there():
    seen: list[str] = []

    @varied
    def check_order(fn, *, variant="public", seed=None):
        result = run_virtual(fn).result
        seen.append(str(result))
        report = Report("order")
        report.add("in order", result == [0, 1, 2, 3, 4], f"got {result}", "keep the order",
                   "results in set order")
        return report

    report = check_order(_set_of_tasks_order)
    assert not report.passed and report.diagnoses == ["results in set order"]
    assert report.variation and report.variation in report.text()
    assert len(seen) == 2  # as scheduled (passed), then reversed (failed)


def test_the_learners_own_random_numbers_are_seeded_per_run():
    @varied
    def check_draws(fn, *, variant="public", seed=None):
        report = Report("draws")
        report.add("drew", True, str(fn()))
        return report

    def draw() -> float:
        return random.random()

    first = check_draws(draw, variant="hidden", seed=3).text()
    assert check_draws(draw, variant="hidden", seed=3).text() == first
    state = random.getstate()
    check_draws(draw)
    assert random.getstate() == state  # the caller's own random state is left alone


def test_hidden_inputs_come_from_the_seed():
    assert hidden_rng("hidden", 5).random() == hidden_rng("hidden", 5).random()
    assert hidden_rng("hidden", 5).random() != hidden_rng("hidden", 6).random()
    assert hidden_rng("hidden", None).random() == hidden_rng("hidden", None).random()
    assert len(variations("public", None)) == 2
    assert variations("hidden", 1)[-1] != variations("hidden", 2)[-1]
