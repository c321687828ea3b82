"""solutions/ -> exercises/: stubs replace reference code, everything else is kept."""

from __future__ import annotations

import nbformat
import pytest

from asynclab.authoring import AuthoringError, make_exercise, stale_exercises, strip_solution
from conftest import ROOT

ANSWER = '''async def double(x):
    """Return 2 * x after a pause."""
    ### BEGIN SOLUTION
    await asyncio.sleep(1)
    return 2 * x
    ### END SOLUTION'''


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def answer_cell(source=ANSWER):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["answer"]})
    cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    cell.execution_count = 3
    return cell


def check_cell():
    cell = nbformat.v4.new_code_cell("check(double)", metadata={"tags": ["check"]})
    cell.outputs = [nbformat.v4.new_output("stream", text="double: all 3 checks passed\n")]
    return cell


def test_stub_keeps_signature_docstring_and_indentation():
    stub = strip_solution(ANSWER, "here")
    assert stub.splitlines() == [
        "async def double(x):",
        '    """Return 2 * x after a pause."""',
        "    # YOUR CODE HERE",
        '    raise NotImplementedError("write your solution here")',
    ]
    assert "sleep" not in stub


def test_exercise_keeps_other_cells_and_check_outputs():
    md = nbformat.v4.new_markdown_cell("# Title")
    solution = notebook(md, answer_cell(), check_cell())
    exercise = make_exercise(solution, "10_demo.ipynb")
    assert exercise.cells[0] == md
    assert exercise.cells[1].outputs == [] and exercise.cells[1].execution_count is None
    assert exercise.cells[2].outputs == solution.cells[2].outputs
    assert solution.cells[1].source == ANSWER  # the solution is not modified


@pytest.mark.parametrize("source, problem", [
    ("x = 1\n### END SOLUTION", "END SOLUTION without BEGIN"),
    ("### BEGIN SOLUTION\nx = 1", "BEGIN SOLUTION without END"),
    ("x = 1", "needs a ### BEGIN SOLUTION block"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_malformed_markers_are_reported_with_their_place(source, problem):
    with pytest.raises(AuthoringError, match=problem):
        make_exercise(notebook(answer_cell(source)), "07_x.ipynb")


def test_markers_outside_answer_cells_and_missing_answers_are_errors():
    loose = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx=1\n### END SOLUTION")
    with pytest.raises(AuthoringError, match="not tagged 'answer'"):
        make_exercise(notebook(loose, answer_cell()), "x.ipynb")
    with pytest.raises(AuthoringError, match="no cell is tagged"):
        make_exercise(notebook(nbformat.v4.new_code_cell("x = 1")), "x.ipynb")


def test_committed_exercises_are_up_to_date():
    problems = stale_exercises(ROOT / "solutions", ROOT / "exercises")
    assert not problems, "run `make exercises` and commit: " + "; ".join(problems)


def test_stale_exercise_is_detected(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    nbformat.write(notebook(answer_cell(), check_cell()), tmp_path / "solutions" / "01_a.ipynb")
    assert stale_exercises(tmp_path / "solutions", tmp_path / "exercises") == ["01_a.ipynb: missing"]
    from asynclab.authoring import write_exercises
    write_exercises(tmp_path / "solutions", tmp_path / "exercises")
    assert stale_exercises(tmp_path / "solutions", tmp_path / "exercises") == []
    (tmp_path / "exercises" / "01_a.ipynb").write_text("{}")
    assert stale_exercises(tmp_path / "solutions", tmp_path / "exercises") == ["01_a.ipynb: out of date"]
