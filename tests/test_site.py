"""The static edition (make site) and the workshop links (Binder, README), built and checked.

The site is built once per test session into a temporary folder from the committed notebooks:
every lesson and exercise has a page, every internal link resolves, every picture is there, the
widgets' saved state is embedded, and each page can be launched on Binder and downloaded.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import nbformat
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
sys.modules["build_site"] = build_site  # its dataclasses and worker processes look it up
spec.loader.exec_module(build_site)

LESSONS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                 if not p.name.startswith("00_"))
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


class Page(HTMLParser):
    """The links, pictures and scripts of one HTML page."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.links: list[tuple[str, dict]] = []
        self.images: list[str] = []
        self.script_types: list[str] = []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs["href"], attrs))
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "script":
            self.script_types.append(attrs.get("type") or "")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site.build(out, workers=2)
    return out


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_lesson_and_exercise_has_a_page(site):
    for notebook in LESSONS + EXERCISES:
        page = site / notebook.parent.name / (notebook.stem + ".html")
        assert page.exists(), f"no page for {notebook.parent.name}/{notebook.name}"
    index = Page(site / "index.html")
    linked = {href for href, _ in index.links}
    for lesson in LESSONS:
        assert f"notebooks/{lesson.stem}.html" in linked, f"the index does not list {lesson.name}"


def test_the_index_lists_lessons_in_course_order(site):
    index = Page(site / "index.html")
    order = [href for href, _ in index.links
             if re.fullmatch(r"notebooks/\d\d_[\w-]+\.html", href)
             and not href.startswith("notebooks/00_")]
    assert order == sorted(order) and len(order) == len(LESSONS)


def test_every_internal_link_resolves(site):
    broken = []
    for path in pages(site):
        for href, _ in Page(path).links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("#", "mailto:", "javascript:")):
                continue
            if not parts.path:
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{path.relative_to(site)} -> {href}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_picture_is_there(site):
    for path in pages(site):
        for src in Page(path).images:
            assert src, f"{path.relative_to(site)}: an <img> without src"
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                assert ";base64" in header and len(base64.b64decode(payload)) > 100, \
                    f"{path.relative_to(site)}: an empty inline picture"
            else:
                assert not urlsplit(src).scheme, f"{path.relative_to(site)}: remote picture {src}"
                assert (path.parent / unquote(src)).is_file(), \
                    f"{path.relative_to(site)}: missing picture {src}"


@pytest.mark.parametrize("notebook", LESSONS + EXERCISES,
                         ids=[f"{p.parent.name}/{p.name}" for p in LESSONS + EXERCISES])
def test_page_shows_the_committed_outputs(site, notebook):
    """Built from the committed outputs (nothing re-executed): the same pictures, the widgets."""
    nb = nbformat.read(notebook, as_version=4)
    pictures = sum(1 for cell in nb.cells if cell.cell_type == "code"
                   for output in cell.outputs
                   if "image/png" in output.get("data", {}))
    page = Page(site / notebook.parent.name / (notebook.stem + ".html"))
    assert sum(src.startswith("data:image/png") for src in page.images) == pictures
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if state and state.get("state"):
        assert "application/vnd.jupyter.widget-state+json" in page.script_types, \
            "the widgets' saved state is not embedded"


@pytest.mark.parametrize("notebook", LESSONS + EXERCISES,
                         ids=[f"{p.parent.name}/{p.name}" for p in LESSONS + EXERCISES])
def test_page_can_be_launched_on_binder_and_downloaded(site, notebook):
    publish = build_site.publishing()
    path = site / notebook.parent.name / (notebook.stem + ".html")
    links = Page(path).links
    binder = [href for href, _ in links if href.startswith(publish["binder"] + "/v2/gh/")]
    assert binder, "no Binder link"
    parts = urlsplit(binder[0])
    assert parts.path == f"/v2/gh/{publish['repository']}/{publish['ref']}"
    assert parse_qs(parts.query)["labpath"] == [f"{notebook.parent.name}/{notebook.name}"]
    downloads = [href for href, attrs in links if "download" in attrs]
    assert downloads and all((path.parent / d).is_file() for d in downloads)
    assert (path.parent / downloads[0]).read_bytes() == notebook.read_bytes()


def test_pages_have_a_course_navigation(site):
    for lesson in LESSONS:
        text = (site / "notebooks" / (lesson.stem + ".html")).read_text(encoding="utf-8")
        assert 'class="course-nav"' in text and "course-footer" in text, lesson.name


def test_make_site_command_builds(tmp_path):
    """The script as make site runs it (a fresh process), into a folder of our choosing."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_site.py"),
                           "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_readme_binder_table_is_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_site.py"),
                           "--check-readme"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_binder_links_come_from_course_toml():
    publish = build_site.publishing()
    url = build_site.binder_url("notebooks/05_semaphore.ipynb", publish)
    assert url == (f"{publish['binder']}/v2/gh/{publish['repository']}/{publish['ref']}"
                   "?labpath=notebooks%2F05_semaphore.ipynb")
    readme = (ROOT / "README.md").read_text()
    for found in re.findall(r"https://mybinder\.org/v2/gh/([^/\s)]+/[^/\s)]+)/", readme):
        assert found == publish["repository"], f"README names another repository: {found}"


def test_binder_postbuild_installs_the_course_settings(tmp_path):
    """Binder runs postBuild after installing environment.yml; it installs overrides.json."""
    postbuild = ROOT / "postBuild"
    assert postbuild.stat().st_mode & stat.S_IXUSR, "postBuild must be executable"
    prefix = tmp_path / "env"
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text(f"#!/bin/sh\necho {prefix}\n")
    (shim / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(postbuild)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.read_text() == (ROOT / "jupyter" / "overrides.json").read_text()
