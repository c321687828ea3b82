"""Every script a lesson shows also runs as a script, with asyncio.run at the bottom."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "notebooks" / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_runs(script):
    text = script.read_text()
    assert 'if __name__ == "__main__":' in text, f"{script.name} needs a main guard"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=script.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), f"{script.name} printed nothing"
