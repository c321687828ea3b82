"""Regenerate the course map in notebooks/00_index.ipynb from the lessons themselves.

The map is the markdown cell tagged ``course-map``: one row per lesson
(notebooks/NN_slug.ipynb), with the lesson's own title (its first ``# `` heading)
and links to its exercise notebook when there is one. Hand-kept tables of
contents rot; this one is rebuilt by ``make index`` and checked by
tests/test_index.py.

    .venv/bin/python scripts/build_index.py          # rewrite the map
    .venv/bin/python scripts/build_index.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "notebooks" / "00_index.ipynb"
MAP_TAG = "course-map"


def lesson_title(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^# (.+)$", cell.source, flags=re.MULTILINE)
            if match:
                title = match.group(1).strip()
                # "05 · Semaphore: ..." -> "Semaphore: ..." (the number has its own column)
                return re.sub(r"^\d+\s*[·.:-]\s*", "", title)
    return path.stem


def course_map() -> str:
    rows = ["| # | lesson | exercise |", "|---|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        number = path.name[:2]
        if number == "00":
            continue
        exercise = ROOT / "exercises" / path.name
        practise = f"[exercise](../exercises/{path.name})" if exercise.exists() else "-"
        rows.append(f"| {number} | [{lesson_title(path)}]({path.name}) | {practise} |")
    return "## The course map\n\n" + "\n".join(rows)


def map_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if MAP_TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"{INDEX}: expected exactly one cell tagged {MAP_TAG!r}")
    return cells[0]


def main(argv: list[str]) -> int:
    nb = nbformat.read(INDEX, as_version=4)
    cell = map_cell(nb)
    fresh = course_map()
    if "--check" in argv:
        if cell.source != fresh:
            print("notebooks/00_index.ipynb: the course map is out of date; run make index")
            return 1
        return 0
    cell.source = fresh
    nbformat.write(nb, INDEX)
    print("course map: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
