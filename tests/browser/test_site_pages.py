"""The static edition (make site) read in Chromium: index, a lesson page, its pictures, its nav.

Offline: requests to CDNs (the widget renderer, MathJax) are refused, so this checks what the
pages show by themselves: the committed pictures and text, and the course navigation.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from .jlab import ROOT, screenshot


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_site", module)
    spec.loader.exec_module(module)
    # A small course (the index, the first two lessons and their exercises) builds in a
    # second; tests/test_site.py checks the whole site.
    root = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "course.toml", root)
    for folder in ("notebooks", "exercises"):
        (root / folder).mkdir()
        for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))[:3]:
            shutil.copy(path, root / folder)
    out = root / "site"
    module.build(out, root=root, workers=1)
    return out


@pytest.fixture
def offline_page(browser):
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_()
               if route.request.url.startswith(("file:", "data:")) else route.abort())
    yield page
    page.close()


def test_a_reader_goes_from_the_index_to_a_lesson_and_on(site, offline_page):
    page = offline_page
    page.goto((site / "index.html").as_uri())
    lessons = page.locator("table a[href^='notebooks/']")
    assert lessons.count() >= 1
    first = lessons.first.get_attribute("href")
    lessons.first.click()
    page.wait_for_load_state("domcontentloaded")
    assert page.url.endswith(first)
    nav = page.locator("nav.course-nav")
    assert nav.locator("a.course-binder").get_attribute("href").startswith("https://")
    assert nav.locator("a.course-download").get_attribute("download") is not None
    pictures = page.evaluate("() => [...document.images].map(i => i.complete && i.naturalWidth)")
    assert pictures and all(pictures), f"pictures not shown: {pictures}"
    screenshot(page, "09-site-lesson-page")
    following = page.locator("footer.course-footer a")
    if following.count():
        target = following.last.get_attribute("href")
        following.last.click()
        page.wait_for_load_state("domcontentloaded")
        assert page.url.endswith(target.lstrip("./"))
        assert page.locator("nav.course-nav").count() == 1
