"""asynclab grade on a whole class of broken submissions, with the real grader and real kernels.

One grading run (module fixture) grades every bad-input learner at once, with
--jobs 3 (most of the time goes to cells that never end, which wait rather than
compute) and short limits; each test then reads what it needs from the
gradebook and the feedback pages. A second, small class is interrupted with
SIGTERM while a kernel is stuck in a top-level await, and then resumed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from asynclab.cli import main
from asynclab.grading import sandbox
from grader_cases import (CASES, HTTP_STEMS, ROOT, SEQUENTIAL, STEM, TWO_ANSWERS,
                          first_answer_kills_kernel, grading_processes, renamed_function,
                          second_answer_deleted, solved, with_answer, write)

# In the sandbox where one can be made (tests/test_sandbox.py says loudly when not): what these
# tests judge (limits, resume, signals, feedback) must hold there.
SANDBOX = [] if sandbox.unavailable() is None else ["--no-sandbox"]
LIMITS = ["--timeout-cell", "6", "--timeout-notebook", "30", "--memory-mb", "768", *SANDBOX]
EVE = "eve<b>&co"  # a folder name that must be escaped in HTML


def build_class(folder: Path) -> None:
    # A wrong answer whose cell floods its output, then raises with markup in the message.
    noisy = with_answer("print('y' * 3_000_000)\nraise ValueError('<b>boom</b>')", replace=SEQUENTIAL)
    write(noisy, folder / "wrong" / f"{STEM}.ipynb")
    for name in ("good", "infinite_loop", "blocking_sleep", "endless_sleep",
                 "kernel_dies", "huge_output", "deleted_answer", "edited_check",
                 "forged_outputs", "monkeypatch", "zero_cells", "memory_hog", "memory_creep"):
        write(CASES[name](), folder / name / f"{STEM}.ipynb")
    # Their other work must still be graded.
    for stem in HTTP_STEMS:
        write(solved(stem), folder / "good" / f"{stem}.ipynb")
    write(solved(TWO_ANSWERS), folder / "kernel_dies" / f"{TWO_ANSWERS}.ipynb")
    (folder / "good" / "notes.txt").write_text("my notes")
    (folder / "good" / f"{STEM}-Copy1.ipynb").write_text("{}")
    write(first_answer_kills_kernel(), folder / "retry10" / f"{TWO_ANSWERS}.ipynb")
    write(renamed_function(), folder / "renamed" / f"{STEM}.ipynb")
    write(second_answer_deleted(), folder / "half_done" / f"{TWO_ANSWERS}.ipynb")
    for name, content in {"malformed": b'{"cells": [', "empty_file": b"",
                          "not_notebook": b"\x89PNG\r\n\x1a\n\x00binary"}.items():
        (folder / name).mkdir()
        (folder / name / f"{STEM}.ipynb").write_bytes(content)
    (folder / "empty_folder").mkdir()
    (folder / EVE).mkdir()
    (folder / EVE / "<script>alert(1).txt").write_text("x")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    submissions, out = base / "submissions", base / "out"
    build_class(submissions)
    started = time.monotonic()
    status = main(["grade", str(submissions), "--out", str(out), "--jobs", "3", "--quiet",
                   *LIMITS])
    seconds = time.monotonic() - started
    with (out / "gradebook.csv").open(encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    document = json.loads((out / "gradebook.json").read_text(encoding="utf-8"))
    learners = {entry["student"]: entry for entry in document["learners"]}
    return {"status": status, "seconds": seconds, "rows": rows, "learners": learners,
            "submissions": submissions, "out": out, "document": document}


def messages(graded, student: str, exercise: str = "fetch_all_urls", stem: str = STEM) -> str:
    notebook = graded["learners"][student]["notebooks"][stem]
    found = notebook.get("exercises", {}).get(exercise, {})
    return " | ".join([notebook.get("message", ""), *found.get("messages", [])])


def feedback(graded, student: str) -> str:
    slug = graded["learners"][student]["feedback"]
    return (graded["out"] / slug).read_text(encoding="utf-8")


def test_the_run_finishes_and_lists_every_learner(graded):
    assert graded["status"] == 0
    names = {p.name for p in graded["submissions"].iterdir()}
    assert set(graded["rows"]) == names  # even the empty folder and the oddly named one
    assert graded["rows"]["empty_folder"]["total"] == "0"


def test_gradebook_columns_are_student_exercises_total(graded):
    with (graded["out"] / "gradebook.csv").open(encoding="utf-8") as f:
        header = next(csv.reader(f))
    exercises = [e["id"] for e in graded["document"]["exercises"]]
    assert header == ["student", *exercises, "total"]
    assert {"fetch_all_urls", "RateLimiter", "fetch_with_retries"} <= set(exercises)


def test_only_correct_work_earns_points(graded):
    rows = graded["rows"]
    assert rows["good"]["fetch_all_urls"] == "1"
    assert rows["good"]["RateLimiter"] == rows["good"]["fetch_with_retries"] == "1"
    assert rows["good"]["total"] == "3"
    earned = {name for name, row in rows.items() if row["fetch_all_urls"] == "1"}
    assert earned == {"good", "huge_output"}  # a flood of output costs no points, only noise


def test_wrong_solution_fails_with_the_checks_words(graded):
    report = graded["learners"]["wrong"]["notebooks"][STEM]["exercises"]["fetch_all_urls"]
    public = report["reports"]["public"]
    failed = [f["property"] for f in public["findings"] if not f["passed"]]
    assert failed == ["runs concurrently"]
    assert "hidden" not in report["reports"]  # only judged once the public check passes
    page = feedback(graded, "wrong")
    assert "one at a time" in page


def test_an_error_after_a_flood_of_output_is_still_seen_and_escaped(graded):
    assert "your answer cell 1 (fetch_all_urls) raised ValueError: <b>boom</b>" in \
        messages(graded, "wrong")
    page = feedback(graded, "wrong")
    assert "&lt;b&gt;boom&lt;/b&gt;" in page and "<b>boom" not in page


@pytest.mark.parametrize("student", ["infinite_loop", "blocking_sleep", "endless_sleep"])
def test_cells_that_never_end_are_stopped(graded, student):
    text = messages(graded, student)
    assert "was still running after 6 s and was stopped" in text
    assert graded["rows"][student]["fetch_all_urls"] == "0"


def test_a_dying_kernel_costs_only_that_notebook(graded):
    assert "made the kernel die" in messages(graded, "kernel_dies")
    row = graded["rows"]["kernel_dies"]
    assert row["fetch_all_urls"] == "0"
    assert row["lookup_all"] == row["guarded_work"] == "1"


def test_the_other_exercise_of_a_notebook_is_judged_after_a_crash(graded):
    row = graded["rows"]["retry10"]
    assert row["lookup_all"] == "0" and row["guarded_work"] == "1"
    notebook = graded["learners"]["retry10"]["notebooks"][TWO_ANSWERS]
    assert notebook["attempts"] == 2
    assert any("run again in a fresh kernel without answer cell 1 (lookup_all)" in n
               for n in notebook["notes"])


def test_huge_output_is_cut(graded):
    notes = graded["learners"]["huge_output"]["notebooks"][STEM]["notes"]
    assert any("printed more than 1 MB" in n for n in notes)
    assert os.path.getsize(graded["out"] / "gradebook.json") < 2_000_000


def test_memory_limits(graded):
    assert "raised MemoryError" in messages(graded, "memory_hog")
    creep = messages(graded, "memory_creep")
    assert "used more than 768 MB of memory and was stopped" in creep, creep


def test_a_deleted_answer_cell_is_named(graded):
    assert "answer cell 1 (fetch_all_urls) is missing" in messages(graded, "deleted_answer")
    assert "answer cell 1 (fetch_all_urls) is missing" in messages(graded, "zero_cells")


def test_the_other_answers_are_judged_when_one_is_deleted(graded):
    row = graded["rows"]["half_done"]
    assert row["lookup_all"] == "1" and row["guarded_work"] == "0"
    assert "answer cell 2 (guarded_work) is missing" in messages(
        graded, "half_done", "guarded_work", TWO_ANSWERS)


def test_a_renamed_function_is_not_defined(graded):
    assert "fetch_all_urls is not defined: did you run/rename the answer cell?" in \
        messages(graded, "renamed")


@pytest.mark.parametrize("student", ["edited_check", "forged_outputs"])
def test_edited_checks_and_forged_outputs_earn_nothing(graded, student):
    assert graded["rows"][student]["fetch_all_urls"] == "0"
    findings = graded["learners"][student]["notebooks"][STEM]["exercises"]["fetch_all_urls"]
    assert "is not written yet" in json.dumps(findings["reports"]["public"])


def test_monkeypatching_the_course_is_caught(graded):
    text = messages(graded, "monkeypatch")
    assert ("tampering detected: your code replaced "
            "asynclab.checks.nb05_semaphore.check_fetch_all_urls") in text
    assert text.endswith("no credit")
    assert graded["rows"]["monkeypatch"]["fetch_all_urls"] == "0"
    assert graded["learners"]["monkeypatch"]["notebooks"][STEM]["flags"]  # for review


@pytest.mark.parametrize("student, fragment", [
    ("malformed", "malformed JSON"), ("empty_file", "the file is empty"),
    ("not_notebook", "not a text file")])
def test_files_that_are_not_notebooks(graded, student, fragment):
    notebook = graded["learners"][student]["notebooks"][STEM]
    assert notebook["status"] == "unusable" and fragment in notebook["message"]
    assert graded["rows"][student]["total"] == "0"
    assert fragment in feedback(graded, student)


def test_other_files_are_ignored_and_noted(graded):
    notes = graded["learners"]["good"]["notes"]
    assert any(n.startswith("notes.txt: ignored") for n in notes)
    assert any("did you mean 05_semaphore.ipynb?" in n for n in notes)
    assert "notes.txt: ignored" in feedback(graded, "good")


def test_feedback_pages_are_self_contained_and_escaped(graded):
    good = feedback(graded, "good")
    assert good.count('src="data:image/png;base64,') == 3  # one timeline per exercise
    assert "http://" not in good and "https://" not in good
    page = feedback(graded, EVE)
    assert "eve&lt;b&gt;&amp;co" in page and "<script>" not in page and "<b>&" not in page
    assert "&lt;script&gt;alert(1).txt: ignored" in page
    failing = feedback(graded, "blocking_sleep")
    assert "was still running after 6 s" in failing and "0 / 1 point" in failing


def test_no_kernel_outlives_the_run(graded):
    assert grading_processes() == []  # no kernel, cold or warm, and no zygote


def test_a_second_run_skips_what_is_graded(graded):
    results = sorted((graded["out"] / "results").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main(["grade", str(graded["submissions"]), "--out", str(graded["out"]), "--quiet",
                 *LIMITS]) == 0
    # Nothing was graded again: every saved verdict is untouched (no wall-clock bound: a
    # loaded machine must not fail this).
    assert [p.stat().st_mtime_ns for p in results] == stamps
    with (graded["out"] / "gradebook.csv").open(encoding="utf-8") as f:
        assert {row["student"]: row for row in csv.DictReader(f)} == graded["rows"]


def test_grading_the_class_stays_quick(graded):
    assert graded["seconds"] < 240, f"grading the test class took {graded['seconds']:.0f} s"


# -- interruption and resume -------------------------------------------------------------------


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def read_rows(out: Path) -> dict[str, dict]:
    with (out / "gradebook.csv").open(encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_sigterm_stops_cleanly_and_the_next_run_finishes(tmp_path):
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write(solved(), submissions / "ann" / f"{STEM}.ipynb")
    write(CASES["endless_sleep"](), submissions / "bob" / f"{STEM}.ipynb")
    command = [sys.executable, "-m", "asynclab.cli", "grade", str(submissions), "--out", str(out),
               "--jobs", "2", "--timeout-cell", "120", "--timeout-notebook", "300", *SANDBOX]
    grader = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(grader.pid)
    kernels: set[int] = set()
    ann = out / "results" / "ann" / f"{STEM}.json"

    def ann_graded_while_bob_waits_forever() -> bool:
        with contextlib.suppress(psutil.Error):
            kernels.update(p.pid for p in process.children(recursive=True))
        return ann.exists() and len(kernels) >= 2

    try:
        if not _wait_for(ann_graded_while_bob_waits_forever, 60):
            grader.kill()
            pytest.fail(f"ann was not graded in time: {grader.communicate()[1]}")
        grader.send_signal(signal.SIGTERM)
        _, err = grader.communicate(timeout=20)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert grader.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    survivors = [pid for pid in kernels if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert survivors == []  # bob's kernel, stuck in a top-level await, was killed
    rows = read_rows(out)
    assert rows["ann"]["fetch_all_urls"] == "1"
    assert rows["bob"]["fetch_all_urls"] == "not graded: interrupted"
    assert json.loads((out / "gradebook.json").read_text())["interrupted"] == "SIGTERM"
    assert "Not graded: grading was interrupted" in (out / "feedback" / "bob.html").read_text()

    stamp = ann.stat().st_mtime_ns
    assert main(["grade", str(submissions), "--out", str(out), "--quiet",
                 "--timeout-cell", "2", *SANDBOX]) == 0
    assert ann.stat().st_mtime_ns == stamp  # resumed: ann was not graded again
    rows = read_rows(out)
    assert rows["ann"]["fetch_all_urls"] == "1" and rows["bob"]["fetch_all_urls"] == "0"


def test_a_notebooks_duration_leaves_out_its_wait_for_a_slot(graded):
    """duration_s is the notebook's own run; the time its ready kernel waited is apart."""
    runs = [nb for learner in graded["learners"].values()
            for nb in learner["notebooks"].values() if nb.get("attempts")]
    assert runs and all(nb["waited_s"] >= 0 and nb["duration_s"] > 0 for nb in runs)
    assert any(nb["waited_s"] > 0 for nb in runs)  # 3 at a time, a class of 20 notebooks
