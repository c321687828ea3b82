"""The ``asynclab`` command.

* ``asynclab exercises``: regenerate ``exercises/`` from ``solutions/`` (authors);
* ``asynclab check NOTEBOOK...``: run your exercise notebook in a fresh kernel and
  judge every exercise in it with the course's checks (learners);
* ``asynclab grade SUBMISSIONS --out OUT``: grade a class (instructors).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

import asynclab.grading  # noqa: F401 - first: it makes reading notebooks start fast

EXIT_PASSED, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def _course_root() -> Path:
    """The folder with solutions/ and exercises/: the current one, or the package's checkout."""
    here = Path.cwd()
    if (here / "solutions").is_dir():
        return here
    return Path(__file__).resolve().parent.parent


def cmd_exercises(args: argparse.Namespace) -> int:
    from asynclab.authoring import AuthoringError, write_exercises

    root = Path(args.root) if args.root else _course_root()
    try:
        written = write_exercises(root / "solutions", root / "exercises")
    except AuthoringError as exc:
        print(f"asynclab exercises: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    return 0


def _limits(args: argparse.Namespace, **overrides):
    from asynclab.grading.judge import Limits

    return Limits(timeout_cell=args.timeout_cell, timeout_notebook=args.timeout_notebook,
                  memory_mb=args.memory_mb, **overrides)


def _print_verdict(path: str, verdict) -> None:
    from asynclab.grading.judge import report_text

    print(f"== {path}")
    for name, ex in verdict.exercises.items():
        report = ex.reports.get("public")
        if report is not None:
            print(report_text(report))
        elif not ex.messages:
            print(f"{name}: not judged")
        for message in ex.messages:
            print(f"{name}: {message}" if report is None else f"  ! {message}")
    for note in verdict.notes:
        print(f"note: {note}")
    passed = sum(ex.passed for ex in verdict.exercises.values())
    print(f"{passed} of {len(verdict.exercises)} exercise(s) passed in {path}")


async def _check_all(paths: list[Path], root: Path, limits) -> list:
    """Judge the notebooks, a few at once; each result is a verdict or an UnusableInput."""
    from asynclab.grading.judge import UnusableInput, judge_file

    max_in_flight = asyncio.Semaphore(os.cpu_count() or 1)

    async def check_one(path: Path):
        async with max_in_flight:
            try:
                return await judge_file(path, root, limits)
            except UnusableInput as exc:
                return exc

    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(check_one(path)) for path in paths]
    return [task.result() for task in running]


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every exercise passed, 1 when one failed, 2 when a file cannot be judged."""
    from asynclab.grading import zygote

    if not args.cold_kernels:
        # The warm kernels' fork server starts first, so that its imports (ipykernel,
        # matplotlib, the course package) run while this process imports the judge and reads
        # the notebooks: for one notebook that overlap is what makes it faster than a cold
        # kernel. It does not import every notebook's checks: each kernel imports its own.
        zygote.zygote(sandboxed=False, later=False).warm_up()
    try:
        from asynclab.grading.judge import UnusableInput, course_root

        root = course_root(args.root)
        paths = [Path(p) for p in args.notebooks]
        limits = _limits(args, want_png=bool(args.html), warm_kernels=not args.cold_kernels)
        results = asyncio.run(_check_all(paths, root, limits))
    except KeyboardInterrupt:  # the kernels were killed on the way out
        print("asynclab check: interrupted", file=sys.stderr)
        return 130
    finally:
        zygote.close()
    status = EXIT_PASSED
    for path, result in zip(paths, results):
        if isinstance(result, UnusableInput):
            print(f"asynclab check: {result}", file=sys.stderr)
            status = EXIT_UNUSABLE
            continue
        _print_verdict(str(path), result)
        if not result.passed and status == EXIT_PASSED:
            status = EXIT_FAILED
    if args.html:
        from asynclab.grading.report import check_page

        page = Path(args.html)
        page.write_text(check_page([(str(path), str(r) if isinstance(r, UnusableInput) else r)
                                    for path, r in zip(paths, results)]), encoding="utf-8")
        print(f"the report and your timelines are in {page.resolve()} (open it in a browser)")
    return status


def cmd_grade(args: argparse.Namespace) -> int:
    from asynclab.grading.command import GradeSettings, main_grade
    from asynclab.grading.judge import course_root

    submissions = Path(args.submissions)
    if not submissions.is_dir():
        print(f"asynclab grade: {submissions}: not a folder (SUBMISSIONS holds one folder per "
              "learner)", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.jobs < 1:
        print("asynclab grade: --jobs must be at least 1", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.no_sandbox:
        print("asynclab grade: WARNING: --no-sandbox: learner code runs with your own rights: "
              "it can read other learners' notebooks and the solutions, change the gradebook, "
              "signal the grader and reach your network. gradebook.json records it.",
              file=sys.stderr)
    elif not args.scheduler:  # a cluster's workers say at connect time whether they can
        from asynclab.grading.sandbox import unavailable

        why = unavailable()
        if why:
            print(f"asynclab grade: cannot grade in a sandbox: {why}. To grade without one "
                  "(only for code you trust), add --no-sandbox.", file=sys.stderr)
            return EXIT_UNUSABLE
    settings = GradeSettings(submissions=submissions.resolve(), out=Path(args.out).resolve(),
                             root=course_root(args.root), max_in_flight=args.jobs,
                             force=args.force,
                             limits=_limits(args, variants=("public", "hidden"), want_png=True,
                                            sandbox=not args.no_sandbox,
                                            warm_kernels=not args.cold_kernels),
                             show_progress=not args.quiet, scheduler=args.scheduler)
    return main_grade(settings)


def _add_limits(p: argparse.ArgumentParser, cell: float, notebook: float) -> None:
    p.add_argument("--timeout-cell", type=float, default=cell, metavar="S",
                   help=f"seconds one cell may run (default {cell:g})")
    p.add_argument("--timeout-notebook", type=float, default=notebook, metavar="S",
                   help=f"seconds one notebook may run, kernel restarts included "
                        f"(default {notebook:g})")
    p.add_argument("--memory-mb", type=int, default=2048, metavar="M",
                   help="memory limit of each kernel, in MB (default 2048)")
    p.add_argument("--root", help="the course folder (default: this folder, or the installed course)")


def _add_cold_kernels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cold-kernels", action="store_true",
                   help="start every kernel from scratch instead of forking it from a warm one "
                        "(slower; the verdicts are the same)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asynclab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exercises", help="regenerate exercises/ from solutions/")
    p.add_argument("--root", help="the course folder (default: this folder)")
    p.set_defaults(func=cmd_exercises)

    p = sub.add_parser("check", help="run exercise notebooks in a fresh kernel and judge them",
                       description="Run each notebook in a fresh kernel and judge every exercise "
                       "in it with the course's checks, whatever its check cells say. Exit "
                       "status: 0 all passed, 1 something failed, 2 a file cannot be judged.")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK",
                   help="an exercise notebook, named like the course's (05_semaphore.ipynb)")
    p.add_argument("--html", metavar="REPORT.html",
                   help="also write what the check cells show (reports and the timelines of "
                        "your code) as a web page")
    _add_cold_kernels(p)
    _add_limits(p, cell=60, notebook=300)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("grade", help="grade a class: one folder per learner",
                       description="Grade every learner's exercise notebooks (SUBMISSIONS/<learner>/"
                       "NN_slug.ipynb) with the public and hidden checks; write OUT/gradebook.csv, "
                       "OUT/gradebook.json and OUT/feedback/<learner>.html. A second run skips "
                       "notebooks already graded; Ctrl-C stops cleanly.")
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder with one folder per learner")
    p.add_argument("--out", required=True, metavar="OUT", help="where to write the gradebook")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="notebooks run at once (default: the number of cores)")
    p.add_argument("--force", action="store_true", help="grade again what an earlier run graded")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="judge on the workers of this Dask cluster (tcp://HOST:8786) instead of "
                        "here; each worker judges --nthreads notebooks at once, --jobs is not "
                        "used (see the README)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run learner code without the bubblewrap sandbox, with your own rights "
                        "(only for code you trust; recorded in gradebook.json)")
    _add_cold_kernels(p)
    _add_limits(p, cell=60, notebook=300)
    p.set_defaults(func=cmd_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = args.func(args)
    if argv is None:  # the command itself, about to exit
        # What is alive now stays alive until the exit: the collector need not walk it all
        # again as the interpreter shuts down (measured: 0.1-0.2 s of every asynclab check).
        gc.freeze()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
