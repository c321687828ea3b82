"""asynclab.grading.judge and asynclab check: what runs, what is trusted, and the exit codes.

Most tests here need no kernel: the notebook the judge builds, the tamper
fingerprint and the in-kernel judge itself are exercised in-process. The
``asynclab check`` tests run real kernels (two notebooks, a few seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from asynclab.grading import guard as grading_guard
from asynclab.checking import Report
from asynclab.cli import main
from asynclab.grading.judge import (Limits, UnusableInput, assemble, defined_names,
                                    load_course_notebook, read_notebook,
                                    report_text, review_flags)
from grader_cases import (MONKEYPATCH, grading_processes, ROOT, STEM, TWO_ANSWERS, answer_cells, deleted_answer,
                          edited_check, forged_outputs, notebook, solved, untagged_answer)

LIMITS = Limits(variants=("public", "hidden"))


@pytest.fixture(scope="module")
def course():
    return load_course_notebook(STEM, ROOT)


def plan_for(course, learner, tmp_path):
    return assemble(course, learner, LIMITS, tmp_path)


# -- reading what a learner hands in -----------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b"", "the file is empty"),
    (b"print('hello')\n", "malformed JSON"),
    (b'{"cells": [', "malformed JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text file"),
    (b"[1, 2, 3]", "JSON without a list of cells"),
    (b'{"nbformat": 4}', "JSON without a list of cells"),
])
def test_unusable_files_get_one_clear_line(tmp_path, content, fragment):
    path = tmp_path / f"{STEM}.ipynb"
    path.write_bytes(content)
    with pytest.raises(UnusableInput) as caught:
        read_notebook(path)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_missing_file_and_folder_are_unusable(tmp_path):
    with pytest.raises(UnusableInput, match="no such file"):
        read_notebook(tmp_path / "nope.ipynb")
    with pytest.raises(UnusableInput, match="is a folder"):
        read_notebook(tmp_path)


def test_unknown_notebook_name_lists_the_course_notebooks():
    with pytest.raises(UnusableInput) as caught:
        load_course_notebook("99_nothing", ROOT)
    assert "99_nothing.ipynb is not one of the course's exercise notebooks" in str(caught.value)
    assert f"{STEM}.ipynb" in str(caught.value)


# -- the notebook that runs --------------------------------------------------------------------


def test_only_answer_cells_come_from_the_learner(course, tmp_path):
    plan = plan_for(course, edited_check(), tmp_path)
    roles = [c.role for c in plan.cells]
    assert roles[0] == "setup" and roles.count("answer") == 1 and roles.count("judge") == 1
    # The learner's edited check cell (a print of the PASS text) is nowhere.
    assert not any("checks passed" in c.source for c in plan.cells)
    # The judging cell sits where the course's check cell was, after the answer.
    assert roles.index("judge") > roles.index("answer")
    # Course cells are the course's own, even when the learner changed theirs.
    course_sources = [c.source for c in course.template.cells if c.cell_type == "code"]
    assert all(c.source in course_sources for c in plan.cells if c.role == "course")


def test_forged_outputs_are_never_read(course, tmp_path):
    plan = plan_for(course, forged_outputs(), tmp_path)
    answer = next(c for c in plan.cells if c.role == "answer")
    assert "raise NotImplementedError" in answer.source  # the stub runs, outputs are ignored


def test_setup_and_judge_cells_carry_run_time_secrets(course, tmp_path):
    first = plan_for(course, solved(), tmp_path)
    second = plan_for(course, solved(), tmp_path)
    assert first.nonce != second.nonce and first.nonce in first.cells[-1].source
    judge = next(c for c in first.cells if c.role == "judge")
    assert judge.result_path.startswith(str(tmp_path)) and not Path(judge.result_path).exists()
    assert first.cells[0].source.split("=")[0] != second.cells[0].source.split("=")[0]


def test_deleted_and_untagged_answer_cells_are_named(course, tmp_path):
    deleted = plan_for(course, deleted_answer(), tmp_path)
    assert deleted.missing["fetch_all_urls"].startswith(
        "answer cell 1 (fetch_all_urls) is missing")
    assert not any(c.role == "answer" for c in deleted.cells)
    untagged = plan_for(course, untagged_answer(), tmp_path)
    assert "defines fetch_all_urls but is not tagged `answer`" in untagged.missing["fetch_all_urls"]
    assert any("not answer cells and were not run" in n for n in untagged.notes)


def test_answer_cells_are_matched_by_the_exercise_they_define(tmp_path):
    course = load_course_notebook(TWO_ANSWERS, ROOT)
    learner = solved(TWO_ANSWERS)
    first, second = answer_cells(learner)
    first.source, second.source = second.source, first.source  # swapped by the learner
    plan = assemble(course, learner, LIMITS, tmp_path)
    answers = [c for c in plan.cells if c.role == "answer"]
    assert [c.exercises for c in answers] == [["lookup_all"], ["guarded_work"]]
    assert "def lookup_all" in answers[0].source
    assert "def guarded_work" in answers[1].source


def test_an_answer_the_parser_cannot_take_is_still_matched_by_name():
    """A cell nested too deep for the parser (MemoryError), with a null byte (ValueError on some
    Pythons) or with a syntax error: its definitions are found by the regex fallback, and the
    grader does not fail on it."""
    too_deep = "x = " + "-" * 200_000 + "1\nasync def fetch_all_urls(urls, fetch): pass\n"
    broken = "async def fetch_all_urls(urls, fetch):\n    return {\n"
    nul = "async def fetch_all_urls(urls, fetch): pass\x00\n"
    for source in (too_deep, broken, nul):
        assert defined_names(source) == ["fetch_all_urls"]


def test_review_flags_catch_tools_for_fooling_a_judge():
    assert review_flags(MONKEYPATCH)  # imports and patches the course's checks
    assert any("frames" in f for f in review_flags("x = sys._getframe(1).f_locals"))
    plain = answer_cells(notebook("solutions"))[0].source
    assert review_flags(plain) == []


# -- the judge inside the kernel, run in-process -----------------------------------------------


def reference_namespace() -> dict:
    namespace: dict = {}
    exec("import asyncio", namespace)  # noqa: S102 - what the notebook's setup cell does
    exec(answer_cells(notebook("solutions"))[0].source, namespace)  # noqa: S102
    return namespace


def test_in_kernel_judge_passes_the_reference(tmp_path):
    judge = grading_guard.install(STEM, ["fetch_all_urls"], reference_namespace())
    out = tmp_path / "verdict.json"
    judge("fetch_all_urls", ("public", "hidden"), str(out), "nonce123", False)
    verdict = json.loads(out.read_text())
    assert verdict["nonce"] == "nonce123" and verdict["tampering"] == []
    assert set(verdict["reports"]) == {"public", "hidden"}
    assert all(f["passed"] for r in verdict["reports"].values() for f in r["findings"])
    with pytest.raises(FileExistsError):  # a file planted in advance is never trusted
        judge("fetch_all_urls", ("public",), str(out), "nonce123", False)


def test_in_kernel_judge_reports_an_undefined_function(tmp_path):
    judge = grading_guard.install(STEM, ["fetch_all_urls"], {})
    out = tmp_path / "verdict.json"
    judge("fetch_all_urls", ("public",), str(out), "n", False)
    assert json.loads(out.read_text())["defined"] is False


def test_monkeypatching_the_checks_is_tampering(tmp_path):
    import asynclab.checks.nb05_semaphore as checks

    judge = grading_guard.install(STEM, ["fetch_all_urls"], reference_namespace())
    original = checks.check_fetch_all_urls
    checks.check_fetch_all_urls = lambda fn, **kwargs: Report("fetch_all_urls")
    try:
        out = tmp_path / "verdict.json"
        judge("fetch_all_urls", ("public",), str(out), "n", False)
    finally:
        checks.check_fetch_all_urls = original
    changed = json.loads(out.read_text())["tampering"]
    assert "asynclab.checks.nb05_semaphore.check_fetch_all_urls" in changed
    assert grading_guard.describe_tampering(changed).startswith(
        "tampering detected: your code replaced asynclab.checks.nb05_semaphore."
        "check_fetch_all_urls")


def test_the_package_names_loaded_on_first_use_are_fingerprinted(tmp_path):
    """``asynclab`` loads ``run_virtual`` and the rest on first use; the judge loads them before
    its fingerprint, so replacing one the notebook never touched is still seen."""
    import asynclab

    vars(asynclab).pop("run_virtual", None)  # as in a fresh kernel: not loaded yet
    judge = grading_guard.install(STEM, ["fetch_all_urls"], reference_namespace())
    original = asynclab.run_virtual
    asynclab.run_virtual = lambda *args, **kwargs: None
    try:
        out = tmp_path / "verdict.json"
        judge("fetch_all_urls", ("public",), str(out), "n", False)
    finally:
        asynclab.run_virtual = original
    assert "asynclab.run_virtual" in json.loads(out.read_text())["tampering"]


def test_patching_asyncio_or_the_clock_is_tampering():
    import asyncio
    import time

    before = grading_guard.snapshot()
    original_gather, original_monotonic = asyncio.gather, time.monotonic
    asyncio.gather, time.monotonic = (lambda *a, **k: None), (lambda: 0.0)
    try:
        changed = grading_guard.compare(before, grading_guard.snapshot())
    finally:
        asyncio.gather, time.monotonic = original_gather, original_monotonic
    assert {"asyncio.gather", "time.monotonic"} <= set(changed)
    assert grading_guard.compare(before, grading_guard.snapshot()) == []


def test_import_hooks_and_trace_functions_from_the_notebook_are_tampering():
    import sys

    before = grading_guard.snapshot()
    finder = type("Finder", (), {"__module__": "__main__", "find_spec": lambda *a: None})()
    sys.meta_path.insert(0, finder)
    try:
        changed = grading_guard.compare(before, grading_guard.snapshot())
    finally:
        sys.meta_path.remove(finder)
    assert changed == ["hook sys.meta_path"]
    assert "your code installed sys.meta_path" in grading_guard.describe_tampering(changed)


def test_report_text_is_rebuilt_exactly():
    report = Report("f")
    report.add("a", True, "fine")
    report.add("b", False, "17 in flight", "use a semaphore")
    assert report_text(report.to_dict()) == report.text()


# -- asynclab check: exit codes ----------------------------------------------------------------


def test_check_exits_0_when_the_reference_passes_and_writes_the_page(capsys, tmp_path):
    page = tmp_path / "report.html"
    assert main(["check", str(ROOT / "solutions" / f"{STEM}.ipynb"), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "fetch_all_urls: all 7 checks passed" in out
    assert "1 of 1 exercise(s) passed" in out
    assert f"the report and your timelines are in {page}" in out
    html = page.read_text(encoding="utf-8")
    assert "fetch_all_urls" in html and html.count('class="pass">PASS') == 7
    assert 'src="data:image/png;base64,' in html  # the learner's timeline


def test_check_exits_1_on_the_unsolved_exercise(capsys):
    assert main(["check", str(ROOT / "exercises" / f"{STEM}.ipynb")]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] written: fetch_all_urls is not written yet" in out
    assert "0 of 1 exercise(s) passed" in out


@pytest.mark.parametrize("folder, status", [("solutions", 0), ("exercises", 1)])
def test_check_says_the_same_with_warm_and_cold_kernels_and_leaves_no_process(capsys, folder,
                                                                              status):
    path = str(ROOT / folder / f"{STEM}.ipynb")
    assert main(["check", path]) == status
    warm = capsys.readouterr().out
    assert grading_processes() == []  # neither the kernel nor the zygote it was forked from
    assert main(["check", path, "--cold-kernels"]) == status
    assert capsys.readouterr().out == warm
    assert grading_processes() == []


def broken_zygote(tmp_path: Path, sandboxed: bool):
    """A zygote that cannot start: ipykernel, as its environment finds it, fails to import."""
    from asynclab.grading import sandbox, zygote
    from asynclab.grading.kernel import host_kernel_env

    broken = tmp_path / "broken"
    (broken / "ipykernel").mkdir(parents=True)
    (broken / "ipykernel" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    env = sandbox.kernel_env() if sandboxed else host_kernel_env()
    return zygote.Zygote({**env, "PYTHONPATH": str(broken)})


def test_a_zygote_that_cannot_start_costs_speed_not_verdicts(tmp_path, monkeypatch, caplog):
    """Kernels then start cold, with the same verdict; the reason is said once, and the broken
    zygote is not started again for every notebook."""
    import asyncio
    import os

    from asynclab.grading import zygote
    from asynclab.grading.judge import judge_file

    server = broken_zygote(tmp_path, sandboxed=False)
    monkeypatch.setitem(zygote._ZYGOTES, (os.getpid(), False), server)
    limits = Limits(warm_kernels=True, timeout_cell=30)
    for folder, passed in [("solutions", True), ("exercises", False)]:
        verdict = asyncio.run(judge_file(ROOT / folder / f"{STEM}.ipynb", ROOT, limits))
        assert (verdict.status, verdict.passed) == ("graded", passed), verdict.to_dict(False)
    said = [r.getMessage() for r in caplog.records if "kernels start cold" in r.getMessage()]
    assert said == ["warm kernels: the zygote did not start (ImportError: broken on purpose); "
                    "kernels start cold instead (slower, with the same verdicts)"]
    assert grading_processes() == []


@pytest.mark.parametrize("name, content, fragment", [
    (f"{STEM}.ipynb", b"garbage", "malformed JSON"),
    ("99_unknown.ipynb", nbformat.writes(nbformat.v4.new_notebook()).encode(),
     "not one of the course's exercise notebooks"),
    (f"{STEM}.txt", b"hello", "not a notebook"),
    ("missing.ipynb", None, "no such file"),
])
def test_check_exits_2_on_unusable_input(capsys, tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asynclab check: ") and fragment in err and "\n" not in err


# -- hidden-check seeds --------------------------------------------------------------------------


def test_the_hidden_seed_is_only_in_the_judging_cells(course, tmp_path):
    seed = 987654321123
    plan = assemble(course, solved(), LIMITS, tmp_path, seed)
    holding = {cell.role for cell in plan.cells if str(seed) in cell.source}
    assert holding == {"judge"}
    assert all(str(seed) in cell.source for cell in plan.cells if cell.role == "judge")


def test_the_hidden_seed_reaches_the_check(tmp_path, monkeypatch):
    import asynclab.checks.nb05_semaphore as checks

    seen = []
    real = checks.EXERCISES["fetch_all_urls"]

    def recording(fn, *, variant="public", seed=None):
        seen.append((variant, seed))
        return real(fn, variant=variant, seed=seed)

    monkeypatch.setitem(checks.EXERCISES, "fetch_all_urls", recording)  # before install: trusted
    judge = grading_guard.install(STEM, ["fetch_all_urls"], reference_namespace())
    judge("fetch_all_urls", ("public", "hidden"), str(tmp_path / "v.json"), "n", False, 42)
    assert seen == [("public", 42), ("hidden", 42)]
    assert json.loads((tmp_path / "v.json").read_text())["tampering"] == []


def test_every_check_takes_the_seed():
    """The judging cell calls each check with ``seed=``: the checks' contract."""
    import inspect

    from asynclab.checks import registry

    for checks in registry().values():
        for name, check in checks.items():
            assert "seed" in inspect.signature(check).parameters, name


