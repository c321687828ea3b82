"""How much faster is ``asynclab grade`` than running the same notebooks one after another?

Builds K synthetic learners (each hands in exercises/05_semaphore.ipynb with the
reference answer pasted in, every third one a sequential, wrong answer), then, in
the same run:

1. grades them with the grader (``--jobs`` = the number of cores, public and
   hidden checks, timelines drawn, everything the real command does), with each
   kernel in its bubblewrap sandbox (the default) and again without (``--no-sandbox``);
2. executes the same notebooks one after another with plain nbclient
   (``NotebookClient(nb).execute()``: one kernel each, started, run, shut down).

and prints the times, what the sandbox costs, and the ratio grader / sequential. A
ratio well under 1 means kernel start-up and execution of different notebooks overlap.

    .venv/bin/python scripts/bench_grader.py [--learners 6] [--jobs N] [--repeat 1]

With ``--cluster``, it compares instead the grader on this machine with the same grader
judging on a Dask cluster (``--scheduler``): a local scheduler and ``--jobs`` worker
processes of two threads each, started here (each worker runs one notebook while the
next kernel starts, as the local grader's ``--jobs`` does), so both use the same cores
the same way. It prints both times and their ratio (cluster / here): what handing the
notebooks to workers costs. It stops with an error if the two ever grade differently.

    .venv/bin/python scripts/bench_grader.py --cluster [--learners 6] [--jobs N] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asynclab.grading.command import GradeSettings, grade  # noqa: E402
from asynclab.grading.report import write_outputs  # noqa: E402
from asynclab.grading import sandbox  # noqa: E402
from asynclab.grading.judge import Limits  # noqa: E402

STEM = "05_semaphore"
WRONG = '''
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


def answer_cells(nb) -> list:
    return [c for c in nb.cells if "answer" in c.metadata.get("tags", [])]


def learner_notebook(wrong: bool):
    nb = nbformat.read(ROOT / "exercises" / f"{STEM}.ipynb", as_version=4)
    reference = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    for mine, ref in zip(answer_cells(nb), answer_cells(reference)):
        mine.source = WRONG if wrong else ref.source
    return nb


def build_class(folder: Path, learners: int) -> list[Path]:
    paths = []
    for i in range(learners):
        path = folder / f"learner{i + 1:02d}" / f"{STEM}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(learner_notebook(wrong=i % 3 == 2), path)
        paths.append(path)
    return paths


def run_grader(submissions: Path, out: Path, jobs: int, sandbox: bool) -> tuple[float, dict]:
    settings = GradeSettings(submissions=submissions, out=out, root=ROOT, max_in_flight=jobs,
                             force=True, show_progress=False,
                             limits=Limits(variants=("public", "hidden"), want_png=True,
                                           sandbox=sandbox))
    started = time.perf_counter()
    run = asyncio.run(grade(settings))
    write_outputs(run, settings)
    seconds = time.perf_counter() - started
    points = {student: sum(ex.points for ex in v.exercises.values())
              for (student, _), v in run.results.items()}
    return seconds, points


def run_sequential(paths: list[Path], workdir: Path) -> float:
    started = time.perf_counter()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    return time.perf_counter() - started


def grade_timed(submissions: Path, out: Path, jobs: int,
                scheduler: str | None) -> tuple[float, dict, dict]:
    """Seconds, points and messages per learner of one grading run, here or on a cluster."""
    settings = GradeSettings(submissions=submissions, out=out, root=ROOT, max_in_flight=jobs,
                             force=True, show_progress=False, scheduler=scheduler,
                             limits=Limits(variants=("public", "hidden"), want_png=True))
    started = time.perf_counter()
    run = asyncio.run(grade(settings))
    write_outputs(run, settings)
    seconds = time.perf_counter() - started
    points = {student: sum(ex.points for ex in v.exercises.values())
              for (student, _), v in run.results.items()}
    why = {student: [m for ex in v.exercises.values() for m in ex.messages] or v.message
           for (student, _), v in run.results.items()}
    return seconds, points, why


def bench_cluster(args: argparse.Namespace) -> None:
    """The grader here, and through a local Dask scheduler with ``--jobs`` two-thread workers."""
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench-grader-") as tmp, \
            LocalCluster(n_workers=args.jobs, threads_per_worker=args.threads, processes=True,
                         host="127.0.0.1", dashboard_address="127.0.0.1:0",
                         silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        tmp_path = Path(tmp)
        submissions = tmp_path / "submissions"
        build_class(submissions, args.learners)
        # Warm-up, for both sides: the judge's imports on every worker, disk caches.
        client.run(__import__, "asynclab.grading.cluster")
        grade_timed(submissions, tmp_path / "warm", args.jobs, cluster.scheduler_address)
        here, there = [], []
        for _ in range(args.repeat):  # interleaved, so a change of load hits both alike
            seconds, points, why = grade_timed(submissions, tmp_path / "out", args.jobs, None)
            here.append(seconds)
            seconds, cluster_points, cluster_why = grade_timed(
                submissions, tmp_path / "out-cluster", args.jobs, cluster.scheduler_address)
            there.append(seconds)
            for student in sorted(points):
                if cluster_points.get(student) != points[student]:
                    print(f"DIFFERENT GRADES for {student}: here {points[student]} "
                          f"{why[student]}, on the cluster {cluster_points.get(student)} "
                          f"{cluster_why.get(student)}", file=sys.stderr)
            if cluster_points != points:
                sys.exit(1)
    g, c = statistics.median(here), statistics.median(there)
    passed = sum(1 for p in points.values() if p)
    print(f"{args.learners} learners x {STEM}.ipynb, {os.cpu_count()} cores ({passed} of "
          f"{args.learners} passed, the same grades both ways)")
    print(f"  grader here, --jobs {args.jobs}:                          {g:6.2f} s")
    print(f"  grader on a local Dask cluster, {args.jobs} workers x {args.threads} threads: "
          f"{c:6.2f} s")
    print(f"  ratio (cluster / here):                          {c / g:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians are shown")
    parser.add_argument("--cluster", action="store_true",
                        help="compare with grading on a local Dask cluster (--scheduler)")
    parser.add_argument("--threads", type=int, default=2,
                        help="with --cluster: threads of each worker (default 2: one runs a "
                             "notebook, one starts the next kernel)")
    args = parser.parse_args()
    if args.cluster:
        bench_cluster(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-grader-") as tmp:
        tmp_path = Path(tmp)
        paths = build_class(tmp_path / "submissions", args.learners)
        run_sequential(paths[:1], tmp_path)  # warm-up: imports and disk caches for both sides
        sandboxed, plain, sequential = [], [], []
        with_sandbox = sandbox.unavailable() is None
        for _ in range(args.repeat):  # interleaved, so a change of load hits all three alike
            if with_sandbox:
                seconds, points = run_grader(tmp_path / "submissions", tmp_path / "out-sandbox",
                                             args.jobs, sandbox=True)
                sandboxed.append(seconds)
            seconds, plain_points = run_grader(tmp_path / "submissions", tmp_path / "out",
                                               args.jobs, sandbox=False)
            plain.append(seconds)
            sequential.append(run_sequential(paths, tmp_path))
    p, s = statistics.median(plain), statistics.median(sequential)
    passed = sum(1 for v in plain_points.values() if v)
    print(f"{args.learners} learners x {STEM}.ipynb, {os.cpu_count()} cores, grader --jobs "
          f"{args.jobs} ({passed} of {args.learners} passed), median of {args.repeat}")
    if with_sandbox:
        g = statistics.median(sandboxed)
        assert points == plain_points, "the sandbox changed a grade"
        print(f"  grader, each kernel in its sandbox:         {g:6.2f} s")
    else:
        g = p
        print(f"  grader in a sandbox: not measured ({sandbox.unavailable()})")
    print(f"  grader --no-sandbox:                        {p:6.2f} s")
    print(f"  plain nbclient, one after another:          {s:6.2f} s")
    if with_sandbox:
        print(f"  what the sandbox costs:                     {100 * (g / p - 1):+5.1f} %")
    print(f"  ratio (grader / sequential):                {g / s:6.2f}")


if __name__ == "__main__":
    main()
