"""``asynclab grade``: grade a whole class's exercise notebooks, several at once, safely.

This is the course's capstone: an asyncio program that does what the lessons
teach, on real work. Each notebook runs in its own fresh kernel (a separate
process) through nbclient's async API, all on one event loop:

* **bounded concurrency**: at most ``max_in_flight`` notebooks run at once
  (``asyncio.Semaphore``), one task per notebook, all owned by one
  ``asyncio.TaskGroup``;
* **deadlines**: each cell and each notebook has a time limit; the judge kills
  an overrunning kernel's process tree, and an ``asyncio.timeout`` around each
  notebook is the backstop;
* **graceful shutdown**: SIGINT (Ctrl-C) or SIGTERM cancels the grading task
  (``loop.add_signal_handler``); cancellation reaches every running notebook,
  whose ``finally`` kills its kernel; what was finished is written, the rest is
  marked "not graded: interrupted". A second signal kills the kernels at once;
* **a cluster** (``--scheduler``): the judging alone moves to the workers of a Dask
  cluster (``asynclab.grading.cluster``, behind ``LocalJudge``'s seam); the rest is this.

What is guaranteed:

* every learner folder has a row in the gradebook, even an empty one;
* an exercise earns a point only when the course's public and hidden checks
  passed on the learner's own re-executed code (see ``asynclab.grading.judge``);
* one learner's broken notebook (endless loop, dying kernel, flood of output,
  not a notebook at all) costs only that notebook its points; everyone else is
  still graded;
* each finished notebook is saved at once (``OUT/results/``), keyed by the hash
  of the submitted file and of the course's checks: a second run skips what is
  already graded (``--force`` grades everything again).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, TextIO

from asynclab.grading.kernel_process import kill_tree, raise_if_cancelling
from asynclab.grading.judge import (CourseNotebook, Limits, NotebookVerdict, UnusableInput,
                                    course_notebooks, file_digest, judge_file,
                                    load_course_notebook, unusable_verdict)

if TYPE_CHECKING:  # imported only with --scheduler: it needs Dask
    from asynclab.grading.cluster import ClusterJudge

__all__ = ["GradeSettings", "Submission", "Learner", "find_learners", "grade", "main_grade",
           "CannotGrade"]

BACKSTOP_GRACE_S = 30.0
IGNORED_PARTS = {".ipynb_checkpoints", "__MACOSX", ".git", "__pycache__"}
IGNORED_NAMES = {".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class GradeSettings:
    submissions: Path
    out: Path
    root: Path
    max_in_flight: int
    force: bool = False
    limits: Limits = field(default_factory=Limits)
    show_progress: bool = True
    secret: bytes | None = None  # the class's secret for hidden-check seeds (see class_secret)
    scheduler: str | None = None  # a Dask scheduler's address: judge on its workers (cluster.py)


class CannotGrade(Exception):
    """Grading cannot start (e.g. the cluster is out of reach): one line that says why."""


@dataclass(frozen=True)
class Submission:
    """One notebook of one learner, to be graded."""

    student: str
    stem: str
    path: Path


@dataclass
class Learner:
    name: str  # the folder's name: the gradebook's ``student``
    slug: str  # safe as a file name
    submissions: dict[str, Submission] = field(default_factory=dict)  # stem -> submission
    notes: list[str] = field(default_factory=list)  # ignored files, duplicates


# -- finding the work ------------------------------------------------------------------------


def slugify(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique version of a learner's folder name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "learner"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}_{n}", n + 1
    taken.add(slug)
    return slug


def _guess(name: str, stems: list[str]) -> str:
    match = re.match(r"(\d\d)", name)
    if match:
        for stem in stems:
            if stem.startswith(match.group(1) + "_"):
                return f" (did you mean {stem}.ipynb?)"
    return ""


def _learner_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not IGNORED_PARTS & set(relative.parts) \
                and path.name not in IGNORED_NAMES:
            files.append(path)
    return files


def find_learners(submissions: Path, stems: list[str],
                  skip: tuple[Path, ...] = ()) -> tuple[list[Learner], list[str]]:
    """One Learner per folder of ``submissions``; returns them and notes about stray files.

    A learner's notebook is matched by its file name (``05_semaphore.ipynb``),
    at any depth of their folder (the shallowest wins); every other file is
    ignored and noted in that learner's feedback.
    """
    learners: list[Learner] = []
    stray: list[str] = []
    taken: set[str] = set()
    for folder in sorted(p for p in submissions.iterdir()):
        if not folder.is_dir():
            if folder.name not in IGNORED_NAMES:
                stray.append(f"{folder.name}: not a learner folder, ignored")
            continue
        if folder.name in IGNORED_PARTS or folder.name.startswith(".") \
                or folder.resolve() in skip:  # e.g. --out inside SUBMISSIONS
            continue
        learner = Learner(folder.name, slugify(folder.name, taken))
        candidates = sorted(_learner_files(folder), key=lambda p: (len(p.parts), str(p)))
        for path in candidates:
            relative = path.relative_to(folder)
            stem = path.name[:-len(".ipynb")] if path.name.endswith(".ipynb") else None
            if stem in stems:
                if stem in learner.submissions:
                    graded = learner.submissions[stem].path.relative_to(folder)
                    learner.notes.append(f"{relative}: ignored, {graded} is the one graded")
                else:
                    learner.submissions[stem] = Submission(learner.name, stem, path)
            else:
                learner.notes.append(f"{relative}: ignored, not one of the course's exercise "
                                     f"notebooks{_guess(path.name, stems)}")
        learners.append(learner)
    return learners, stray


# -- remembering what is done ------------------------------------------------------------------


class ResultStore:
    """``OUT/results/<learner>/<notebook>.json``: one finished verdict per file, written at once."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "results"

    def _path(self, learner: Learner, stem: str) -> Path:
        return self.folder / learner.slug / f"{stem}.json"

    def load(self, learner: Learner, stem: str, key: str) -> NotebookVerdict | None:
        """The saved verdict when it was made from the same file and the same course."""
        try:
            data = json.loads(self._path(learner, stem).read_text(encoding="utf-8"))
            verdict = NotebookVerdict.from_dict(data)
        except (OSError, ValueError, TypeError):
            return None
        if verdict.key != key or verdict.status not in ("graded", "unusable"):
            return None
        return verdict

    def save(self, learner: Learner, verdict: NotebookVerdict) -> None:
        path = self._path(learner, verdict.notebook)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(verdict.to_dict()), encoding="utf-8")
        os.replace(temporary, path)  # atomic: a half-written verdict is never read back


