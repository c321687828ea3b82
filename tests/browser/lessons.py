"""Whole lessons run in JupyterLab, once per test module, for the tests that look at them.

``check_whole_lesson`` is the generic test: run all cells of a lesson from cleared outputs and
assert no unexpected error output (cells tagged raises-exception, or committed with an error,
excepted), every picture loaded (naturalWidth > 0) and every widget drawn. The lessons it runs
are split over two test modules so that pytest-xdist runs them in parallel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .jlab import (menu, open_notebook, plan, screenshot, unexpected_errors, wait_for_all_cells,
                   wait_for_run)


def lesson_path(lab, number: str) -> Path | None:
    found = sorted((lab.root / "notebooks").glob(f"{number}_*.ipynb"))
    return found[0] if found else None


class Lessons:
    """Lesson pages run once per module and shared by the tests that look at them."""

    def __init__(self, lab, browser):
        self.lab, self.browser, self.ran = lab, browser, {}

    def run(self, number: str):
        if number in self.ran:
            return self.ran[number]
        path = lesson_path(self.lab, number)
        if path is None:
            pytest.skip(f"lesson {number} (notebooks/{number}_*.ipynb) is not written yet")
        page = self.browser.new_page()
        relative = f"notebooks/{path.name}"
        open_notebook(page, self.lab, relative)
        cells = plan(path)
        wait_for_all_cells(page, cells)
        # As a learner starting afresh: clear the committed outputs, then run everything.
        menu(page, "Edit", "Clear Outputs of All Cells")
        menu(page, "Run", "Run All Cells")
        state = wait_for_run(page, cells)
        self.ran[number] = (page, cells, state)
        return self.ran[number]

    def close(self):
        for page, _, _ in self.ran.values():
            page.close()


def check_whole_lesson(lessons: Lessons, number: str) -> None:
    """Run a lesson top to bottom as a learner; judge what the page shows."""
    page, cells, state = lessons.run(number)
    assert not unexpected_errors(state, cells)
    for plan_cell, seen in zip(cells, state["cells"]):
        where = f"lesson {number}, cell {plan_cell.index}"
        assert all(img["loaded"] for img in seen["imgs"]), f"{where}: a picture did not load"
        if plan_cell.has_image:
            assert seen["imgs"], f"{where}: the timeline picture is missing"
        assert not seen["widgetError"], f"{where}: Error displaying widget"
        if plan_cell.has_widget:
            assert seen["widgets"], f"{where}: the widget was not drawn"
    pictures = sum(len(seen["imgs"]) for seen in state["cells"])
    assert pictures or not any(c.has_image for c in cells)
    screenshot(page, f"03-lesson-{number}-ran")
