"""``asynclab grade --scheduler tcp://HOST:8786``: judge a class's notebooks on a Dask cluster.

A MOOC does not fit on one machine; a cluster (Kubernetes, Slurm, a few lab machines)
runs a Dask scheduler and workers, and the grader hands them the judging. Only the
judging moves: the grader still finds the class, owns ``OUT`` (the result store and
resume by content hash, the gradebook, the feedback pages) and shows the progress; all
of that is the code of a local run (``asynclab.grading.command``).

On the grader (``ClusterJudge``, one ``distributed.Client`` in asynchronous mode, on the
grader's event loop):

* each notebook becomes one Dask task whose arguments carry the submitted file's
  **bytes** (workers need no shared file system), the digest of the course notebook it
  is judged against, and a fingerprint of the course package;
* a bounded window of tasks is handed to the cluster at once (twice the workers'
  threads, following the cluster as it grows), so a class of 100,000 notebooks is not
  held in the scheduler's memory;
* a worker that dies while it judges costs nothing: the scheduler hands the task to
  another worker. After ``distributed.scheduler.allowed-failures`` (a setting of the
  scheduler, 3 by default) deaths, the task fails with ``KilledWorker``: that notebook
  is marked "not graded: error", saying so, and the rest of the class goes on;
* Ctrl-C / SIGTERM cancel the outstanding tasks; what is done is kept.

On a worker (``judge_on_worker``, one notebook per worker thread):

* as ``--jobs`` does locally, half of the worker's threads (rounded up) run notebooks and
  the others start the next kernels meanwhile: ``dask worker --nthreads 2N`` runs N
  notebooks at once on N cores, and a core is never idle while a kernel starts;
* it checks that it runs the grader's course (same package fingerprint, same course
  notebook digest); if not, the verdict is an error that says so, never a grade;
* it writes the bytes to a temporary file and calls ``judge_safely``, the function a
  local run calls, with the grader's settings (limits, sandbox): the same judge, the
  same kernels, the same verdicts;
* it stops judging when the grader no longer wants the result (a cancelled run).

Nothing here is imported without ``--scheduler``; ``distributed`` is imported only in
the functions that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pickle
import sys
import tempfile
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from asynclab.grading.command import (CannotGrade, GradeSettings, LiveKernels, Progress, Slots,
                                      Submission, judge_safely)
from asynclab.grading.judge import (CourseNotebook, NotebookVerdict, course_root,
                                    load_course_notebook, unusable_verdict)

__all__ = ["ClusterJudge", "judge_on_worker", "grading_fingerprint", "COURSE_ROOT_ENV"]

CONNECT_TIMEOUT_S = 5.0  # a scheduler answers in milliseconds; an address that does not is wrong
LOST_TRIES = 3  # a task lost without a worker's death (scheduler restarted, ...): tries in all
WATCH_S = 1.0  # how often a worker checks that its result is still wanted, and the progress
COURSE_ROOT_ENV = "ASYNCLAB_COURSE_ROOT"  # on a worker: the course folder, if not the default


# -- both sides: are we running the same course? ---------------------------------------------


def grading_fingerprint() -> str:
    """A digest of the course package's code (every ``asynclab/**/*.py``) and its version.

    The grader and its workers must agree on it: a worker with other checks or another
    judge would give other grades. Each notebook's own digest (``CourseNotebook.digest``)
    is checked as well, per task.
    """
    import asynclab

    package = Path(asynclab.__file__).resolve().parent
    h = hashlib.sha256(_package_version().encode())
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asynclab")
    except PackageNotFoundError:
        return "unknown"


def worker_identity(sandboxed: bool = False) -> dict[str, str | None]:
    """What a worker says about itself when the grader connects (``Client.run``): its course,
    and (when the kernels are to be sandboxed) why it cannot make a sandbox, if it cannot."""
    problem = None
    if sandboxed:
        from asynclab.grading.sandbox import unavailable

        problem = unavailable()
    return {"fingerprint": grading_fingerprint(), "version": _package_version(),
            "python": sys.version.split()[0], "root": str(_worker_root()), "sandbox": problem}


def _worker_root() -> Path:
    """The worker's course folder: $ASYNCLAB_COURSE_ROOT, else the current folder when it
    holds the course, else the checkout the package is installed from (``pip install -e``)."""
    import asynclab

    explicit = os.environ.get(COURSE_ROOT_ENV)
    if explicit:
        return course_root(explicit)
    here = Path.cwd()
    if (here / "exercises").is_dir() or (here / "solutions").is_dir():
        return here
    return Path(asynclab.__file__).resolve().parent.parent


# -- the worker's side --------------------------------------------------------------------------


class RunGate:
    """How many notebooks run at once in this worker process, across its threads.

    Each of the worker's threads judges one notebook on an event loop of its own, so the
    gate is a thread semaphore, polled (a waiting notebook can still be cancelled).
    """

    POLL_S = 0.02

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = threading.BoundedSemaphore(size)

    async def __aenter__(self) -> None:
        while not self.free.acquire(blocking=False):
            await asyncio.sleep(self.POLL_S)

    async def __aexit__(self, *exc: object) -> None:
        self.free.release()


_gates: dict[int, RunGate] = {}
_gates_lock = threading.Lock()


def running_slots(threads: int) -> int:
    """Notebooks that run at once on a worker with ``threads`` threads (the rest start kernels)."""
    return max(1, (threads + 1) // 2)


def _run_gate() -> RunGate:
    """This worker's gate (one per worker process), sized from its threads."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except Exception:  # noqa: BLE001 - not in a Dask task (a direct call): one at a time
        threads = 1
    with _gates_lock:
        return _gates.setdefault(threads, RunGate(running_slots(threads)))


