"""A learner in JupyterLab: lessons 05 and 10 run whole, and lesson 05's limit slider redraws
its timeline.

One JupyterLab serves this module (see conftest.py); the index and lesson 01 are in
test_lessons.py, in parallel under pytest-xdist. A lesson not written yet is skipped.
"""

from __future__ import annotations

import pytest

from .jlab import NB, notebook_state, screenshot, unexpected_errors
from .lessons import Lessons, check_whole_lesson


@pytest.fixture(scope="module")
def lessons(lab, browser):
    shelf = Lessons(lab, browser)
    yield shelf
    shelf.close()


@pytest.mark.parametrize("number", ["05", "10"])
def test_run_all_cells(lessons, number):
    check_whole_lesson(lessons, number)


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
