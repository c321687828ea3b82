"""The course map is generated from the lessons, and every link between notebooks resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted(p for folder in ("notebooks", "exercises", "solutions")
                   for p in (ROOT / folder).glob("[0-9][0-9]_*.ipynb"))
LINK = re.compile(r"\]\(([^)#\s]+\.ipynb)(?:#[^)]*)?\)")


def test_course_map_is_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_index.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_course_map_lists_every_lesson():
    index = nbformat.read(ROOT / "notebooks" / "00_index.ipynb", as_version=4)
    text = "\n".join(c.source for c in index.cells if c.cell_type == "markdown")
    for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if lesson.name != "00_index.ipynb":
            assert f"]({lesson.name})" in text, f"the course map does not link {lesson.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.name}" for p in NOTEBOOKS])
def test_links_between_notebooks_resolve(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in LINK.findall(cell.source):
            if "://" in target:
                continue
            assert (path.parent / target).resolve().exists(), f"{path.name}: broken link {target}"


def test_every_lesson_has_an_exercise_notebook():
    lessons = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")} - {"00_index.ipynb"}
    exercises = {p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")}
    missing = sorted(lessons - exercises)
    assert not missing, f"lessons without an exercise notebook: {missing}"