def _where() -> str:
    with contextlib.suppress(Exception):
        from distributed import get_worker

        return get_worker().address
    return "a worker"


def _result_wanted() -> Callable[[], bool]:
    """A test, cheap enough to poll, of whether the scheduler still wants this task's result.

    A cancelled task keeps running in its thread (Dask cannot stop a thread); the worker's
    own state says when its key was cancelled or released, and the judging then stops.
    """
    try:
        from distributed import get_worker
        from distributed.utils import thread_state

        worker, key = get_worker(), thread_state.key
    except Exception:  # noqa: BLE001 - not in a Dask task (a direct call): always wanted
        return lambda: True

    def wanted() -> bool:
        try:
            task = worker.state.tasks.get(key)
            return task is not None and task.state not in ("cancelled", "released", "forgotten")
        except Exception:  # noqa: BLE001 - the worker's internals changed: keep judging
            return True
    return wanted


async def _judge_while_wanted(sub: Submission, course: CourseNotebook, settings: GradeSettings,
                              wanted: Callable[[], bool]) -> NotebookVerdict | None:
    """``judge_safely`` (as a local run calls it); None when the grader gave up on it."""
    slots = Slots(1)
    slots.running = _run_gate()  # shared by the worker's threads, as Slots are by local tasks
    judging = asyncio.ensure_future(judge_safely(sub, course, settings, slots, LiveKernels()))
    while True:
        done, _ = await asyncio.wait({judging}, timeout=WATCH_S)
        if done:
            return judging.result()
        if not wanted():
            judging.cancel()  # the judge kills its kernel on the way out
            with contextlib.suppress(asyncio.CancelledError):
                await judging
            return None


def judge_on_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Judge one notebook on this worker; the Dask task the grader submits.

    ``task`` holds plain values only (so that a worker with another course still reads
    it): the learner's name, the notebook's stem and file name, its bytes, the course
    notebook's digest, the package fingerprint and the grader's pickled settings.
    Returns ``{"worker", "verdict": NotebookVerdict.to_dict()}``, or ``{"worker",
    "problem": why}`` when this worker cannot judge it. Never raises.
    """
    where = _where()
    try:
        mine = grading_fingerprint()
        if mine != task["fingerprint"]:
            return {"worker": where, "problem": (
                f"the worker {where} runs another version of the course (asynclab "
                f"{_package_version()}, code {mine}; the grader's: {task['version']}, code "
                f"{task['fingerprint']}): install the grader's course on every worker")}
        root = _worker_root()
        course = load_course_notebook(task["stem"], root)
        if course.digest != task["course_digest"]:
            return {"worker": where, "problem": (
                f"the worker {where} has another {task['stem']}.ipynb or other checks than the "
                f"grader (course digest {course.digest}, the grader's {task['course_digest']}; "
                f"its course folder: {root}): install the grader's course on every worker")}
        settings = replace(pickle.loads(task["settings"]), root=root, scheduler=None)
        with tempfile.TemporaryDirectory(prefix="asynclab-submission-") as folder:
            path = Path(folder) / Path(task["name"]).name
            path.write_bytes(task["data"])
            sub = Submission(task["student"], task["stem"], path)
            verdict = asyncio.run(_judge_while_wanted(sub, course, settings, _result_wanted()))
        if verdict is None:
            return {"worker": where, "problem": "the grader cancelled this notebook"}
        return {"worker": where, "verdict": verdict.to_dict()}
    except Exception as exc:  # noqa: BLE001 - an answer, not a traceback in a worker's log
        return {"worker": where, "problem": f"the worker {where} could not judge this notebook "
                f"({type(exc).__name__}: {exc}; its course folder: {_worker_root()})"}


# -- the grader's side --------------------------------------------------------------------------


async def _listening(address: str) -> None:
    """Raise at once (OSError) when nothing listens at a TCP address: Dask's own connection
    retries until its timeout, which is no answer to a mistyped port."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls"):
        raise ValueError(f"{scheme}:// is not supported, only tcp:// and tls://")
    host, port = parse_host_port(location)
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class _SchedulerLost(Exception):
    pass


