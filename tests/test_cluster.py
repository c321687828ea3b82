"""asynclab grade --scheduler: a class judged by the workers of a real Dask cluster.

The module starts a real ``dask scheduler`` and two ``dask worker`` processes (the venv's
CLI, on 127.0.0.1, random ports, two threads each: one runs a notebook while the other
starts the next kernel; no nanny: a killed worker stays dead, as a machine that fails) and grades a small class through them. The same class is graded
once locally, and every cluster run must give the same gradebook.csv: with both workers,
with one worker killed while it judges, and not a grade at all for a notebook whose
workers all die. The scheduler allows one worker death per task
(``distributed.scheduler.allowed-failures`` = 1), so that last case is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed
import nbformat
import psutil
import pytest

from asynclab.cli import main
from asynclab.grading import cluster, sandbox
from asynclab.grading.command import CannotGrade, GradeSettings
from asynclab.grading.judge import load_course_notebook
from grader_cases import CASES, ROOT, STEM, grading_processes, solved, with_answer, write

# Sandboxed where a sandbox can be made (tests/test_sandbox.py says loudly when not).
SANDBOX = [] if sandbox.unavailable() is None else ["--no-sandbox"]
LIMITS = ["--timeout-cell", "10", "--timeout-notebook", "40", "--memory-mb", "768", *SANDBOX]
DASK = str(Path(sys.executable).with_name("dask"))


def build_class(folder: Path) -> None:
    """Two notebooks that run (one right, one wrong), one that is not a notebook, no work."""
    write(solved(), folder / "ann" / f"{STEM}.ipynb")
    write(CASES["wrong"](), folder / "bob" / f"{STEM}.ipynb")
    (folder / "cy").mkdir()
    (folder / "cy" / f"{STEM}.ipynb").write_bytes(b'{"cells": [')
    (folder / "dee").mkdir()


def read_rows(out: Path) -> dict[str, dict]:
    with (out / "gradebook.csv").open(encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def kernels_of(pid: int) -> list[psutil.Process]:
    """The grading kernels running under a process (a worker judging a notebook)."""
    return grading_processes(pid, kernels_only=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it: a machine that fails."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)


class Cluster:
    """A scheduler and named workers, each a real process of the venv's ``dask`` CLI."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: dict[str, subprocess.Popen] = {}
        scheduler_file = folder / "scheduler.json"
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        self.scheduler = self._spawn("scheduler", [
            DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
            "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)], env)
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert self.scheduler.poll() is None, self.log("scheduler")
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give it a moment
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.client = distributed.Client(self.address, timeout=30, set_as_default=False)

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env or os.environ.copy())

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(name, [
            DASK, "worker", self.address, "--name", name, "--nthreads", "2", "--no-nanny",
            "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
            "--local-directory", str(self.folder / name)])

    def running(self) -> set[str]:
        info = self.client.scheduler_info()
        return {w["name"] for w in info["workers"].values() if w.get("status") == "running"}

    def ensure_workers(self, names: tuple[str, ...] = ("w1", "w2")) -> None:
        for name in names:
            process = self.workers.get(name)
            if process is None or process.poll() is not None:
                self.start_worker(name)
        deadline = time.monotonic() + 90
        while not set(names) <= self.running():
            for name in names:
                assert self.workers[name].poll() is None, self.log(name)
            assert time.monotonic() < deadline, f"workers did not join: {self.running()}"
            time.sleep(0.2)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        for process in [*self.workers.values(), self.scheduler]:
            kill_tree(process.pid)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        running.ensure_workers()
        yield running
    finally:
        running.close()


@pytest.fixture
def cluster_up(dask_cluster):
    """Both workers running (a test before may have killed one)."""
    dask_cluster.ensure_workers()
    return dask_cluster


@pytest.fixture(scope="module")
def the_class(tmp_path_factory):
    """The class, and its gradebook from a local run (the reference for every cluster run)."""
    base = tmp_path_factory.mktemp("class")
    build_class(base / "submissions")
    assert main(["grade", str(base / "submissions"), "--out", str(base / "local"), "--jobs", "2",
                 "--quiet", *LIMITS]) == 0
    return base / "submissions", read_rows(base / "local")


def grade_command(submissions: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "asynclab.cli", "grade", str(submissions), "--out", str(out),
            "--scheduler", address, *LIMITS, *extra]


def test_the_cluster_gives_the_same_gradebook_as_a_local_run(cluster_up, the_class, tmp_path,
                                                             capsys):
    submissions, local = the_class
    assert local["ann"]["fetch_all_urls"] == "1" and local["bob"]["fetch_all_urls"] == "0"
    capsys.readouterr()
    status = main(["grade", str(submissions), "--out", str(tmp_path / "out"),
                   "--scheduler", cluster_up.address, *LIMITS])
    err = capsys.readouterr().err
    assert status == 0, err
    assert read_rows(tmp_path / "out") == local
    assert "on the Dask cluster at" in err and "2 workers" in err
    assert "of 2 workers busy" in err  # the progress shows the workers in use
    # The feedback names the learner's file, not the worker's temporary copy.
    document = json.loads((tmp_path / "out" / "gradebook.json").read_text())
    ann = next(entry for entry in document["learners"] if entry["student"] == "ann")
    assert ann["notebooks"][STEM]["source"] == str(submissions / "ann" / f"{STEM}.ipynb")
    # A second run resumes from OUT/results, as a local run does: nothing is sent.
    assert main(["grade", str(submissions), "--out", str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:9", *LIMITS]) == 0
    assert "3 already graded, 0 to run" in capsys.readouterr().err
    assert read_rows(tmp_path / "out") == local


def judging(workers: list[subprocess.Popen]) -> list[subprocess.Popen]:
    """The workers judging a notebook right now: their kernel runs."""
    return [w for w in workers if w.poll() is None and kernels_of(w.pid)]


def test_a_worker_killed_while_it_judges_costs_nothing(cluster_up, the_class, tmp_path):
    submissions, local = the_class
    grader = subprocess.Popen(grade_command(submissions, tmp_path / "out", cluster_up.address,
                                            "--quiet"),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not judging(list(cluster_up.workers.values())):
            assert grader.poll() is None, grader.communicate()[1]
            assert time.monotonic() < deadline, "no worker judged a notebook"
            time.sleep(0.05)
        victim = judging(list(cluster_up.workers.values()))[0]
        kill_tree(victim.pid)
        _, err = grader.communicate(timeout=240)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert victim.poll() is not None
    assert grader.returncode == 0, err
    assert read_rows(tmp_path / "out") == local  # complete, and the same grades


def test_a_notebook_that_kills_every_worker_is_marked_not_graded(cluster_up, tmp_path):
    """Both workers die while judging it (allowed-failures = 1): KilledWorker, an error
    verdict, the run ends normally; the next run grades it again."""
    submissions = tmp_path / "submissions"
    # Judging it takes seconds (the answer waits 5 s), so that the watcher below, however
    # loaded the machine, sees each worker judging it: a fast judge could end unseen.
    write(with_answer("import asyncio\nawait asyncio.sleep(5)\n"), submissions / "ann" / f"{STEM}.ipynb")
    grader = subprocess.Popen(grade_command(submissions, tmp_path / "out", cluster_up.address,
                                            "--quiet"),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    killed: list[str] = []

    def kill_whoever_judges() -> None:
        while grader.poll() is None:
            for name, worker in cluster_up.workers.items():
                if worker.poll() is None and kernels_of(worker.pid):
                    kill_tree(worker.pid)
                    killed.append(name)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_whoever_judges, daemon=True)
    killer.start()
    try:
        _, err = grader.communicate(timeout=240)
    finally:
        if grader.poll() is None:
            grader.kill()
        killer.join(timeout=10)
    assert grader.returncode == 0, err
    assert sorted(killed) == ["w1", "w2"]
    rows = read_rows(tmp_path / "out")
    assert rows["ann"]["fetch_all_urls"] == "not graded: error"
    verdict = json.loads((tmp_path / "out" / "gradebook.json").read_text())["learners"][0]
    message = verdict["notebooks"][STEM]["message"]
    assert "every worker that judged this notebook died while judging it (2 workers" in message
    saved = json.loads((tmp_path / "out" / "results" / "ann" / f"{STEM}.json").read_text())
    assert saved["status"] == "error"  # not taken as a grade: the next run judges it again


def test_sigterm_cancels_what_the_workers_still_judge(cluster_up, tmp_path):
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write(solved(), submissions / "ann" / f"{STEM}.ipynb")
    write(CASES["endless_sleep"](), submissions / "bob" / f"{STEM}.ipynb")
    grader = subprocess.Popen(grade_command(submissions, out, cluster_up.address, "--timeout-cell",
                                            "200", "--timeout-notebook", "400"),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    ann = out / "results" / "ann" / f"{STEM}.json"
    workers = [w.pid for w in cluster_up.workers.values()]
    try:
        deadline = time.monotonic() + 120
        while not (ann.exists() and any(kernels_of(pid) for pid in workers)):
            assert grader.poll() is None, grader.communicate()[1]
            assert time.monotonic() < deadline, "ann was not graded while bob's kernel ran"
            time.sleep(0.1)
        stuck = [k for pid in workers for k in kernels_of(pid)]  # bob's, waiting forever
        assert stuck
        grader.send_signal(signal.SIGTERM)
        _, err = grader.communicate(timeout=60)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert grader.returncode == 128 + signal.SIGTERM, err
    rows = read_rows(out)
    assert set(rows) == {"ann", "bob"}, ((out / "gradebook.csv").read_text(), err)
    assert rows["ann"]["fetch_all_urls"] == "1"
    assert rows["bob"]["fetch_all_urls"] == "not graded: interrupted"
    # The worker learns that nobody wants bob's verdict any more, and kills his kernel
    # (long before the 200 s the cell was allowed).
    _, alive = psutil.wait_procs(stuck, timeout=60)
    assert alive == []


def test_a_lost_scheduler_ends_the_run_and_keeps_what_is_done(dask_cluster, tmp_path):
    """The scheduler dies for good (the module's last use of the cluster): the grader does not
    wait for ever; what is done is kept, the rest is "not graded: error" for the next run."""
    dask_cluster.ensure_workers()
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    (submissions / "ann").mkdir(parents=True)
    (submissions / "ann" / f"{STEM}.ipynb").write_bytes(b'{"cells": [')  # judged at once
    write(CASES["endless_sleep"](), submissions / "bob" / f"{STEM}.ipynb")
    grader = subprocess.Popen(grade_command(submissions, out, dask_cluster.address, "--quiet",
                                            "--timeout-cell", "200", "--timeout-notebook", "400"),
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    workers = [w.pid for w in dask_cluster.workers.values()]
    try:
        deadline = time.monotonic() + 120
        while not ((out / "results" / "ann" / f"{STEM}.json").exists()
                   and any(kernels_of(pid) for pid in workers)):  # bob's kernel runs
            assert grader.poll() is None, grader.communicate()[1]
            assert time.monotonic() < deadline, "the class did not start"
            time.sleep(0.1)
        kill_tree(dask_cluster.scheduler.pid)
        _, err = grader.communicate(timeout=120)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert grader.returncode == 0, err
    rows = read_rows(out)
    assert rows["ann"]["fetch_all_urls"] == "0"  # kept: not a notebook, whoever judges it
    assert rows["bob"]["fetch_all_urls"] == "not graded: error"
    bob = json.loads((out / "results" / "bob" / f"{STEM}.json").read_text())
    assert "the grader lost the Dask scheduler at" in bob["message"], bob["message"]


def test_an_unreachable_scheduler_is_one_line_at_once(tmp_path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "submissions" / "ann").mkdir(parents=True)
    (tmp_path / "submissions" / "ann" / f"{STEM}.ipynb").write_text("{}")
    started = time.monotonic()
    done = subprocess.run(grade_command(tmp_path / "submissions", tmp_path / "out",
                                        f"tcp://127.0.0.1:{port}"),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines()
             if "WARNING: --no-sandbox" not in line]  # where no sandbox can be made here
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"asynclab grade: cannot reach the Dask scheduler at "
                               f"tcp://127.0.0.1:{port}")
    assert seconds < 60, seconds  # the connection timeout is 5 s; the rest is start-up
    assert not (tmp_path / "out" / "gradebook.csv").exists()


def test_a_local_run_never_imports_dask(tmp_path):
    (tmp_path / "submissions" / "ann").mkdir(parents=True)
    (tmp_path / "submissions" / "ann" / f"{STEM}.ipynb").write_text("{}")  # graded, no kernel
    code = ("import sys; from asynclab.cli import main; "
            f"status = main(['grade', {str(tmp_path / 'submissions')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--quiet', *{SANDBOX!r}]); "
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed') or m == 'asynclab.grading.cluster'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split() == ["0", "[]"], done.stderr
    assert read_rows(tmp_path / "out")["ann"]["total"] == "0"


# -- the worker's own checks (no cluster needed) ------------------------------------------------


def worker_task(tmp_path: Path, **changes) -> dict:
    course = load_course_notebook(STEM, ROOT)
    path = write(solved(), tmp_path / f"{STEM}.ipynb")
    settings = GradeSettings(tmp_path, tmp_path / "out", ROOT, 1)
    task = {"student": "ann", "stem": STEM, "name": path.name, "data": path.read_bytes(),
            "course_digest": course.digest, "fingerprint": cluster.grading_fingerprint(),
            "version": "0.1.0", "settings": pickle.dumps(settings)}
    return {**task, **changes}


def test_a_worker_with_other_course_code_refuses_to_judge(tmp_path):
    answer = cluster.judge_on_worker(worker_task(tmp_path, fingerprint="0123456789abcdef"))
    assert "verdict" not in answer
    assert "runs another version of the course" in answer["problem"]
    assert "install the grader's course on every worker" in answer["problem"]


def test_a_worker_with_another_course_notebook_refuses_to_judge(tmp_path, monkeypatch):
    other = tmp_path / "other-course"
    nb = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    nb.cells[0].source += "\n\nA sentence the grader's copy does not have."
    write(nb, other / "solutions" / f"{STEM}.ipynb")
    monkeypatch.setenv(cluster.COURSE_ROOT_ENV, str(other))
    answer = cluster.judge_on_worker(worker_task(tmp_path))
    assert "verdict" not in answer
    assert f"has another {STEM}.ipynb or other checks than the grader" in answer["problem"]
    assert str(other) in answer["problem"]


def test_the_run_gate_is_shared_by_a_workers_threads():
    """Threads, each with its own event loop (as a worker's), never run more than the gate allows."""
    gate = cluster.RunGate(cluster.running_slots(4))
    inside, most, done, lock = 0, 0, 0, threading.Lock()
    pair = threading.Barrier(2, timeout=20)  # passes only when two are inside at once

    async def notebook() -> None:
        nonlocal inside, most, done
        async with gate:
            with lock:
                inside += 1
                most = max(most, inside)
            pair.wait()
            await asyncio.sleep(0.01)
            with lock:
                inside -= 1
                done += 1

    threads = [threading.Thread(target=asyncio.run, args=(notebook(),)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (most, done, inside) == (2, 6, 0)
    assert [cluster.running_slots(n) for n in (1, 2, 3, 4, 8)] == [1, 1, 2, 2, 4]


class FakeClient:
    """What ``ClusterJudge.check_workers`` asks of a Dask client: run a function on every worker."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers

    async def run(self, function, *args, on_error="raise"):
        return self.answers


def refusal(answers: dict) -> str:
    settings = GradeSettings(Path("."), Path("out"), ROOT, 1, scheduler="tcp://127.0.0.1:1")
    judge = cluster.ClusterJudge(settings, FakeClient(answers), progress=None)
    with pytest.raises(CannotGrade) as refused:
        asyncio.run(judge.check_workers())
    return str(refused.value)


def test_the_grader_refuses_workers_that_cannot_judge_for_it():
    mine = cluster.worker_identity()
    other = {**mine, "fingerprint": "0123456789abcdef"}
    assert asyncio.run(cluster.ClusterJudge(
        GradeSettings(Path("."), Path("out"), ROOT, 1), FakeClient({"tcp://a:1": mine}),
        progress=None).check_workers()) is None  # the same course: accepted
    words = refusal({"tcp://a:1": mine, "tcp://b:1": other})
    assert words.startswith("1 of the cluster's 2 workers cannot judge for this grader: "
                            "tcp://b:1 runs asynclab")
    assert "install the same course on every worker" in words
    words = refusal({"tcp://a:1": ModuleNotFoundError("No module named 'asynclab'")})
    assert "tcp://a:1 cannot run the course's code (ModuleNotFoundError" in words
    words = refusal({"tcp://a:1": {**mine, "sandbox": "bubblewrap (bwrap) is not installed"}})
    assert "tcp://a:1 cannot start sandboxed kernels (bubblewrap (bwrap) is not installed)" in words
    assert "--no-sandbox" in words
