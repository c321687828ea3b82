"""Fixtures for the browser tests: a JupyterLab per test module, a Chromium per test module.

They need Debian's Chromium (``apt-get install chromium``) and Playwright for Python (in
requirements.txt); Playwright's own browser download is not used. Without them the tests are
skipped with the reason, or fail when ASYNCLAB_REQUIRE_BROWSER=1 (CI sets it, so that CI always
runs them).

Each module gets its own JupyterLab on a free port, serving a temporary copy of notebooks/ and
exercises/: running notebooks never modifies the committed files, and modules can run in
parallel under pytest-xdist (``--dist loadfile`` keeps a module on one worker).
"""

from __future__ import annotations

import os
import shutil

import pytest

from .jlab import chromium_path, jupyter_executable, launch_chromium, overrides_installed, start_lab

INSTALL_HINT = ("install Chromium with: sudo apt-get install -y chromium "
                "(or set ASYNCLAB_CHROMIUM to a Chromium/Chrome binary)")


def _unavailable(reason: str):
    if os.environ.get("ASYNCLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required (ASYNCLAB_REQUIRE_BROWSER=1) but {reason}",
                    pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        _unavailable(f"Chromium is not installed; {INSTALL_HINT}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed in this environment; run make venv")
    return path


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """A JupyterLab configured as ``make lab`` configures it, on a copy of the course."""
    ok, why = overrides_installed(jupyter_executable())
    if not ok:
        pytest.fail(f"the course's JupyterLab settings are not installed: {why}", pytrace=False)
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(chromium):
    """One Chromium (fresh profile) per module; pages are opened per test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, chromium)
        yield context
        context.close()
        shutil.rmtree(context._asynclab_profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()