def class_secret(out: Path) -> bytes:
    """``OUT/.hidden-seed-secret``: made once per gradebook, readable by the instructor only.

    It never enters a sandbox; the hidden checks' seeds are drawn from it and each file's
    digest (``asynclab.grading.judge.hidden_seed``), so a re-run gives the same verdicts.
    """
    path = out / ".hidden-seed-secret"
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(32))
    return path.read_bytes()


def submission_key(sub: Submission, course: CourseNotebook) -> str:
    return f"{file_digest(sub.path)[:32]}-{course.digest}"


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """One status line on stderr: done/total, failures so far, estimated time left."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.done = self.failures = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.started = time.monotonic()
        self.live = enabled and self.stream.isatty()
        self.detail = ""  # e.g. the cluster's workers in use, shown at the end of the line

    def eta(self) -> str:
        if not self.done:
            return "estimating time left"
        per_notebook = (time.monotonic() - self.started) / self.done
        seconds = int(per_notebook * (self.total - self.done))
        return f"~{seconds // 60}m{seconds % 60:02d}s left"

    def line(self) -> str:
        width = 24
        filled = width * self.done // max(self.total, 1)
        return (f"grading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"notebooks, {self.failures} with failures, {self.eta()}"
                + (f", {self.detail}" if self.detail else ""))

    def redraw(self) -> None:
        """Show a changed ``detail`` at once (on a terminal; a log gets it with the next line)."""
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()

    def finished(self, verdict: NotebookVerdict, who: str) -> None:
        self.done += 1
        if not verdict.passed:
            self.failures += 1
        if not self.enabled:
            return
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            state = "passed" if verdict.passed else "FAILED"
            self.stream.write(f"{self.line()}  ({who}/{verdict.notebook}.ipynb {state})\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.live:
            self.stream.write("\n")
            self.stream.flush()


# -- grading -----------------------------------------------------------------------------------


class LiveKernels:
    """The kernel processes running right now, so that a second Ctrl-C can kill them at once."""

    def __init__(self) -> None:
        self.pids: dict[int, int] = {}  # task id -> kernel pid

    def tracker(self) -> Callable[[int | None], None]:
        key = id(asyncio.current_task())

        def track(pid: int | None) -> None:
            if pid is None:
                self.pids.pop(key, None)
            else:
                self.pids[key] = pid
        return track

    def kill_all(self) -> None:
        for pid in list(self.pids.values()):
            kill_tree(pid)


class Slots:
    """How many notebooks run at once, and how many kernels may start meanwhile.

    ``running`` (``max_in_flight``) bounds the notebooks executing cells. A
    kernel takes a second or so to start, mostly spent outside the grader; so
    that this does not leave a core idle, up to ``max_in_flight`` more kernels
    start while the running notebooks finish (``alive`` bounds them all).
    """

    def __init__(self, max_in_flight: int) -> None:
        self.running = asyncio.Semaphore(max_in_flight)
        self.alive = asyncio.Semaphore(2 * max_in_flight)


async def judge_safely(sub: Submission, course: CourseNotebook, settings: GradeSettings,
                       slots: Slots, kernels: LiveKernels) -> NotebookVerdict:
    """The judge's verdict on one notebook, or a verdict that says why there is none.

    Never raises, except CancelledError (Ctrl-C), after the judge killed its kernel.
    """
    limits = settings.limits
    # The judge enforces the real limits; this only catches a grader that hangs. It covers
    # the wait for a run slot too: at most one notebook's time (the one running before).
    backstop = 2 * (limits.timeout_notebook + limits.startup_timeout) + BACKSTOP_GRACE_S
    try:
        async with asyncio.timeout(backstop):
            return await judge_file(sub.path, settings.root, limits, course=course,
                                    on_kernel=kernels.tracker(), run_gate=slots.running,
                                    secret=settings.secret)
    except UnusableInput as exc:  # kept: the same file is just as unusable next time
        verdict = unusable_verdict(sub.stem, course, str(exc))
        verdict.source, verdict.sha256 = str(sub.path), file_digest(sub.path)
        verdict.key = submission_key(sub, course)
        return verdict
    except TimeoutError:  # not kept (no key): graded again by the next run
        return unusable_verdict(sub.stem, course, f"the notebook did not finish within "
                                f"{backstop:g} s and was stopped", status="graded")
    except Exception as exc:  # noqa: BLE001 - a grader failure must not stop the class
        raise_if_cancelling()
        return unusable_verdict(sub.stem, course, f"the grader failed on this notebook: "
                                f"{type(exc).__name__}: {exc}", status="error")


class LocalJudge:
    """Where the notebooks are judged: here, ``max_in_flight`` at a time (without --scheduler).

    The seam between the grader and its workers: ``asynclab.grading.cluster.ClusterJudge``
    has the same four methods and judges on a Dask cluster instead; both return the verdict
    of ``judge_safely`` (never raise, except CancelledError).
    """

    def __init__(self, settings: GradeSettings) -> None:
        self.settings = settings
        self.slots = Slots(settings.max_in_flight)
        self.kernels = LiveKernels()

    def describe(self) -> str:
        return f"{self.settings.max_in_flight} at a time"

    async def __call__(self, sub: Submission, course: CourseNotebook) -> NotebookVerdict:
        async with self.slots.alive:
            return await judge_safely(sub, course, self.settings, self.slots, self.kernels)

    def stop_now(self) -> None:
        """A second Ctrl-C: do not wait for anything."""
        self.kernels.kill_all()

    async def aclose(self) -> None:
        self.kernels.kill_all()  # none should be left by now
        from asynclab.grading import zygote

        zygote.close()  # the warm kernels' fork server, if this run started one


Judge = Callable[[Submission, CourseNotebook], Awaitable[NotebookVerdict]]


async def open_judge(settings: GradeSettings, progress: Progress) -> LocalJudge | ClusterJudge:
    """The local judge, or the cluster's when ``settings.scheduler`` is set (only then is
    Dask imported); CannotGrade when the cluster cannot be used."""
    if settings.scheduler is None:
        return LocalJudge(settings)
    from asynclab.grading.cluster import ClusterJudge

    return await ClusterJudge.connect(settings, progress)


async def grade_one(sub: Submission, learner: Learner, course: CourseNotebook, judge: Judge,
                    store: ResultStore, progress: Progress) -> NotebookVerdict:
    """Grade one notebook when a slot is free, save the verdict at once, count it as done."""
    verdict = await judge(sub, course)
    store.save(learner, verdict)
    progress.finished(verdict, learner.name)
    return verdict


async def grade_all(todo: list[tuple[Submission, Learner, CourseNotebook]], judge: Judge,
                    store: ResultStore, progress: Progress,
                    results: dict[tuple[str, str], NotebookVerdict]) -> None:
    """Grade every pending notebook, as fast as ``judge`` allows; fills ``results`` as they end."""

    async def grade_and_keep(sub: Submission, learner: Learner, course: CourseNotebook) -> None:
        verdict = await grade_one(sub, learner, course, judge, store, progress)
        results[(sub.student, sub.stem)] = verdict

    async with asyncio.TaskGroup() as tasks:
        for sub, learner, course in todo:
            tasks.create_task(grade_and_keep(sub, learner, course),
                              name=f"grade {sub.student}/{sub.stem}")


def load_courses(root: Path) -> dict[str, CourseNotebook]:
    """Every exercise notebook of the course that can be graded; a broken one is skipped, loudly."""
    courses = {}
    for stem in course_notebooks(root):
        try:
            courses[stem] = load_course_notebook(stem, root)
        except Exception as exc:  # noqa: BLE001 - one broken course notebook must not stop grading
            print(f"asynclab grade: {stem}.ipynb of the course cannot be used ({exc}); its "
                  "exercises are not graded", file=sys.stderr)
    return courses


@dataclass
class GradeRun:
    learners: list[Learner]
    courses: dict[str, CourseNotebook]
    results: dict[tuple[str, str], NotebookVerdict]
    resumed: int = 0
    interrupted: str | None = None  # the signal's name
    stray: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def grade(settings: GradeSettings) -> GradeRun:
    """Grade the class; stops cleanly on SIGINT/SIGTERM and says so in ``interrupted``."""
    started = time.monotonic()
    limits = settings.limits
    if limits.warm_kernels and not settings.scheduler:
        from asynclab.grading import zygote

        zygote.zygote(limits.sandbox).warm_up()  # its imports overlap the reading of the class
    if settings.secret is None:
        settings = dataclasses.replace(settings, secret=class_secret(settings.out))
    courses = load_courses(settings.root)
    learners, stray = find_learners(settings.submissions, list(courses),
                                    skip=(settings.out.resolve(),))
    store = ResultStore(settings.out)
    run = GradeRun(learners, courses, {}, stray=stray)
    todo = []
    for learner in learners:
        for stem, sub in learner.submissions.items():
            saved = None if settings.force else store.load(learner, stem,
                                                           submission_key(sub, courses[stem]))
            if saved is not None:
                run.results[(learner.name, stem)] = saved
                run.resumed += 1
            else:
                todo.append((sub, learner, courses[stem]))
    progress = Progress(len(todo), enabled=settings.show_progress)
    judge = await open_judge(settings, progress) if todo else LocalJudge(settings)
    if settings.show_progress:
        print(f"{len(learners)} learners, {len(todo) + run.resumed} notebooks: {run.resumed} "
              f"already graded, {len(todo)} to run, {judge.describe()}", file=sys.stderr)
    loop = asyncio.get_running_loop()
    work = asyncio.create_task(grade_all(todo, judge, store, progress, run.results))

    def on_signal(name: str) -> None:
        if run.interrupted is None:
            run.interrupted = name
            work.cancel()
        else:  # asked twice: do not wait for anything
            judge.stop_now()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        await work
    except asyncio.CancelledError:
        if run.interrupted is None:
            raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await judge.aclose()  # a local judge kills any kernel left: the gradebook is written
        progress.close()      # after every learner process is gone
    run.seconds = time.monotonic() - started
    return run


def main_grade(settings: GradeSettings) -> int:
    """Run the grading and write the gradebook; the exit status of ``asynclab grade``."""
    from asynclab.grading.report import write_outputs

    try:
        run = asyncio.run(grade(settings))
    except CannotGrade as exc:
        print(f"asynclab grade: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(run, settings)
    if settings.show_progress:
        graded = len(run.results)
        print(f"graded {graded} notebooks ({run.resumed} from an earlier run) in "
              f"{run.seconds:.1f} s", file=sys.stderr)
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
        if run.interrupted:
            print(f"interrupted by {run.interrupted}: the notebooks not graded are marked "
                  "'not graded: interrupted'; run the same command again to finish",
                  file=sys.stderr)
    if run.interrupted:
        return 128 + int(getattr(signal, run.interrupted))
    return 0
