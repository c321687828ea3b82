"""Every check gives the same verdict every time it judges the same code.

Each reference (the answer cells of ``solutions/``) and a sample of the wrong answers of
every exercise (those of tests/checks, the order-dependent ones first) are judged several
times, in the public variant and in the hidden one under several seeds. The verdict, the
failed properties, the diagnoses and the report's text must not change between two checks
of the same code with the same seed (the learner's own random numbers, a retry's jitter,
are seeded by the check too), and a reference must pass under every seed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import nbformat
import pytest

from asynclab.checks import check, registry
from conftest import ROOT, define

REPEATS = 2
SEEDS = (None, 101, 202)
SAMPLE = 4  # wrong answers per exercise besides the named ones
# Wrong answers whose verdict used to hang on luck (memory addresses, timer ties), always kept.
NAMED = {
    "make_breakfast": ["results read from asyncio.wait's done set", "results in completion order"],
    "fetch_all_or_nothing": ["a sibling swallows its cancellation and retries",
                             "a per-key coroutine returns None when cancelled"],
    "lookup_all": ["executor.map on the loop's thread", "future.result() in a comprehension"],
    "serve": ["drains the stragglers one after another"],
}
# Wrong answers that only end at a real-time limit (seconds each): judged by their own tests.
SLOW = {"busy wait with sleep(0)", "a big thread pool"}
WRONG_TABLES = {  # test module -> (table name, exercise)
    "test_nb01_event_loop": [("WRONG", "make_breakfast")],
    "test_nb02_coroutines": [("WRONG", "place_order")],
    "test_nb03_tasks": [("WRONG", "run_with_heartbeat")],
    "test_nb04_gather": [("WRONG", "call_all_services")],
    "test_nb05_semaphore": [("WRONG", "fetch_all_urls")],
    "test_nb06_timeouts": [("WRONG", "run_pipeline")],
    "test_nb07_taskgroup_cancellation": [("WRONG", "fetch_all_or_nothing")],
    "test_nb08_races_and_sync": [("WRONG", "SingleFlightCache")],
    "test_nb09_pitfalls": [("WRONG_LOOKUP", "lookup_all"), ("WRONG_GUARDED", "guarded_work")],
    "test_nb10_producer_consumer": [("WRONG", "process_items")],
    "test_nb11_async_iteration": [("WRONG", "iter_items")],
    "test_nb12_http_and_rate_limits": [("LIMITER_WRONG", "RateLimiter")],
    "test_nb13_retries": [("RETRY_WRONG", "fetch_with_retries")],
    "test_nb14_blocking_and_cpu": [("WRONG", "process_all")],
    "test_nb16_under_the_hood": [("WRONG", "run_once")],
    "test_nb17_threads_vs_coroutines": [("WRONG", "send_reminders")],
    "test_nb19_production": [("WRONG", "serve")],
    "test_nb20_capstone_crawler": [("WRONG", "crawl")],
}


def _references() -> dict[str, str]:
    """``{exercise: source}``: each solution notebook's imports and answer cells."""
    found = {}
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        imports = [line for cell in nb.cells if cell.cell_type == "code"
                   for line in cell.source.splitlines()
                   if line.startswith(("import ", "from "))
                   and not line.startswith(("from asynclab import", "import asynclab"))]
        answers = [cell.source for cell in nb.cells
                   if cell.cell_type == "code" and "answer" in cell.metadata.get("tags", [])]
        for name in registry().get(path.stem, {}):
            found[name] = "\n".join(imports) + "\n\n" + "\n\n".join(answers)
    return found


def _wrong_answers() -> list[tuple[str, str, str]]:
    """``(exercise, name, code)``: the named wrong answers and a sample of the others."""
    chosen = []
    for module_name, tables in WRONG_TABLES.items():
        module = importlib.import_module(module_name)
        for table, exercise in tables:
            wrong = getattr(module, table)
            names = [n for n in NAMED.get(exercise, []) if n in wrong]
            names += [n for n in sorted(wrong)
                      if n not in names and n != "stub" and n not in SLOW][:SAMPLE]
            chosen += [(exercise, name, wrong[name][0]) for name in names]
    return chosen


def _verdict(report) -> tuple:
    return (report.passed, tuple((f.prop, f.passed, f.diagnosis) for f in report.findings))


@pytest.mark.parametrize("exercise", sorted(n for c in registry().values() for n in c))
def test_each_reference_passes_every_time_under_every_seed(exercise):
    fn = define(_references()[exercise], exercise)
    texts = set()
    for _ in range(REPEATS):
        report = check(fn)
        assert report.passed, report.text()
        texts.add(report.text())
    for seed in SEEDS:
        report = check(fn, variant="hidden", seed=seed)
        assert report.passed, (seed, report.text())
    assert len(texts) == 1, texts


@pytest.mark.parametrize("exercise, name, code", _wrong_answers(),
                         ids=lambda value: value if isinstance(value, str) and "\n" not in value
                         else "")
def test_each_wrong_answer_gets_the_same_verdict_every_time(exercise, name, code):
    fn = define(code, exercise)
    for variant, seed in (("public", None), ("hidden", SEEDS[1])):
        reports = [check(fn, variant=variant, seed=seed) for _ in range(2)]
        assert not reports[0].passed, reports[0].text()
        assert len({_verdict(r) for r in reports}) == 1, [r.text() for r in reports]
        assert len({r.text() for r in reports}) == 1, [r.text() for r in reports]
    # Hidden inputs are drawn from the seed: wrong code must fail whatever the seed.
    report = check(fn, variant="hidden", seed=SEEDS[2])
    assert not report.passed, report.text()
