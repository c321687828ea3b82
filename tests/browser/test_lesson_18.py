"""A learner in JupyterLab: lesson 18 (testing async code) runs whole.

Its cells start pytest in subprocesses and unittest in a thread, and one cell is expected to
raise (tagged raises-exception): Run All must still reach the end with every picture and quiz
drawn. One JupyterLab serves this module (see conftest.py).
"""

from __future__ import annotations

import pytest

from .lessons import Lessons, check_whole_lesson


@pytest.fixture(scope="module")
def lessons(lab, browser):
    shelf = Lessons(lab, browser)
    yield shelf
    shelf.close()


def test_run_all_cells(lessons):
    check_whole_lesson(lessons, "18")