class ClusterJudge:
    """Judges notebooks on the workers of a Dask cluster (the seam: see ``LocalJudge``)."""

    def __init__(self, settings: GradeSettings, client: Any, progress: Progress) -> None:
        self.settings = settings
        self.client = client
        self.progress = progress
        self.fingerprint = grading_fingerprint()
        self.packed_settings = pickle.dumps(settings)
        self.outstanding: set[Any] = set()  # futures submitted and not yet answered
        self.workers: dict[str, dict] = {}  # address -> the scheduler's information
        self.threads = self.running = 0
        self.window = asyncio.Semaphore(2)
        self.window_size = 2
        self.watcher: asyncio.Task | None = None
        self.lost = asyncio.Event()  # the client gave up on the scheduler: no answer will come

    @classmethod
    async def connect(cls, settings: GradeSettings, progress: Progress) -> ClusterJudge:
        """Connect to the scheduler and check its workers; CannotGrade (one line) if not."""
        from distributed import Client

        address = settings.scheduler
        try:
            await _listening(address)
            client = await Client(address, asynchronous=True, timeout=CONNECT_TIMEOUT_S,
                                  set_as_default=False, name="asynclab-grade")
        except (OSError, ValueError, TypeError, TimeoutError) as exc:
            words = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CannotGrade(f"cannot reach the Dask scheduler at {address} ({words}); is "
                              "`dask scheduler` running there, and is the address right?") \
                from None
        judge = cls(settings, client, progress)
        try:
            await judge.check_workers()
            await judge.refresh()
        except BaseException:
            await client.close()
            raise
        judge.watcher = asyncio.create_task(judge.watch(), name="follow the cluster")
        return judge

    async def check_workers(self) -> None:
        """Refuse a cluster whose workers run another course, or cannot sandbox the kernels
        when they must (workers joining later are checked with each task)."""
        sandboxed = bool(getattr(self.settings.limits, "sandbox", False))
        answers = await self.client.run(worker_identity, sandboxed, on_error="return")
        wrong = []
        for address, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                wrong.append(f"{address} cannot run the course's code ({type(answer).__name__}: "
                             f"{answer}); install the same course on every worker")
            elif answer["fingerprint"] != self.fingerprint:
                wrong.append(f"{address} runs asynclab {answer['version']} with code "
                             f"{answer['fingerprint']} (from {answer['root']}), this grader "
                             f"{self.fingerprint}; install the same course on every worker")
            elif answer.get("sandbox"):
                wrong.append(f"{address} cannot start sandboxed kernels ({answer['sandbox']}); "
                             "enable it there, or grade with --no-sandbox")
        if wrong:
            raise CannotGrade(f"{len(wrong)} of the cluster's {len(answers)} workers cannot "
                              f"judge for this grader: {wrong[0]} (see the README)")

    async def refresh(self) -> None:
        """Learn the cluster's workers; the window grows with their threads."""
        info = await self.client.scheduler.identity(n_workers=-1)
        self.workers = {address: worker for address, worker in info.get("workers", {}).items()
                        if worker.get("status", "running") == "running"}
        self.threads = sum(int(worker.get("nthreads", 1)) for worker in self.workers.values())
        self.running = sum(running_slots(int(worker.get("nthreads", 1)))
                           for worker in self.workers.values())
        while self.window_size < 2 * self.threads:
            self.window.release()
            self.window_size += 1

    async def watch(self) -> None:
        """Keep the progress line's workers up to date; notice a scheduler gone for good."""
        while not self.scheduler_gone():
            with contextlib.suppress(Exception):
                await self.refresh()
                processing = await self.client.processing()
                busy = sum(1 for keys in processing.values() if keys)
                self.progress.detail = (f"{busy} of {len(self.workers)} workers busy"
                                        if self.workers else "waiting for workers to join")
                self.progress.redraw()
            await asyncio.sleep(2 * WATCH_S)

    def scheduler_gone(self) -> bool:
        """Whether the client gave up reconnecting to the scheduler (then nothing will come)."""
        if self.client.status in ("closing", "closed"):
            self.lost.set()
        return self.lost.is_set()

    def describe(self) -> str:
        return (f"on the Dask cluster at {self.settings.scheduler}: {len(self.workers)} workers, "
                f"{self.running} notebooks at a time")

    async def __call__(self, sub: Submission, course: CourseNotebook) -> NotebookVerdict:
        async with self.window:
            verdict = await self._judge(sub, course)
        if verdict.source:  # the worker judged a temporary copy
            verdict.source = str(sub.path)
        return verdict

    async def _judge(self, sub: Submission, course: CourseNotebook) -> NotebookVerdict:
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        try:
            data = sub.path.read_bytes()
        except OSError as exc:  # gone or unreadable since the class was listed
            return self._error(sub, course, f"the grader could not read {sub.path.name} ({exc})")
        task = {"student": sub.student, "stem": sub.stem, "name": sub.path.name,
                "data": data, "course_digest": course.digest,
                "fingerprint": self.fingerprint, "version": _package_version(),
                "settings": self.packed_settings}
        lost = ""
        for _ in range(LOST_TRIES):
            if self.scheduler_gone():
                break
            try:
                future = self.client.submit(judge_on_worker, task, pure=False,
                                            key=f"asynclab-judge-{uuid.uuid4().hex}")
            except Exception as exc:  # noqa: BLE001 - e.g. the scheduler is gone for good
                return self._error(sub, course, f"the cluster could not take this notebook "
                                   f"({type(exc).__name__}: {exc})")
            self.outstanding.add(future)
            try:
                answer = await self._answer(future)
            except KilledWorker as exc:
                return self._error(sub, course, (
                    f"every worker that judged this notebook died while judging it "
                    f"({exc.allowed_failures + 1} workers, the last "
                    f"{getattr(exc.last_worker, 'address', exc.last_worker)}): "
                    "the next run grades it again; the workers' logs say why they died"))
            except (FutureCancelledError, _SchedulerLost) as exc:  # lost, not cancelled by
                lost = getattr(exc, "reason", "") or "the scheduler was lost"  # us: try again
                continue
            except Exception as exc:  # noqa: BLE001 - the cluster failed, not the learner
                return self._error(sub, course, f"the cluster could not judge this notebook "
                                   f"({type(exc).__name__}: {exc})")
            finally:
                if future.done():  # else cancelled here: ``aclose`` cancels it on the cluster
                    self.outstanding.discard(future)
            if "verdict" in answer:
                return NotebookVerdict.from_dict(answer["verdict"])
            return self._error(sub, course, answer["problem"])
        if self.scheduler_gone():
            return self._error(sub, course, f"the grader lost the Dask scheduler at "
                               f"{self.settings.scheduler}; the next run grades it again")
        return self._error(sub, course, f"the cluster lost this notebook {LOST_TRIES} times "
                           f"({lost}); the next run grades it again")

    async def _answer(self, future: Any) -> dict[str, Any]:
        """The task's answer; _SchedulerLost when the client gave up on the scheduler (its
        futures would then wait for ever)."""

        async def result() -> dict[str, Any]:
            return await future

        answer = asyncio.ensure_future(result())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait({answer, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not answer.done():
                answer.cancel()
        if answer not in done:
            raise _SchedulerLost()
        return answer.result()

    @staticmethod
    def _error(sub: Submission, course: CourseNotebook, message: str) -> NotebookVerdict:
        """Not a grade: the notebook is graded again by the next run (the store keeps no error)."""
        return unusable_verdict(sub.stem, course, f"not graded: {message}", status="error")

    def stop_now(self) -> None:
        """A second Ctrl-C: nothing more to do here; ``aclose`` cancels the outstanding tasks."""

    async def aclose(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        with contextlib.suppress(Exception):
            if self.outstanding:
                await self.client.cancel(list(self.outstanding), reason="the grader stopped")
        with contextlib.suppress(Exception):
            await self.client.close()
