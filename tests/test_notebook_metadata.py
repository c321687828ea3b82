"""Every notebook names the course's kernel, so JupyterLab starts it without asking.

A notebook without a kernelspec (or with another one) makes JupyterLab show a "Select Kernel"
dialog, and Binder or a JupyterHub may pick a different Python; nbval and the grader run the
kernel named here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
NOTEBOOKS = sorted(p for folder in ("notebooks", "exercises", "solutions")
                   for p in (ROOT / folder).glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.name}" for p in NOTEBOOKS])
def test_notebook_names_the_course_kernel(path: Path):
    nb = nbformat.read(path, as_version=4)
    spec = dict(nb.metadata.get("kernelspec", {}))
    assert spec == KERNELSPEC, (
        f"{path.relative_to(ROOT)}: kernelspec is {spec or 'missing'}; it must be {KERNELSPEC}")
    assert nb.metadata.get("language_info", {}).get("name", "python") == "python"
