"""A learner in JupyterLab: the index opens without dialogs and leads to lesson 01, which runs
whole, and whose quiz answers.

One JupyterLab serves this module (see conftest.py); lessons 05 and 10 run in
test_lessons_05_10.py, in parallel under pytest-xdist.
"""

from __future__ import annotations

import re

import pytest

from .jlab import NB, cell, plan, screenshot, wait_for_all_cells, wait_for_notebook
from .lessons import Lessons, check_whole_lesson


@pytest.fixture(scope="module")
def lessons(lab, browser):
    shelf = Lessons(lab, browser)
    yield shelf
    shelf.close()


def test_index_opens_without_dialogs_and_links_to_the_lessons(lab, page):
    index = lab.root / "notebooks" / "00_index.ipynb"
    if not index.exists():
        pytest.skip("notebooks/00_index.ipynb is not written yet")
    page.goto(lab.url())  # the default URL, as make lab opens it: the index
    wait_for_notebook(page, "00_index.ipynb")
    # The kernel started by itself (no "Select Kernel" dialog) and no news pop-up asked anything.
    page.wait_for_timeout(1000)
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()
    toasts = page.locator(".jp-toast-message, .Toastify__toast").all_text_contents()
    assert not [t for t in toasts if "news" in t.lower()], toasts
    kernel = page.locator(f"{NB} .jp-Toolbar-kernelName").text_content().strip()
    assert kernel == "Python 3 (ipykernel)"

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    wait_for_all_cells(page, plan(index))
    lesson_links = page.locator(f"{NB} .jp-RenderedMarkdown a[href*='/notebooks/']")
    try:
        lesson_links.first.wait_for(state="attached", timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail("the index shows no link to a lesson (notebooks/NN_slug.ipynb)")
    links = page.locator(f"{NB} .jp-RenderedMarkdown a")
    hrefs = [href for href in (links.nth(i).get_attribute("href") for i in range(links.count()))
             if href]
    lessons = {m.group(1) for h in hrefs
               if (m := re.search(r"/notebooks/(\d\d_[\w-]+\.ipynb)", h))}
    assert lessons, f"the index links to no lesson: {hrefs}"
    for name in lessons:
        assert (lab.root / "notebooks" / name).exists(), f"the index links to a missing {name}"
    screenshot(page, "01-index")

    first = sorted(lessons)[0]
    page.locator(f"{NB} .jp-RenderedMarkdown a[href*='/notebooks/{first}']").first.click()
    wait_for_notebook(page, first)
    assert page.locator(".jp-Dialog").count() == 0
    heading = page.locator(f"{NB} .jp-RenderedMarkdown h1").first.text_content()
    assert heading.startswith(first[:2]), heading
    screenshot(page, f"02-lesson-{first[:2]}-opened-from-index")


@pytest.mark.parametrize("number", ["01"])
def test_run_all_cells(lessons, number):
    check_whole_lesson(lessons, number)


def test_quiz_gives_feedback(lessons):
    page, cells, state = lessons.run("01")
    quizzes = [i for i, seen in enumerate(state["cells"])
               if seen["widgets"] and "quiz(" in cells[i].source]
    assert quizzes, "lesson 01 has no quiz"
    index = quizzes[0]
    match = re.search(r"answer\s*=\s*(\d+)", cells[index].source)
    assert match, "the quiz cell names no answer"
    answer = int(match.group(1))
    box = cell(page, index).locator(".asynclab-quiz")
    box.scroll_into_view_if_needed()
    options = box.locator(".widget-radio-box label")
    feedback = box.locator(".widget-html").last

    wrong = 0 if answer else 1
    options.nth(wrong).click()
    box.locator("button", has_text="Check").click()
    page.wait_for_function("(el) => el.textContent.includes('Not quite.')",
                           arg=feedback.element_handle())
    options.nth(answer).click()
    box.locator("button", has_text="Check").click()
    page.wait_for_function("(el) => el.textContent.includes('Right.')",
                           arg=feedback.element_handle())
    screenshot(page, "04-lesson-01-quiz-answered", locator=box, block="center")
