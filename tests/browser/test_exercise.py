"""A learner works an exercise in JupyterLab: the check fails on the stub, then passes once
they have typed a correct solution into the answer cell through the editor.

The solution typed is the reference one from solutions/ (markers removed), so the test keeps
working when the exercise changes. One JupyterLab serves this module (see conftest.py).
"""

from __future__ import annotations

import re

import nbformat
import pytest

from .jlab import (ROOT, cell, editor_text, menu, notebook_state, open_notebook, plan, run_cell,
                   screenshot, type_code, unexpected_errors, wait_for_all_cells)

EXERCISE = "05_semaphore.ipynb"
MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def reference_answer(name: str) -> str:
    """The reference code of the first answer cell, as a learner would write it."""
    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    source = next(c.source for c in nb.cells if "answer" in c.get("metadata", {}).get("tags", []))
    return "\n".join(line for line in source.splitlines() if not MARKER.match(line))


def test_exercise_check_fails_on_the_stub_then_passes_on_a_typed_solution(lab, page):
    path = lab.root / "exercises" / EXERCISE
    if not path.exists():
        pytest.skip(f"exercises/{EXERCISE} is not written yet")
    cells = plan(path)
    answer = next(c.index for c in cells if "answer" in c.tags)
    check = next(c.index for c in cells if "check" in c.tags and c.index > answer)
    setup = next(c.index for c in cells if c.code)
    open_notebook(page, lab, f"exercises/{EXERCISE}")
    wait_for_all_cells(page, cells)
    menu(page, "Edit", "Clear Outputs of All Cells")  # start afresh, as a learner would

    # Run the setup cell and the untouched answer cell (the stub), then the check.
    run_cell(page, setup)
    run_cell(page, answer)
    stub = run_cell(page, check)
    text = " ".join(o["text"] for o in stub["outputs"])
    assert "not written yet" in text, text
    screenshot(page, "06-exercise-05-check-fails-on-stub", locator=cell(page, check))

    # Type the solution into the answer cell, key by key, and check what the editor holds.
    solution = reference_answer(EXERCISE)
    type_code(page, answer, solution)
    typed = editor_text(page, answer)
    assert [line.rstrip() for line in typed.splitlines()] == solution.splitlines(), typed
    screenshot(page, "07-exercise-05-solution-typed", locator=cell(page, answer), block="start")
    run_cell(page, answer)
    verdict = run_cell(page, check)
    text = " ".join(o["text"] for o in verdict["outputs"])
    assert re.search(r"all \d+ checks passed", text), text
    assert "all 7 checks passed" in text, text
    assert not unexpected_errors(notebook_state(page), cells)
    screenshot(page, "08-exercise-05-check-passes", locator=cell(page, check), block="start")
