"""Generate the learners' exercise notebooks from the reference solutions.

``solutions/NN_slug.ipynb`` is the single source. In it, a cell where learners
write is tagged ``answer`` and holds the reference code between nbgrader-style
markers::

    async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
        \"\"\"The docstring stays: it is the task.\"\"\"
        ### BEGIN SOLUTION
        ...reference code...
        ### END SOLUTION

``exercises/NN_slug.ipynb`` gets every cell unchanged, except that in answer
cells the code between the markers becomes a stub (a comment that says what to
write and ``raise NotImplementedError``) and their outputs are cleared. Check
cells (tagged ``check``) keep the outputs of the executed reference, so that
``pytest --nbval`` on a learner's notebook passes exactly when their checks
print what the reference's printed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

__all__ = ["ANSWER_TAG", "CHECK_TAG", "AuthoringError", "make_exercise", "write_exercises",
           "stale_exercises"]

ANSWER_TAG = "answer"
CHECK_TAG = "check"
BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$")
END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
STUB = "{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError(\"write your solution here\")"


class AuthoringError(ValueError):
    """A solution notebook breaks the authoring rules; the message says where."""


def tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def strip_solution(source: str, where: str) -> str:
    """Replace each BEGIN/END SOLUTION block with the stub, at the block's indentation."""
    out: list[str] = []
    inside = False
    indent = ""
    blocks = 0
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise AuthoringError(f"{where}: BEGIN SOLUTION inside another solution block")
            inside, indent = True, begin.group("indent")
            continue
        if END.match(line):
            if not inside:
                raise AuthoringError(f"{where}: END SOLUTION without BEGIN SOLUTION")
            out.append(STUB.format(indent=indent))
            inside = False
            blocks += 1
            continue
        if not inside:
            out.append(line)
    if inside:
        raise AuthoringError(f"{where}: BEGIN SOLUTION without END SOLUTION")
    if blocks == 0:
        raise AuthoringError(f"{where}: an answer cell needs a ### BEGIN SOLUTION block")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's copy of one solution notebook."""
    exercise = copy.deepcopy(solution)
    answers = 0
    for index, cell in enumerate(exercise.cells):
        has_marker = cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source
        if ANSWER_TAG not in tags(cell):
            if has_marker:
                raise AuthoringError(f"{name}, cell {index}: solution markers in a cell not tagged "
                                     f"{ANSWER_TAG!r}")
            continue
        if cell.cell_type != "code":
            raise AuthoringError(f"{name}, cell {index}: only code cells can be answer cells")
        cell.source = strip_solution(cell.source, f"{name}, cell {index}")
        cell.outputs = []
        cell.execution_count = None
        answers += 1
    if answers == 0:
        raise AuthoringError(f"{name}: no cell is tagged {ANSWER_TAG!r}")
    exercise.metadata.setdefault("asynclab", {})["generated_from"] = f"solutions/{name}"
    return exercise


def _exercise_text(solution_path: Path) -> str:
    solution = nbformat.read(solution_path, as_version=4)
    exercise = make_exercise(solution, solution_path.name)
    return nbformat.writes(exercise) + "\n"


def write_exercises(solutions_dir: Path, exercises_dir: Path) -> list[Path]:
    """Regenerate every exercise notebook; returns the files written."""
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution_path in sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb")):
        target = exercises_dir / solution_path.name
        target.write_text(_exercise_text(solution_path), encoding="utf-8")
        written.append(target)
    return written


def stale_exercises(solutions_dir: Path, exercises_dir: Path) -> list[str]:
    """Names of exercise notebooks that are missing, out of date, or have no solution."""
    problems = []
    expected = {p.name for p in solutions_dir.glob("[0-9][0-9]_*.ipynb")}
    for solution_path in sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb")):
        target = exercises_dir / solution_path.name
        if not target.exists():
            problems.append(f"{target.name}: missing")
        elif target.read_text(encoding="utf-8") != _exercise_text(solution_path):
            problems.append(f"{target.name}: out of date")
    for orphan in sorted(exercises_dir.glob("[0-9][0-9]_*.ipynb")):
        if orphan.name not in expected:
            problems.append(f"{orphan.name}: has no solution")
    return problems
