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


HOSTILE = (  # prepended to an answer: what a hostile or careless learner's cell does first
    "while True:\n    pass\n",
    "import asyncio\nawait asyncio.Event().wait()\n",
    "import os\nos._exit(3)\n",
)


def build_class(folder: Path, learners: int, hostile: bool = False) -> list[Path]:
    """K learners; every third one wrong, or (``hostile``) every third one hostile in turn."""
    paths = []
    for i in range(learners):
        path = folder / f"learner{i + 1:02d}" / f"{STEM}.ipynb"
        path.parent.mkdir(parents=True)
        odd_one = i % 3 == 2
        nb = learner_notebook(wrong=odd_one and not hostile)
        if odd_one and hostile:
            first = answer_cells(nb)[0]
            first.source = HOSTILE[(i // 3) % len(HOSTILE)] + first.source
        nbformat.write(nb, path)
        paths.append(path)
    return paths


CELL_S = 60.0  # seconds one cell may run, for the grader and plain nbclient alike (--timeout-cell)


def run_grader(submissions: Path, out: Path, jobs: int, sandbox: bool,
               warm: bool = True) -> tuple[float, dict]:
    settings = GradeSettings(submissions=submissions, out=out, root=ROOT, max_in_flight=jobs,
                             force=True, show_progress=False,
                             limits=Limits(variants=("public", "hidden"), want_png=True,
                                           sandbox=sandbox, warm_kernels=warm,
                                           timeout_cell=CELL_S))
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
        try:
            NotebookClient(nb, timeout=CELL_S, allow_errors=True, kernel_name="python3",
                           resources={"metadata": {"path": str(workdir)}}).execute()
        except Exception:  # noqa: BLE001 - a hung or dead kernel (the hostile class): next one
            pass
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
    global CELL_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians are shown")
    parser.add_argument("--hostile", action="store_true",
                        help="a hostile class: every third learner's answer loops for ever "
                             "(while True), awaits for ever, or ends its kernel (os._exit)")
    parser.add_argument("--cluster", action="store_true",
                        help="compare with grading on a local Dask cluster (--scheduler)")
    parser.add_argument("--threads", type=int, default=2,
                        help="with --cluster: threads of each worker (default 2: one runs a "
                             "notebook, one starts the next kernel)")
    parser.add_argument("--timeout-cell", type=float, default=CELL_S,
                        help="seconds one cell may run (grader and nbclient); try 5 with --hostile")
    args = parser.parse_args()
    CELL_S = args.timeout_cell
    if args.cluster:
        bench_cluster(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-grader-") as tmp:
        tmp_path = Path(tmp)
        paths = build_class(tmp_path / "submissions", args.learners, hostile=args.hostile)
        run_sequential(paths[:1], tmp_path)  # warm-up: imports and disk caches for both sides
        warm, cold, plain, sequential = [], [], [], []
        with_sandbox = sandbox.unavailable() is None
        gradebooks = {}
        for _ in range(args.repeat):  # interleaved, so a change of load hits all of them alike
            if with_sandbox:
                for kind, times in (("warm", warm), ("cold", cold)):
                    out = tmp_path / f"out-{kind}"
                    seconds, points = run_grader(tmp_path / "submissions", out, args.jobs,
                                                 sandbox=True, warm=kind == "warm")
                    times.append(seconds)
                    gradebooks[kind] = (out / "gradebook.csv").read_bytes()
            seconds, plain_points = run_grader(tmp_path / "submissions", tmp_path / "out",
                                               args.jobs, sandbox=False)
            plain.append(seconds)
            sequential.append(run_sequential(paths, tmp_path))
    p, s = statistics.median(plain), statistics.median(sequential)
    passed = sum(1 for v in plain_points.values() if v)
    kind = "hostile" if args.hostile else "ordinary"
    print(f"{args.learners} learners x {STEM}.ipynb ({kind} class), {os.cpu_count()} cores, "
          f"grader --jobs {args.jobs} ({passed} of {args.learners} passed), median of {args.repeat}")
    if with_sandbox:
        g, c = statistics.median(warm), statistics.median(cold)
        assert points == plain_points, "the sandbox changed a grade"
        assert gradebooks["warm"] == gradebooks["cold"], "warm kernels changed the gradebook"
        print(f"  grader, sandboxed, warm kernels (default): {g:6.2f} s")
        print(f"  grader, sandboxed, cold kernels:           {c:6.2f} s")
        print("  gradebook.csv, warm and cold:              byte-identical")
    else:
        g = p
        print(f"  grader in a sandbox: not measured ({sandbox.unavailable()})")
    print(f"  grader --no-sandbox (warm kernels):        {p:6.2f} s")
    print(f"  plain nbclient, one after another:         {s:6.2f} s")
    if with_sandbox:
        print(f"  what warm kernels save:                    {100 * (1 - g / c):5.1f} %")
    print(f"  ratio (grader / sequential):               {g / s:6.2f}")


if __name__ == "__main__":
    main()
