"""Learner submissions for the judge and grader tests, built from the course's own notebooks.

Nothing is committed as a notebook file: each case is made in a temporary folder
with nbformat, from ``exercises/`` and ``solutions/``, so the cases follow the
course when its notebooks change.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
COLD_KERNEL, ZYGOTE = "asynclab.grading.kernel", "asynclab.grading.zygote"


def _own_pid_namespace(proc: psutil.Process) -> bool:
    try:
        return os.readlink(f"/proc/{proc.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def grading_processes(pid: int | None = None, kernels_only: bool = False) -> list[psutil.Process]:
    """The grading kernels under process ``pid`` (this one by default): cold ones (``python -m
    asynclab.grading.kernel``) and warm ones (forked by the zygote into a sandbox's own PID
    namespace); unless ``kernels_only``, the zygotes and their helpers too."""
    found = []
    try:
        for proc in psutil.Process(pid).children(recursive=True):
            try:
                line = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if COLD_KERNEL in line or (ZYGOTE in line and (not kernels_only
                                                           or _own_pid_namespace(proc))):
                found.append(proc)
    except psutil.Error:
        pass
    return found
STEM = "05_semaphore"
TWO_ANSWERS = "09_pitfalls"  # a notebook with two exercises (lookup_all, guarded_work)
HTTP_STEMS = ("12_http_and_rate_limits", "13_retries")  # RateLimiter; fetch_with_retries


def notebook(folder: str, stem: str = STEM):
    return nbformat.read(ROOT / folder / f"{stem}.ipynb", as_version=4)


def answer_cells(nb) -> list:
    return [c for c in nb.cells if "answer" in c.metadata.get("tags", [])]


def solved(stem: str = STEM):
    """The exercise notebook with the reference answers pasted in (what a good learner hands in)."""
    nb = notebook("exercises", stem)
    for mine, reference in zip(answer_cells(nb), answer_cells(notebook("solutions", stem))):
        mine.source = reference.source
    return nb


def with_answer(extra: str = "", replace: str | None = None, stem: str = STEM, index: int = 0):
    """The solved notebook, with answer cell ``index`` replaced and/or extended by ``extra``."""
    nb = solved(stem)
    cell = answer_cells(nb)[index]
    if replace is not None:
        cell.source = replace
    if extra:
        cell.source = cell.source + "\n\n" + extra
    return nb


SEQUENTIAL = '''
import asyncio

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    results = {}
    for url in urls:
        try:
            async with asyncio.timeout(timeout_s):
                results[url] = await fetch(url)
        except TimeoutError:
            results[url] = None
    return results
'''

MONKEYPATCH = '''
from asynclab.checking import Report
import asynclab.checks.nb05_semaphore as _checks

def _always_pass(fn, *, variant="public"):
    report = Report("fetch_all_urls")
    report.add("every URL in the result", True, "trust me")
    return report

_checks.check_fetch_all_urls = _always_pass
_checks.EXERCISES["fetch_all_urls"] = _always_pass

async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):
    return {}
'''


# Shared memory is not counted by the kernel's RLIMIT_DATA: only the host's RSS watchdog stops it.
# It then waits: if the watchdog missed it, the cell times out instead (and the test says so).
SHARED_MEMORY_CREEP = '''
import mmap, time
chunk = b"x" * 2**24
shared = mmap.mmap(-1, 2 * 1024**3)
for offset in range(0, len(shared), len(chunk)):
    shared[offset:offset + len(chunk)] = chunk
time.sleep(600)
'''


def unsolved():
    return notebook("exercises")


def deleted_answer():
    nb = solved()
    nb.cells = [c for c in nb.cells if "answer" not in c.metadata.get("tags", [])]
    return nb


def untagged_answer():
    nb = solved()
    for cell in answer_cells(nb):
        cell.metadata["tags"] = []
    return nb


def edited_check():
    """Unsolved, with the check cell replaced by a print of the reference's PASS text."""
    nb = unsolved()
    reference = notebook("solutions")
    passing = next(c for c in reference.cells if "check" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in passing.outputs if o.get("output_type") == "stream")
    for cell in nb.cells:
        if "check" in cell.metadata.get("tags", []):
            cell.source = f"print({text!r})"
    return nb


def forged_outputs():
    """The solution notebook's outputs everywhere, but the answer is the stub."""
    nb = copy.deepcopy(notebook("solutions"))
    stub = answer_cells(unsolved())[0].source
    answer_cells(nb)[0].source = stub
    return nb


def zero_cells():
    nb = unsolved()
    nb.cells = []
    return nb


def renamed_function():
    """The learner renamed the function they had to write."""
    return with_answer(replace=answer_cells(notebook("solutions"))[0].source.replace(
        "def fetch_all_urls(", "def fetch_urls("))


def second_answer_deleted():
    """The two-exercise notebook without its second answer cell: the first one is still judged."""
    nb = solved(TWO_ANSWERS)
    second = answer_cells(nb)[1]
    nb.cells = [c for c in nb.cells if c is not second]
    return nb


def first_answer_kills_kernel():
    """The two-exercise notebook: lookup_all's answer cell ends the kernel; guarded_work is correct."""
    return with_answer("import os\nos._exit(1)", stem=TWO_ANSWERS, index=0)


CASES: dict[str, Callable[[], object]] = {
    "good": solved,
    "wrong": lambda: with_answer(replace=SEQUENTIAL),
    "infinite_loop": lambda: with_answer("while True:\n    pass"),
    "blocking_sleep": lambda: with_answer("import time\ntime.sleep(1000)"),
    "endless_await": lambda: with_answer("await asyncio.Event().wait()"),  # nothing can end it
    "endless_sleep": lambda: with_answer("while True:\n    await asyncio.sleep(1)"),  # timers due
    "kernel_dies": lambda: with_answer("import os\nos._exit(1)"),
    "huge_output": lambda: with_answer("print('x' * 50_000_000)"),
    "deleted_answer": deleted_answer,
    "untagged_answer": untagged_answer,
    "edited_check": edited_check,
    "forged_outputs": forged_outputs,
    "monkeypatch": lambda: with_answer(replace=MONKEYPATCH),
    "zero_cells": zero_cells,
    "memory_hog": lambda: with_answer("hog = bytearray(64 * 1024**3)"),
    "memory_creep": lambda: with_answer(SHARED_MEMORY_CREEP),
}


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
