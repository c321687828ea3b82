"""The grading sandbox (asynclab.grading.sandbox): hostile learners, each trying one thing.

The grade, and the host's state after the run, are the witnesses. The first tests run
one command in a sandbox beside the same command outside it, so each shows the attack
works without the sandbox and fails inside it. The class tests grade a whole class of
hostile learners with the real command, as an instructor runs it (a separate process,
the class folder on its command line), and a few of them again with --no-sandbox, where
the thefts and the escape succeed: the tests can fail.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from asynclab.grading import sandbox
from grader_cases import CASES, HTTP_STEMS, ROOT, STEM, solved, write
from grader_cases.hostile import (ESCAPE, FORK_BOMB, KILL_EVERYTHING, STEAL_PEER, STEAL_SOLUTIONS,
                                  TOKEN, connect_to, solved_plus, stub_plus)

LIMITS = ["--timeout-cell", "10", "--timeout-notebook", "40", "--memory-mb", "1024"]
FORMULA_NAMES = ["=HYPERLINK(\"evil.example\";\"click\")", "@SUM(A1)", "+1+1", "-2+3"]


@pytest.fixture(scope="module")
def require_sandbox():
    why = sandbox.unavailable()
    if why:
        if os.environ.get("ASYNCLAB_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"sandbox tests are required (ASYNCLAB_REQUIRE_SANDBOX=1) but {why}",
                        pytrace=False)
        pytest.skip(f"SANDBOX TESTS SKIPPED: {why}")


def in_sandbox(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    argv = sandbox.bwrap_argv(sandbox.SandboxSpec(run_dir))
    return subprocess.run([*argv, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def outside(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


class Listener:
    """A TCP server on the host's 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


# -- the sandbox itself, beside the same code outside it -----------------------------------------


