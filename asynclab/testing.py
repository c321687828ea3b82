"""Run tests of async code from a notebook, on the course's virtual clock.

Lesson 18 (testing async code) uses three things from here:

* ``VirtualTimeTestCase``: ``unittest.IsolatedAsyncioTestCase`` whose event loop
  is the course's virtual one (``asynclab.vtime.new_virtual_loop``), so a test
  that waits five minutes takes milliseconds. Python 3.13 added the public
  ``loop_factory`` attribute for this; on 3.11 and 3.12 the class builds its
  ``asyncio.Runner`` itself, the one line that 3.13 changed.
* ``run_unittest(case_class)``: runs a test case class and returns unittest's
  report. It runs in a thread of its own, because the notebook's kernel already
  runs an event loop in its main thread and ``asyncio.Runner`` refuses to start
  a second one there.
* ``run_pytest(files, ...)``: writes test files to a temporary folder and runs
  pytest on them in a fresh Python process, exactly as from a terminal. Only the
  plugin the tests need is loaded (anyio's, ``-p anyio``): plugin autoloading is
  off, so the other pytest plugins installed in the course's environment (nbval,
  xdist, looptime's) stay out. looptime 0.9's plugin is written for
  pytest-asyncio and, without it, makes every fixture fail with
  ``AttributeError: 'NoneType' object has no attribute '__name__'``; that is why
  the course's own pytest configuration says ``-p no:looptime_plugin``.

The reports are made stable for the notebooks' committed outputs: durations
("in 0.03s") read "in <t>s" and the temporary folder's path is left out.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest
from dataclasses import dataclass
from pathlib import Path

from asynclab.vtime import new_virtual_loop

__all__ = ["VirtualTimeTestCase", "run_unittest", "run_pytest", "PytestRun"]

_DURATION = re.compile(r"\b(in|Ran \d+ tests? in) \d+(\.\d+)?s\b")


class VirtualTimeTestCase(unittest.IsolatedAsyncioTestCase):
    """An ``IsolatedAsyncioTestCase`` on virtual time: each test gets a fresh loop whose clock
    starts at 0 and jumps over idle waits."""

    loop_factory = staticmethod(new_virtual_loop)  # read by Python 3.13 and later

    if sys.version_info < (3, 13):
        def _setupAsyncioRunner(self) -> None:  # what 3.13 does with loop_factory
            assert self._asyncioRunner is None, "asyncio runner is already initialized"
            self._asyncioRunner = asyncio.Runner(debug=True, loop_factory=self.loop_factory)


def _stable(text: str, folder: str | None = None) -> str:
    text = _DURATION.sub(lambda m: f"{m.group(1)} <t>s", text)
    if folder:
        text = text.replace(folder + os.sep, "").replace(folder, ".")
    return text


def run_unittest(*case_classes: type[unittest.TestCase], verbosity: int = 2) -> str:
    """Run the tests of ``case_classes`` in a worker thread; return unittest's report."""
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c)
                               for c in case_classes)
    stream = io.StringIO()
    runner = unittest.TextTestRunner(stream=stream, verbosity=verbosity)
    worker = threading.Thread(target=runner.run, args=(suite,), name="asynclab-unittest")
    worker.start()
    worker.join()
    return _stable(stream.getvalue())


@dataclass
class PytestRun:
    """What one pytest run printed, and its exit status (0: every test passed)."""

    returncode: int
    output: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    def __repr__(self) -> str:
        return self.output

    def _repr_pretty_(self, printer, cycle) -> None:  # how IPython shows it
        printer.text(self.output)


def run_pytest(files: dict[str, str], *args: str, timeout_s: float = 120.0) -> PytestRun:
    """Write ``files`` (name -> source) to a temporary folder and run pytest there.

    ``args`` are extra pytest arguments (``"-v"``, ``"-k", "name"``). The run has
    its own ``pytest.ini``, so no configuration of the course folder applies.
    Only anyio's plugin is loaded; ask for another one with ``"-p", "name"``.
    """
    with tempfile.TemporaryDirectory(prefix="asynclab-tests-") as folder:
        for name, source in {"pytest.ini": "[pytest]\n", **files}.items():
            Path(folder, name).write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        # The same plain 80-column text wherever it runs (a kernel asks for colours).
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "80"}
        for name in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE"):
            env.pop(name, None)
        env.pop("PYTEST_ADDOPTS", None)
        # pytest prints whole failure messages, not cut to 80 columns, when it sees CI or BUILD_NUMBER.
        for name in ("CI", "BUILD_NUMBER"):
            env.pop(name, None)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        verbosity = () if any(a.startswith("-v") for a in args) else ("-q",)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *verbosity, "--no-header", "--color=no", "-p", "anyio",
             "-p", "no:cacheprovider", *args],
            cwd=folder, env=env, capture_output=True, text=True, timeout=timeout_s)
        return PytestRun(done.returncode, _stable(done.stdout + done.stderr, folder))