def test_hidden_seeds_are_secret_and_stable():
    from asynclab.grading.judge import hidden_seed

    assert hidden_seed(b"class secret", "ab" * 32) == hidden_seed(b"class secret", "ab" * 32)
    assert hidden_seed(b"class secret", "ab" * 32) != hidden_seed(b"another", "ab" * 32)
    assert hidden_seed(b"class secret", "ab" * 32) != hidden_seed(b"class secret", "cd" * 32)


def test_the_class_secret_is_made_once_and_private(tmp_path):
    import stat

    from asynclab.grading.command import class_secret

    first = class_secret(tmp_path / "out")
    assert len(first) == 32 and class_secret(tmp_path / "out") == first
    mode = (tmp_path / "out" / ".hidden-seed-secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_the_grading_tools_read_notebooks_without_building_iri_parsers():
    """jsonschema imports rfc3987_syntax (0.9 s of Lark parsers) and the other format checkers'
    libraries unless told they are absent; the grading tools tell it, and notebooks are still
    read and validated, a bad one refused."""
    code = ("import sys, asynclab.cli, nbformat\n"
            "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')])\n"
            "nbformat.validate(nb)\n"
            "nb.cells[0].pop('source')\n"
            "try:\n    nbformat.validate(nb)\nexcept nbformat.ValidationError:\n"
            "    print('refused')\n"
            "print(sys.modules.get('rfc3987_syntax', 'absent'), 'arrow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["refused", "None", "False"]


def test_every_checks_module_is_named_after_its_notebook():
    """notebook_stems() reads the stems from module names without importing them."""
    import importlib

    from asynclab.checks import exercise_names, exercises_for, notebook_stems, registry

    assert notebook_stems() == sorted(registry())
    for stem, checks in registry().items():
        assert importlib.import_module(f"asynclab.checks.nb{stem}").NOTEBOOK == stem
        assert exercises_for(stem) == checks
        assert exercise_names(stem) == list(checks)  # read without importing the module


def test_exercise_names_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    import asynclab.checks

    module = tmp_path / "nb99_made_up.py"
    monkeypatch.setattr(asynclab.checks, "module_file", lambda stem: module)
    module.write_text('NAME = "b"\nEXERCISES = {"a": check_a, NAME: check_b}\n')
    assert asynclab.checks.exercise_names("99_made_up") == ["a", "b"]
    for bad in ['EXERCISES = {name(): check_a}\n', 'EXERCISES = {UNKNOWN: check_a}\n',
                'EXERCISES = dict(a=check_a)\n']:
        module.write_text(bad)
        with pytest.raises(LookupError, match="nb99_made_up.py: EXERCISES must be a dict"):
            asynclab.checks.exercise_names("99_made_up")


def test_the_grader_reads_the_course_without_importing_the_checks():
    """The host needs the exercises' names, not the checks: those import virtual time, pytest
    (through looptime) and aiohttp, the kernel's business."""
    code = ("import sys\n"
            "from asynclab.grading.judge import course_notebooks, course_root, load_course_notebook\n"
            "root = course_root(None)\n"
            "for stem in course_notebooks(root):\n"
            "    assert load_course_notebook(stem, root).exercises, stem\n"
            "print([m for m in ('asynclab.checking', 'asynclab.timeline', 'looptime', 'pytest',\n"
            "                   'aiohttp', 'matplotlib') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"