def test_the_host_files_are_not_there(require_sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the other learners' work")
    code = f"import os; print(os.path.exists({str(secret)!r}), os.path.exists({str(ROOT / 'solutions')!r}))"
    assert outside(code).stdout.split() == ["True", "True"]
    inside = in_sandbox(code, tmp_path)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["False", "False"]


def test_the_course_package_and_python_are_there_read_only(require_sandbox, tmp_path):
    import asynclab

    package = Path(asynclab.__file__).parent
    code = (f"import asynclab, matplotlib, nbformat, os; "
            f"print(os.access({str(package)!r}, os.W_OK))\n"
            f"try:\n    open({str(package / 'x.py')!r}, 'w')\nexcept OSError as e:\n"
            f"    print(type(e).__name__)")
    inside = in_sandbox(code, tmp_path)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["False", "OSError"]


def test_the_host_loopback_is_unreachable(require_sandbox, tmp_path):
    listener = Listener()
    try:
        code = connect_to(listener.port)
        assert outside(code).returncode == 0
        deadline = time.monotonic() + 10
        while listener.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert listener.connections == 2  # by address and by name: the attack works outside
        inside = in_sandbox(code + "\nprint('tried')", tmp_path)
        assert inside.stdout.strip() == "tried", inside.stderr
        time.sleep(0.3)
        assert listener.connections == 2  # none arrived from the sandbox
    finally:
        listener.close()


def test_a_loopback_server_inside_works(require_sandbox, tmp_path):
    code = ("import socket; s = socket.create_server(('127.0.0.1', 0)); "
            "c = socket.create_connection(s.getsockname()); a, _ = s.accept(); "
            "c.sendall(b'ok'); print(a.recv(2).decode())")
    inside = in_sandbox(code, tmp_path)
    assert inside.stdout.strip() == "ok", inside.stderr


def test_only_its_own_processes_are_visible(require_sandbox, tmp_path):
    code = "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    assert len(json.loads(outside(code).stdout)) > 5
    inside = in_sandbox(code, tmp_path)
    assert json.loads(inside.stdout) == [1, 2], inside.stderr  # bwrap's init and this process


def test_nothing_of_the_graders_environment_crosses(require_sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "s3cret")
    code = "import os; print(os.environ.get('INSTRUCTOR_TOKEN'))"
    assert outside(code).stdout.strip() == "s3cret"
    assert in_sandbox(code, tmp_path).stdout.strip() == "None"


def test_no_sandbox_where_bwrap_is_missing_says_how_to_get_it(tmp_path):
    (tmp_path / "class" / "ada").mkdir(parents=True)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no bwrap on it
    done = subprocess.run([sys.executable, "-m", "asynclab.cli", "grade", str(tmp_path / "class"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "cannot grade in a sandbox: bubblewrap (bwrap) is not installed" in done.stderr
    assert "apt-get install bubblewrap" in done.stderr and "--no-sandbox" in done.stderr
    assert not (tmp_path / "out").exists()


# -- a whole class of hostile learners -------------------------------------------------------------


def grade(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``asynclab grade`` as an instructor runs it: its own process, the class on its command line."""
    return subprocess.run([sys.executable, "-m", "asynclab.cli", "grade", str(submissions),
                           "--out", str(out), "--jobs", "3", "--quiet", *LIMITS, *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def survivors() -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with_token = [a for a in proc.info["cmdline"] or [] if TOKEN in a]
        if with_token:
            found.append(f"{proc.pid}: {with_token}")
    return found


def kill_survivors() -> None:
    for proc in psutil.process_iter(["cmdline"]):
        if any(TOKEN in a for a in proc.info["cmdline"] or []):
            proc.kill()


def read_gradebook(out: Path) -> tuple[str, dict[str, dict], dict]:
    text = (out / "gradebook.csv").read_text(encoding="utf-8")
    with (out / "gradebook.csv").open(encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return text, rows, json.loads((out / "gradebook.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hostile_class(require_sandbox, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    submissions, out = base / "submissions", base / "out"
    listener = Listener()
    learners = {
        "good": solved(),
        "thief_of_solutions": stub_plus(STEAL_SOLUTIONS),
        "thief_of_peers": stub_plus(STEAL_PEER),
        "escaper": solved_plus(ESCAPE),
        "killer": solved_plus(KILL_EVERYTHING),
        "caller": solved_plus(connect_to(listener.port)),
        "fork_bomb": solved_plus(FORK_BOMB),
    }
    for name, nb in learners.items():
        write(nb, submissions / name / f"{STEM}.ipynb")
    for stem in HTTP_STEMS:  # RateLimiter and fetch_with_retries: the HTTP lessons' exercises
        write(solved(stem), submissions / "good" / f"{stem}.ipynb")
    for name in FORMULA_NAMES:
        write(solved(), submissions / name / f"{STEM}.ipynb")
    try:
        done = grade(submissions, out)
        returned = time.monotonic()
        left_at_return = survivors()
        text, rows, document = read_gradebook(out)
        time.sleep(max(0.0, returned + 6 - time.monotonic()))  # the escapers strike after 4 s
        yield {"done": done, "rows": rows, "document": document, "text_at_return": text,
               "text_later": (out / "gradebook.csv").read_text(encoding="utf-8"),
               "left_at_return": left_at_return, "connections": listener.connections,
               "out": out}
    finally:
        listener.close()
        kill_survivors()


def points(rows, student: str) -> str:
    return rows[student]["fetch_all_urls"]


def test_the_class_is_graded_and_the_sandbox_recorded(hostile_class):
    assert hostile_class["done"].returncode == 0, hostile_class["done"].stderr
    assert hostile_class["document"]["sandbox"] is True


def test_stolen_answers_earn_nothing(hostile_class):
    rows = hostile_class["rows"]
    assert points(rows, "good") == "1"
    assert points(rows, "thief_of_solutions") == "0"
    assert points(rows, "thief_of_peers") == "0"


def test_nothing_a_learner_starts_outlives_the_grader(hostile_class):
    assert hostile_class["left_at_return"] == []


def test_the_gradebook_is_not_rewritten_after_the_grader_exits(hostile_class):
    assert hostile_class["text_later"] == hostile_class["text_at_return"]
    assert "mallory" not in hostile_class["text_later"]


def test_killing_every_visible_process_changes_nothing_for_the_others(hostile_class):
    rows = hostile_class["rows"]
    for student in ["good", "caller", "escaper", *(f"'{name}" for name in FORMULA_NAMES)]:
        assert points(rows, student) == "1", student
    assert points(rows, "killer") == "1"  # it could only signal its own sandbox


def test_the_hosts_loopback_never_hears_from_a_learner(hostile_class):
    assert points(hostile_class["rows"], "caller") == "1"  # the attack ran, after a correct answer
    assert hostile_class["connections"] == 0


def test_a_fork_bomb_marks_only_its_own_notebook(hostile_class):
    rows = hostile_class["rows"]
    assert points(rows, "fork_bomb") == "0"
    notebook = next(entry for entry in hostile_class["document"]["learners"]
                    if entry["student"] == "fork_bomb")["notebooks"][STEM]
    words = " ".join(notebook["exercises"]["fetch_all_urls"]["messages"])
    assert "was stopped" in words or "raised" in words, words


def test_the_http_lessons_exercises_work_inside(hostile_class):
    rows = hostile_class["rows"]
    assert rows["good"]["RateLimiter"] == "1" and rows["good"]["fetch_with_retries"] == "1"


def test_a_folder_name_cannot_put_a_formula_in_the_gradebook(hostile_class):
    rows = hostile_class["rows"]
    for name in FORMULA_NAMES:
        assert f"'{name}" in rows, sorted(rows)  # shown as text by spreadsheets
    for line in hostile_class["text_later"].splitlines():
        assert not line.startswith(("=", "+", "-", "@")), line
    document = hostile_class["document"]
    assert {e["student"] for e in document["learners"]} >= set(FORMULA_NAMES)  # JSON: as named


# -- the same attacks without the sandbox: they work, so the tests above can fail ------------------


def test_without_the_sandbox_the_attacks_succeed_and_the_run_says_so(tmp_path):
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write(solved(), submissions / "good" / f"{STEM}.ipynb")
    write(stub_plus(STEAL_SOLUTIONS), submissions / "thief_of_solutions" / f"{STEM}.ipynb")
    write(stub_plus(STEAL_PEER), submissions / "thief_of_peers" / f"{STEM}.ipynb")
    write(solved_plus(ESCAPE), submissions / "escaper" / f"{STEM}.ipynb")
    try:
        done = grade(submissions, out, "--no-sandbox")
        assert done.returncode == 0, done.stderr
        assert "WARNING: --no-sandbox" in done.stderr
        _, rows, document = read_gradebook(out)
        assert document["sandbox"] is False
        assert points(rows, "thief_of_solutions") == "1"
        assert points(rows, "thief_of_peers") == "1"
        assert survivors()  # the escapers are still running
        deadline = time.monotonic() + 20
        while "mallory" not in (out / "gradebook.csv").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mallory" in (out / "gradebook.csv").read_text()
    finally:
        kill_survivors()


# -- warm kernels (asynclab.grading.zygote): forked from one warm process, each still fresh -------

@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox env", "grader env"])
def test_the_zygote_forks_from_a_single_thread(sandboxed):
    """A process with a second thread must not fork (a lock that thread holds stays locked in
    the child for ever): the zygote's imports, its kernels' debugger among them, start no
    thread, and nor do the check modules it imports while it waits."""
    from asynclab.grading import zygote as zygotes

    server = zygotes.zygote(sandboxed)
    try:
        with server._lock:
            proc = psutil.Process(server._started().pid)
        threads, last_cpu = [], -1.0
        for _ in range(100):  # until it is idle (its later imports done), at most 10 s
            threads.append(proc.num_threads())
            cpu = sum(proc.cpu_times()[:2])
            if cpu == last_cpu:
                break
            last_cpu = cpu
            time.sleep(0.1)
        assert len(threads) < 100, "the zygote never became idle"
        assert set(threads) == {1}, threads
    finally:
        zygotes.close()


def test_a_sandboxed_kernel_starts_cold_when_the_zygote_cannot_start(require_sandbox, tmp_path,
                                                                     monkeypatch):
    """The sandbox made for the warm kernel is not left waiting; the cold kernel passes."""
    import asyncio

    from asynclab.grading import zygote
    from asynclab.grading.judge import Limits, judge_file
    from grader_cases import grading_processes
    from test_judge import broken_zygote

    monkeypatch.setitem(zygote._ZYGOTES, (os.getpid(), True), broken_zygote(tmp_path, True))
    limits = Limits(sandbox=True, warm_kernels=True, timeout_cell=30)
    verdict = asyncio.run(judge_file(ROOT / "solutions" / f"{STEM}.ipynb", ROOT, limits))
    assert (verdict.status, verdict.passed) == ("graded", True), verdict.to_dict(False)
    assert grading_processes() == []
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "bwrap"]


POLLUTE = '''
import asyncio, builtins, threading, time
import asynclab.checking
builtins.LEAKED = "a global for everyone"
asynclab.checking.POLLUTED = True
_real_sleep = asyncio.sleep
async def _patched_sleep(delay, result=None):
    return await _real_sleep(delay * 10, result)
asyncio.sleep = _patched_sleep
threading.Thread(target=lambda: time.sleep(3600), name="left-running").start()
'''
PROBE = '''
import asyncio, builtins, threading
import asynclab.checking
_leaks = [what for what, leaked in [
    ("a global", hasattr(builtins, "LEAKED")),
    ("a patched module", hasattr(asynclab.checking, "POLLUTED")),
    ("a patched asyncio.sleep", asyncio.sleep.__name__ != "sleep"),
    ("a thread", any(t.name == "left-running" for t in threading.enumerate())),
] if leaked]
assert not _leaks, f"left by an earlier learner: {_leaks}"
'''


def test_a_warm_kernel_sees_nothing_an_earlier_learner_left(require_sandbox, tmp_path):
    """One at a time (--jobs 1, in name order): the polluter's kernel is forked from the same
    warm process just before the good learner's. The probe has teeth: after the pollution in
    one notebook it fails."""
    submissions = tmp_path / "submissions"
    write(solved_plus(POLLUTE), submissions / "a_polluter" / f"{STEM}.ipynb")
    write(solved_plus(PROBE), submissions / "b_after" / f"{STEM}.ipynb")
    write(solved_plus(POLLUTE + PROBE), submissions / "c_both" / f"{STEM}.ipynb")
    done = grade(submissions, tmp_path / "out", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    _, rows, book = read_gradebook(tmp_path / "out")
    assert book["warm_kernels"] is True
    assert points(rows, "b_after") == "1", rows["b_after"]
    assert points(rows, "c_both") == "0"


def test_warm_and_cold_kernels_give_byte_identical_gradebooks(require_sandbox, tmp_path):
    submissions = tmp_path / "submissions"
    write(solved(), submissions / "good" / f"{STEM}.ipynb")
    write(stub_plus("async def fetch_all_urls(urls, fetch, max_concurrent=10, timeout_s=5.0):\n"
                    "    return {url: await fetch(url) for url in urls}\n"),
          submissions / "sequential" / f"{STEM}.ipynb")
    write(solved_plus("import os\nos._exit(3)\n"), submissions / "crasher" / f"{STEM}.ipynb")
    warm = grade(submissions, tmp_path / "warm")
    cold = grade(submissions, tmp_path / "cold", "--cold-kernels")
    unsandboxed = grade(submissions, tmp_path / "unsandboxed", "--no-sandbox")  # warm, no sandbox
    assert warm.returncode == cold.returncode == unsandboxed.returncode == 0, \
        (warm.stderr, cold.stderr, unsandboxed.stderr)
    warm_csv, rows, warm_book = read_gradebook(tmp_path / "warm")
    cold_csv, _, cold_book = read_gradebook(tmp_path / "cold")
    unsandboxed_csv, _, unsandboxed_book = read_gradebook(tmp_path / "unsandboxed")
    assert (warm_book["warm_kernels"], cold_book["warm_kernels"]) == (True, False)
    assert (unsandboxed_book["sandbox"], unsandboxed_book["warm_kernels"]) == (False, True)
    assert [points(rows, s) for s in ("good", "sequential", "crasher")] == ["1", "0", "0"]
    assert warm_csv == cold_csv == unsandboxed_csv


# -- an await that can never end is stopped early (asynclab.grading.idle) --------------------------

PATIENT = '''
import asyncio, signal, time
await asyncio.sleep(2.5)                              # a timer, due within the cell's time
alarm_rang = asyncio.Event()
asyncio.get_running_loop().add_signal_handler(signal.SIGALRM, alarm_rang.set)
signal.alarm(3)
await alarm_rang.wait()                               # an alarm, outside the loop's timers
child = await asyncio.create_subprocess_exec("sleep", "2.5")
await child.wait()                                    # a process that will exit
await asyncio.to_thread(time.sleep, 2.5)              # a thread that will call back
'''


def test_an_await_nothing_can_end_is_stopped_early_and_a_patient_one_is_not(require_sandbox,
                                                                             tmp_path):
    """Each of the patient learner's waits lasts longer than the 2 s that make a kernel 'idle
    for ever', and each has something that will wake it: none may be taken for a hang. (The
    thread comes last: the executor's idle threads stay, and would cover the waits after it.)"""
    submissions = tmp_path / "submissions"
    write(CASES["endless_await"](), submissions / "stuck" / f"{STEM}.ipynb")
    write(solved_plus(PATIENT), submissions / "patient" / f"{STEM}.ipynb")
    done = grade(submissions, tmp_path / "out", "--timeout-cell", "60")
    assert done.returncode == 0, done.stderr
    _, rows, book = read_gradebook(tmp_path / "out")
    assert points(rows, "patient") == "1", rows["patient"]
    assert points(rows, "stuck") == "0"
    notebooks = {e["student"]: e["notebooks"][STEM] for e in book["learners"]}
    stuck = [c for c in notebooks["stuck"]["cells"] if c["role"] == "answer"][0]
    assert stuck["status"] == "hung" and stuck["seconds"] < 30, stuck  # not the 60 s limit
    assert "was waiting for something that can never happen" in notebooks["stuck"]["message"] \
        or any("can never happen" in m for ex in notebooks["stuck"]["exercises"].values()
               for m in ex["messages"])
    assert all(c["status"] == "ok" for c in notebooks["patient"]["cells"])
