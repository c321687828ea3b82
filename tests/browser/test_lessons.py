"""A learner in JupyterLab: the index, its links, whole lessons run, a slider, a quiz.

One JupyterLab serves this module (see conftest.py). Lessons are found by number in the
temporary copy of notebooks/; a lesson that is not written yet is skipped with that reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .jlab import (NB, cell, menu, notebook_state, open_notebook, plan, screenshot,
                   unexpected_errors, wait_for_all_cells, wait_for_notebook, wait_for_run)

LESSONS_RUN_WHOLE = ["01", "05", "09"]


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


@pytest.mark.parametrize("number", LESSONS_RUN_WHOLE)
def test_run_all_cells(lessons, number):
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


def test_limit_slider_redraws_the_timeline(lessons):
    page, cells, state = lessons.run("05")
    slider = page.locator(f"{NB} .asynclab-limit-slider")
    output = page.locator(f"{NB} .asynclab-limit-output")
    assert slider.count() == 1 and output.count() == 1, "lesson 05 has no limit slider"
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    before_value = int(readout.text_content())
    image = output.locator("img")
    image.wait_for()
    before_src = image.get_attribute("src")
    assert f"limit {before_value}:" in output.text_content()

    # Drag the handle to about three quarters of the track, as a learner would.
    handle = slider.locator(".noUi-handle")
    handle.hover()  # scrolls it into view; hover again once the notebook has settled
    page.wait_for_timeout(300)
    handle.hover()
    track = slider.locator(".noUi-base").bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.75, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()

    page.wait_for_function(
        """([slider, before]) => slider.querySelector('.widget-readout').textContent.trim() !== before""",
        arg=[slider.element_handle(), str(before_value)])
    value = int(readout.text_content())
    assert value != before_value
    page.wait_for_function(
        """([output, text, before]) => output.textContent.includes(text)
             && output.querySelector('img') && output.querySelector('img').getAttribute('src') !== before
             && output.querySelector('img').naturalWidth > 0""",
        arg=[output.element_handle(), f"limit {value}:", before_src])
    assert image.get_attribute("src") != before_src
    assert not unexpected_errors(notebook_state(page), cells)
    screenshot(page, "05-lesson-05-slider-moved", locator=slider, block="start")
