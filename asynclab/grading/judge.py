"""Run one learner's exercise notebook in a fresh kernel and judge every exercise in it.

Shared by ``asynclab check`` (a learner checks their own notebook) and
``asynclab grade`` (an instructor grades a class). What is guaranteed:

* **Only the answers are taken from the learner.** The notebook that runs is the
  course's own exercise notebook (built from ``solutions/`` when present, else
  ``exercises/``), with the learner's ``answer``-tagged cells in place of the
  course's, matched by the exercise they define, else by position. Check cells
  are dropped and replaced by judging cells the learner never saw, so edited
  check cells and forged outputs change nothing: everything is re-executed.
* **The verdict comes from the course's checks**, captured before any learner
  code runs, and is refused when the learner's code replaced part of the course
  package, asyncio, the clock or the interpreter's hooks (see
  ``asynclab.grading.guard`` for what is covered and what is not).
* **Hard limits** (``asynclab.grading.kernel_process``). Each cell has a time limit and
  the notebook has one; the kernel runs under a memory limit and its resident
  memory is polled. A kernel that overruns, hangs in a top-level ``await``,
  exhausts memory or dies is killed with its whole process tree (psutil), and
  the notebook is run again in a fresh kernel *without the cell that caused it*,
  so the other exercises are still judged, until the notebook's time runs out.
* **Clear words for every failure**, per exercise: what failed and why.

Points (used by the grader): an exercise earns 1 point when its answer cell ran
without error within its time limit, every property of the public check and of
the hidden check passed, and no tampering was detected; otherwise 0.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import nbformat

from asynclab.authoring import ANSWER_TAG, CHECK_TAG, make_exercise
from asynclab.checks import exercise_names, module_file, notebook_stems, parse_python
from asynclab.findings import Finding, Report
from asynclab.grading.kernel_process import (KILL_REASONS, CellRun, KernelRun, Limits,
                                             raise_if_cancelling)

__all__ = ["UnusableInput", "Limits", "CourseNotebook", "ExerciseVerdict", "NotebookVerdict",
           "course_root", "course_notebooks", "load_course_notebook", "read_notebook",
           "judge_notebook", "judge_file", "report_text"]

GRADER_VERSION = "1"
GUARD_NAME = "_asynclab_judge_"
MAX_ATTEMPTS = 4  # first run + up to 3 re-runs without a cell that killed the kernel
SETUP_BUDGET_S = 60.0
JUDGE_BUDGET_PER_VARIANT_S = 15.0  # a check gives up on a hanging function after 5 s


class UnusableInput(Exception):
    """The file cannot be judged: the message is one line that says why."""


# -- the course --------------------------------------------------------------------------------


def course_root(explicit: str | os.PathLike | None = None) -> Path:
    """The course folder (with ``solutions/`` or ``exercises/``): explicit, else cwd, else the package's."""
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd()
    if (here / "exercises").is_dir() or (here / "solutions").is_dir():
        return here
    return Path(__file__).resolve().parent.parent.parent  # asynclab/grading/ -> the checkout


def course_notebooks(root: Path) -> dict[str, Path]:
    """``{stem: path}`` of every exercise notebook that has checks, in course order."""
    found: dict[str, Path] = {}
    for stem in notebook_stems():  # imports no checks module: a grader needs only its own
        for folder in ("solutions", "exercises"):
            path = root / folder / f"{stem}.ipynb"
            if path.is_file():
                found[stem] = path
                break
    return found


def tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def defined_names(source: str) -> list[str]:
    """Top-level functions and classes a cell defines (regex fallback when it does not parse)."""
    tree = parse_python(source)
    if tree is None:
        return re.findall(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", source, re.M)
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def checked_name(source: str) -> str | None:
    """``fetch_all_urls`` for a check cell ``check(fetch_all_urls)``."""
    match = re.search(r"check\(\s*([A-Za-z_]\w*)", source)
    return match.group(1) if match else None


@dataclass
class AnswerSlot:
    """One answer cell of the course's notebook and the exercise(s) it holds."""

    number: int  # 1-based, in notebook order
    cell_index: int
    names: list[str]

    @property
    def label(self) -> str:
        return f"answer cell {self.number} ({', '.join(self.names) or 'no exercise'})"


@dataclass
class CourseNotebook:
    stem: str
    path: Path
    template: Any  # nbformat.NotebookNode: the exercise notebook as shipped
    slots: list[AnswerSlot]
    exercises: list[str]  # in the order they are judged
    digest: str  # changes when the notebook, its checks or the judge change


def _course_digest(stem: str, template: Any) -> str:
    h = hashlib.sha256(GRADER_VERSION.encode())
    h.update(nbformat.writes(template).encode())
    package = Path(__file__).resolve().parent.parent
    for name in ("grading/guard.py", "grading/judge.py", "checking.py", "findings.py", "fakes.py",
                 "vtime.py"):
        with contextlib.suppress(OSError):
            h.update((package / name).read_bytes())
    checks = module_file(stem)
    if checks is not None:
        with contextlib.suppress(OSError):
            h.update(checks.read_bytes())
    return h.hexdigest()[:16]


def load_course_notebook(stem: str, root: Path) -> CourseNotebook:
    """The course's copy of exercise notebook ``stem``; UnusableInput when there is none."""
    known = course_notebooks(root)
    if stem not in known:
        names = ", ".join(f"{s}.ipynb" for s in known) or "none found"
        raise UnusableInput(f"{stem}.ipynb is not one of the course's exercise notebooks "
                            f"({names})")
    path = known[stem]
    notebook = nbformat.read(path, as_version=4)
    template = make_exercise(notebook, path.name) if path.parent.name == "solutions" else notebook
    checks = exercise_names(stem)
    slots: list[AnswerSlot] = []
    for index, cell in enumerate(template.cells):
        if cell.cell_type == "code" and ANSWER_TAG in tags(cell):
            names = [n for n in defined_names(cell.source) if n in checks]
            slots.append(AnswerSlot(len(slots) + 1, index, names))
    unplaced = [n for n in checks if not any(n in s.names for s in slots)]
    for slot in slots:  # an answer cell whose exercise is not found by name: by position
        if not slot.names and unplaced:
            slot.names.append(unplaced.pop(0))
    return CourseNotebook(stem, path, template, slots, checks, _course_digest(stem, template))


def notebook_stem(path: Path) -> str:
    return path.name[:-len(".ipynb")] if path.name.endswith(".ipynb") else path.stem


def read_notebook(path: Path) -> Any:
    """Read a learner's notebook; UnusableInput (one line) when it cannot be a notebook."""
    if not path.exists():
        raise UnusableInput(f"{path}: no such file")
    if path.is_dir():
        raise UnusableInput(f"{path}: is a folder, not a notebook")
    raw = path.read_bytes()
    if not raw.strip():
        raise UnusableInput(f"{path.name}: the file is empty, not a notebook")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnusableInput(f"{path.name}: not a notebook (not a text file)") from None
    except json.JSONDecodeError as exc:
        raise UnusableInput(f"{path.name}: not a notebook: malformed JSON (line {exc.lineno}, "
                            f"column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UnusableInput(f"{path.name}: not a notebook: JSON without a list of cells")
    try:
        notebook = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        raise UnusableInput(f"{path.name}: not a readable notebook ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for cell in notebook.cells:
        if not isinstance(cell.get("source", ""), str) or "cell_type" not in cell:
            raise UnusableInput(f"{path.name}: not a readable notebook (a cell has no type or "
                                "source)")
    return notebook


# -- building the notebook that runs ----------------------------------------------------------

# Things an exercise never needs, used by code written to fool a judge. Not an error: a note
# for the instructor's review.
REVIEW_PATTERNS = {
    r"\bsys\._getframe\b|\bsys\._current_frames\b|\binspect\.(currentframe|stack)\b|\bf_back\b|\bf_locals\b":
        "reads interpreter frames",
    r"\bgc\.(get_objects|get_referrers|get_referents)\b": "searches the garbage collector",
    r"\bctypes\b": "uses ctypes",
    r"\bsettrace\b|\bsetprofile\b|\baddaudithook\b": "installs trace or audit hooks",
    r"\b__code__\b|\b__globals__\b|\b__kwdefaults__\b|\b__defaults__\b|\b__closure__\b":
        "rewrites function internals",
    r"\bsetattr\s*\(|\bbuiltins\b|\b__builtins__\b": "sets attributes dynamically or touches builtins",
    r"\bsys\.modules\b|\bimportlib\b": "manipulates imported modules",
    r"\bglobals\s*\(\s*\)|\bget_ipython\b|\buser_ns\b|%reset": "manipulates the notebook's namespace",
    r"\basynclab\.[\w.]+\s*=[^=]|\basyncio\.[\w.]+\s*=[^=]|\blooptime\b": "assigns into the course "
        "package or asyncio",
    r"\b_asynclab_judge_": "refers to the grader's judge",
    r"^\s*(from|import)\s+asynclab\b": "imports the course package (the setup cell already does)",
}


def review_flags(source: str) -> list[str]:
    """Why an answer cell deserves a human look (empty for ordinary exercise code)."""
    return [why for pattern, why in REVIEW_PATTERNS.items() if re.search(pattern, source)]


@dataclass
class PlannedCell:
    role: str  # "setup" | "course" | "answer" | "judge"
    source: str
    label: str
    budget: float
    exercises: list[str] = field(default_factory=list)
    result_path: str = ""


@dataclass
class Plan:
    cells: list[PlannedCell]
    nonce: str
    missing: dict[str, str]  # exercise -> why its answer cell is missing
    notes: list[str]
    flags: list[str]
    idle_report: str | None = None  # where the kernel says it waits for ever (grading.idle)


def _match_answers(course: CourseNotebook, learner: Any) -> tuple[dict[int, Any], dict[str, str]]:
    """Learner answer cell for each course slot (by the exercise it defines, else by position)."""
    answers = [c for c in learner.cells if c.cell_type == "code" and ANSWER_TAG in tags(c)]
    known = set(course.exercises)
    claimed: set[int] = set()
    matched: dict[int, Any] = {}

    def claim(slot: AnswerSlot, position: int) -> None:
        matched[slot.number] = answers[position]
        claimed.add(position)

    for slot in course.slots:  # first by the exercise the cell defines
        for position, cell in enumerate(answers):
            if position not in claimed and set(defined_names(cell.source)) & set(slot.names):
                claim(slot, position)
                break
    for slot in course.slots:  # then by position (a renamed function, a syntax error)
        position = slot.number - 1
        if slot.number not in matched and position < len(answers) and position not in claimed \
                and not set(defined_names(answers[position].source)) & known:
            claim(slot, position)
    missing: dict[str, str] = {}
    untagged = [c for c in learner.cells if c.cell_type == "code" and ANSWER_TAG not in tags(c)]
    for slot in course.slots:
        if slot.number in matched:
            continue
        elsewhere = [n for n in slot.names
                     if any(n in defined_names(c.source) for c in untagged)]
        why = (f"{slot.label} is missing: a cell of yours defines {elsewhere[0]} but is not "
               f"tagged `{ANSWER_TAG}`; put the tag back (cell toolbar or property inspector), "
               "only answer cells are graded" if elsewhere else
               f"{slot.label} is missing: your notebook has no cell tagged `{ANSWER_TAG}` for "
               "it (did you delete the cell or remove its tag?); copy the cell back from the "
               "course's notebook and write your answer in it")
        for name in slot.names:
            missing[name] = why
    return matched, missing


def _extra_cells_note(course: CourseNotebook, learner: Any) -> str | None:
    course_sources = {c.source.strip() for c in course.template.cells if c.cell_type == "code"}
    extra = [c for c in learner.cells
             if c.cell_type == "code" and ANSWER_TAG not in tags(c) and CHECK_TAG not in tags(c)
             and c.source.strip() and c.source.strip() not in course_sources]
    if not extra:
        return None
    return (f"{len(extra)} code cell(s) of your notebook are not answer cells and were not run "
            "(only the cells tagged `answer` are taken from your notebook; the course's own "
            "cells are used for the rest)")


def _course_label(cell_index: int, source: str) -> str:
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return f"course cell {cell_index} (`{first[:50]}`)"


def assemble(course: CourseNotebook, learner: Any, limits: Limits, result_dir: Path,
             seed: int | None = None) -> Plan:
    """The cells to execute: guard setup, course cells with the learner's answers, judging cells.

    ``seed`` (for the hidden checks' inputs) appears in the judging cells only.
    """
    nonce = secrets.token_hex(16)
    guard = GUARD_NAME + secrets.token_hex(6)
    matched, missing = _match_answers(course, learner)
    judge_budget = max(limits.timeout_cell, JUDGE_BUDGET_PER_VARIANT_S * len(limits.variants))
    # Only in the sandbox can "nothing will ever wake this kernel" be known (grading.idle).
    idle_report = str(result_dir / "idle.json") if limits.sandbox else None
    setup = (f"{guard} = __import__('asynclab.grading.guard', fromlist=['install']).install("
             f"{course.stem!r}, {course.exercises!r}, globals(), idle_report={idle_report!r}, "
             f"plots={limits.want_png!r})")
    cells = [PlannedCell("setup", setup, "the grader's setup", max(SETUP_BUDGET_S,
                                                                    limits.timeout_cell))]
    slot_at = {slot.cell_index: slot for slot in course.slots}
    judged: set[str] = set()

    def judge_cell(name: str) -> PlannedCell:
        path = result_dir / f"{secrets.token_hex(8)}.json"
        source = (f"{guard}({name!r}, {tuple(limits.variants)!r}, {str(path)!r}, {nonce!r}, "
                  f"{limits.want_png!r}, {seed!r})")
        judged.add(name)
        return PlannedCell("judge", source, f"judging {name}", judge_budget, [name], str(path))

    flags: list[str] = []
    for index, cell in enumerate(course.template.cells):
        if cell.cell_type != "code":
            continue
        if CHECK_TAG in tags(cell):
            name = checked_name(cell.source)
            if name in course.exercises and name not in judged:
                cells.append(judge_cell(name))
            continue
        slot = slot_at.get(index)
        if slot is None:
            cells.append(PlannedCell("course", cell.source, _course_label(index, cell.source),
                                     limits.timeout_cell))
        elif slot.number in matched:
            source = matched[slot.number].source
            flags += [f"{slot.label}: {why}" for why in review_flags(source)]
            cells.append(PlannedCell("answer", source, slot.label, limits.timeout_cell,
                                     list(slot.names)))
    for name in course.exercises:
        if name not in judged:
            cells.append(judge_cell(name))
    notes = [note for note in [_extra_cells_note(course, learner)] if note]
    return Plan(cells, nonce, missing, notes, flags, idle_report)


# -- verdicts ----------------------------------------------------------------------------------


@dataclass
class ExerciseVerdict:
    exercise: str
    notebook: str
    points: int = 0
    passed: bool = False  # every judged variant passed, answer cell clean, no tampering
    reports: dict[str, dict] = field(default_factory=dict)  # variant -> Report.to_dict()
    messages: list[str] = field(default_factory=list)  # why it failed, in words
    errors: list[str] = field(default_factory=list)  # tracebacks and check crashes
    png: str | None = None  # base64 timeline of the public run
    duration_s: float = 0.0
    status: str = "graded"  # or "not graded: ..." when it was never judged

    def to_dict(self, with_png: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_png:
            data.pop("png")
        return data


@dataclass
class NotebookVerdict:
    notebook: str  # stem
    source: str = ""  # the file judged
    sha256: str = ""
    key: str = ""  # sha256 + course digest: what resume compares
    status: str = "graded"  # "graded" | "unusable" | "error" | "interrupted"
    message: str = ""
    exercises: dict[str, ExerciseVerdict] = field(default_factory=dict)
    cells: list[CellRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    attempts: int = 0
    duration_s: float = 0.0  # the notebook's own run: kernels, cells, judging
    waited_s: float = 0.0  # time its ready kernel waited for a run slot (not in duration_s)

    @property
    def passed(self) -> bool:
        return self.status == "graded" and all(v.passed for v in self.exercises.values())

    def to_dict(self, with_png: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["exercises"] = {k: v.to_dict(with_png) for k, v in self.exercises.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NotebookVerdict":
        data = dict(data)
        data["exercises"] = {k: ExerciseVerdict(**v) for k, v in data.get("exercises", {}).items()}
        data["cells"] = [CellRun(**c) for c in data.get("cells", [])]
        return cls(**data)


def report_text(report: dict[str, Any]) -> str:
    """The text a check cell prints, rebuilt from ``Report.to_dict()``."""
    findings = [Finding(f["property"], bool(f["passed"]), f["message"], f.get("hint", ""),
                        f.get("diagnosis", ""))
                for f in report.get("findings", [])]
    rebuilt = Report(report.get("exercise", "?"), findings)
    rebuilt.variation = report.get("variation", "")
    return rebuilt.text()


def _report_passed(report: dict[str, Any] | None) -> bool:
    findings = (report or {}).get("findings") or []
    return bool(findings) and all(f.get("passed") is True for f in findings)


# -- judging one notebook ----------------------------------------------------------------------


def _fatal_words(run: CellRun, limits: Limits) -> str:
    if run.status == "timeout":
        return (f"was still running after {limits.timeout_cell:g} s and was stopped (an endless "
                "loop, a blocking call such as time.sleep, or an await that never ends at the "
                "top level of the cell)")
    if run.status == "hung":
        return ("was waiting for something that can never happen and was stopped early: the "
                "kernel was idle, with no task ready, no timer due and nothing else that could "
                "wake it (an await that never ends, such as a queue nobody fills, an event "
                "nobody sets, or a task waiting for itself)")
    if run.status == "memory":
        return f"used more than {limits.memory_mb} MB of memory and was stopped"
    if run.status == "disk":
        return (f"wrote more than {limits.folder_cap_mb} MB into the folders it shares with the "
                "grader and was stopped")
    return ("made the kernel die (os._exit, sys.exit in a thread, a crash, or memory "
            f"beyond {limits.memory_mb} MB?)")


class _Judging:
    """The state of judging one notebook across kernel attempts."""

    def __init__(self, course: CourseNotebook, plan: Plan, limits: Limits) -> None:
        self.course, self.plan, self.limits = course, plan, limits
        self.runs: dict[int, CellRun] = {}  # first run of each cell
        self.excluded: set[int] = set()
        self.results: dict[str, dict] = {}  # exercise -> the judge's verdict document
        self.judge_problems: dict[str, str] = {}
        self.answer_stopped: set[str] = set()  # exercises whose answer cell had to be killed
        self.deadline: float | None = None  # set when the first kernel is ready
        self.result_dir: Path | None = None  # where the judging cells write their verdicts

    def settled(self, exercise: str) -> bool:
        """Judged, or known to be unjudgeable (its answer cell stopped the kernel)."""
        return exercise in self.results or exercise in self.judge_problems \
            or exercise in self.answer_stopped

    def pending(self) -> list[str]:
        return [cell.exercises[0] for i, cell in enumerate(self.plan.cells)
                if cell.role == "judge" and i not in self.excluded
                and not self.settled(cell.exercises[0])]

    def read_result(self, cell: PlannedCell, run: CellRun) -> None:
        name = cell.exercises[0]
        try:
            data = json.loads(Path(cell.result_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("nonce") == self.plan.nonce \
                and data.get("exercise") == name:
            self.results[name] = data
        elif run.status == "error":
            self.judge_problems[name] = (
                f"the grader could not judge {name} ({run.error}): did your code delete or "
                "replace the notebook's variables (%reset, globals().clear())? no credit")
        else:
            self.judge_problems[name] = (f"the judging of {name} produced no valid result "
                                         "(tampering?); no credit")


async def _attempt(state: _Judging, workdir: Path,
                   on_kernel: Callable[[int | None], None] | None,
                   started: Callable[[], Awaitable[None]]) -> tuple[int, CellRun] | None:
    """Run the notebook once in a fresh kernel; returns the cell that killed it, if one did.

    ``started`` is awaited once the kernel is ready, before the first cell runs.
    """
    plan, limits = state.plan, state.limits
    kernel = KernelRun(plan.cells, limits, workdir, on_kernel,
                       shared=tuple(p for p in [state.result_dir] if p),
                       idle_report=Path(plan.idle_report) if plan.idle_report else None)
    try:
        try:
            await kernel.start()
        except Exception as exc:  # noqa: BLE001 - a kernel that cannot start is reported
            raise_if_cancelling()
            detail = kernel.log_tail() or f"{type(exc).__name__}: {exc}"
            raise _KernelStartFailed(detail) from None
        await started()
        if state.deadline is None:  # the notebook's time counts from its first ready kernel
            state.deadline = time.monotonic() + limits.timeout_notebook
        deadline = state.deadline
        for index, cell in enumerate(plan.cells):
            if index in state.excluded:
                continue
            if cell.role == "judge" and state.settled(cell.exercises[0]):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return index, CellRun(cell.label, cell.role, "not run",
                                      error="the notebook's time limit ran out")
            budget = min(cell.budget, remaining)
            run = await kernel.run_cell(index, budget, store_history=cell.role not in ("setup", "judge"))
            if run.status == "timeout" and budget < cell.budget:
                run = CellRun(cell.label, cell.role, "not run", run.seconds,
                              error="the notebook's time limit ran out")
            state.runs.setdefault(index, run)
            if run.status in (*KILL_REASONS, "died", "not run"):
                if run.status == "died":
                    run.traceback = run.traceback or kernel.log_tail()
                return index, run
            if cell.role == "judge":
                state.read_result(cell, run)
        return None
    finally:
        await kernel.stop()


class _KernelStartFailed(Exception):
    pass


def _exercise_verdicts(state: _Judging, answer_runs: dict[str, CellRun],
                       stopped: str | None) -> dict[str, ExerciseVerdict]:
    plan, limits, course = state.plan, state.limits, state.course
    verdicts: dict[str, ExerciseVerdict] = {}
    tampering = sorted({t for data in state.results.values() for t in data.get("tampering", [])})
    for name in course.exercises:
        v = ExerciseVerdict(name, course.stem)
        verdicts[name] = v
        clean_answer = True
        if name in plan.missing:
            v.messages.append(plan.missing[name])
            clean_answer = False
        run = answer_runs.get(name)
        if run is not None and run.status != "ok":
            clean_answer = False
            if run.status == "error":
                v.messages.append(f"your {run.label} raised {run.error}; an answer cell must run "
                                  "without error")
                v.errors.append(run.traceback)
            elif run.status == "not run":
                v.messages.append(f"your {run.label} was not run: {run.error}")
            else:
                v.messages.append(f"your {run.label} {_fatal_words(run, limits)}; no credit "
                                  "for it")
                if run.traceback:
                    v.errors.append(run.traceback)
        data = state.results.get(name)
        if tampering:
            v.messages.append(describe_tampering(tampering))
        if data is None:
            problem = state.judge_problems.get(name)
            if problem:
                v.messages.append(problem)
            elif name not in plan.missing and name not in state.answer_stopped:
                v.messages.append(f"{name} was not judged: {stopped or 'the notebook stopped'}")
            continue
        v.duration_s = float(data.get("duration_s", 0.0))
        v.png = data.get("png")
        check_errors = [str(e) for e in data.get("errors", [])]
        v.messages += check_errors
        v.errors += [str(w) for w in data.get("warnings", [])]
        if not data.get("defined", True) and name not in plan.missing:
            v.messages.append(f"{name} is not defined: did you run/rename the answer cell?")
        for variant in limits.variants:
            report = data.get("reports", {}).get(variant)
            if report is not None:
                v.reports[variant] = report
            elif variant in data.get("skipped", []):
                v.messages.append(f"the {variant} check was not run: it counts once the "
                                  f"{limits.variants[0]} check passes")
        v.passed = (clean_answer and not tampering and not data.get("tampering")
                    and all(_report_passed(v.reports.get(variant)) for variant in limits.variants)
                    and not check_errors)
        v.points = 1 if v.passed else 0
    return verdicts


def describe_tampering(changed: list[str]) -> str:
    from asynclab.grading.guard import describe_tampering as words

    return words(changed)


async def judge_notebook(learner: Any, course: CourseNotebook, limits: Limits, *,
                         on_kernel: Callable[[int | None], None] | None = None,
                         run_gate: contextlib.AbstractAsyncContextManager | None = None,
                         seed: int | None = None) -> NotebookVerdict:
    """Run ``learner`` (a notebook node) as described in the module docstring.

    Never raises for anything the learner's code does; CancelledError passes
    through, after the kernel is killed. ``run_gate`` (e.g. a semaphore) is
    entered once the first kernel is ready and held until the end: the caller
    can let kernels start while other notebooks still run. ``seed`` draws the
    hidden checks' inputs (see ``hidden_seed``).
    """
    async with contextlib.AsyncExitStack() as stack:
        gate_entered = False
        waited = 0.0

        async def kernel_ready() -> None:
            nonlocal gate_entered, waited
            if run_gate is not None and not gate_entered:
                gate_entered = True
                started = time.monotonic()
                await stack.enter_async_context(run_gate)
                waited = time.monotonic() - started

        verdict = await _judge_notebook(learner, course, limits, on_kernel, kernel_ready, seed)
        verdict.waited_s = round(waited, 3)
        verdict.duration_s = round(max(0.0, verdict.duration_s - waited), 3)
        return verdict


async def _judge_notebook(learner: Any, course: CourseNotebook, limits: Limits,
                          on_kernel: Callable[[int | None], None] | None,
                          kernel_ready: Callable[[], Awaitable[None]],
                          seed: int | None = None) -> NotebookVerdict:
    started = time.monotonic()
    verdict = NotebookVerdict(course.stem)
    workdir = Path(tempfile.mkdtemp(prefix="asynclab-judge-"))
    # The verdicts go to a folder of their own, not next to the kernel's working folder.
    result_dir = Path(tempfile.mkdtemp(prefix="asynclab-verdicts-"))
    try:
        plan = assemble(course, learner, limits, result_dir, seed)
        verdict.notes += plan.notes
        verdict.flags += plan.flags
        state = _Judging(course, plan, limits)
        state.result_dir = result_dir
        stopped: str | None = None
        if any(cell.role == "answer" for cell in plan.cells):  # else: nothing of theirs to run
            try:
                stopped = await _run_attempts(state, verdict, workdir, on_kernel, kernel_ready)
            except _KernelStartFailed as exc:
                verdict.status = "error"
                lines = str(exc).strip().splitlines() or ["no reason given"]
                verdict.message = (f"the kernel could not start ({lines[-1].strip()}); is "
                                   f"--memory-mb {limits.memory_mb} too low?")
        _collect_cell_notes(state, verdict)
        verdict.exercises = _exercise_verdicts(state, _answer_runs(state), stopped)
        if verdict.status == "error":
            for v in verdict.exercises.values():
                v.status = "not graded: error"
                v.passed, v.points = False, 0
                v.messages = [verdict.message]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(result_dir, ignore_errors=True)
        verdict.duration_s = round(time.monotonic() - started, 3)
    return verdict


async def _run_attempts(state: _Judging, verdict: NotebookVerdict, workdir: Path,
                        on_kernel: Callable[[int | None], None] | None,
                        kernel_ready: Callable[[], Awaitable[None]]) -> str | None:
    """Run the notebook, again without each cell that stops the kernel, while exercises
    remain to judge; returns why judging stopped early (None: it did not)."""
    plan, limits = state.plan, state.limits
    while True:
        verdict.attempts += 1
        fatal = await _attempt(state, workdir, on_kernel, kernel_ready)
        if fatal is None:
            return None
        index, run = fatal
        cell = plan.cells[index]
        if run.status == "not run":
            return f"the notebook's time limit ({limits.timeout_notebook:g} s) ran out"
        state.excluded.add(index)
        if cell.role == "answer":  # nothing left to judge for its exercises
            state.answer_stopped.update(cell.exercises)
        elif cell.role == "judge":
            state.judge_problems[cell.exercises[0]] = (
                f"judging {cell.exercises[0]} {_fatal_words(run, limits)}"
                .replace("the top level of the cell", "your function") + "; no credit")
        elif cell.role == "course":
            verdict.notes.append(f"{cell.label} {_fatal_words(run, limits)}")
        else:
            return "the grader's setup cell failed"
        if not state.pending():
            return None
        if verdict.attempts >= MAX_ATTEMPTS:
            return f"the kernel was stopped {verdict.attempts} times"
        verdict.notes.append(f"the notebook was run again in a fresh kernel without "
                             f"{cell.label}, to judge {', '.join(state.pending())}")


def _answer_runs(state: _Judging) -> dict[str, CellRun]:
    """How each exercise's answer cell ran (first run)."""
    found = {}
    for index, run in state.runs.items():
        cell = state.plan.cells[index]
        if cell.role == "answer":
            for name in cell.exercises:
                found[name] = run
    return found


def _collect_cell_notes(state: _Judging, verdict: NotebookVerdict) -> None:
    for index, run in sorted(state.runs.items()):
        cell = state.plan.cells[index]
        if cell.role == "course" and run.status == "error":
            verdict.notes.append(f"{cell.label} raised {run.error}")
        if run.truncated_output:
            verdict.notes.append(f"{cell.label} printed more than "
                                 f"{state.limits.output_cap_bytes // 1_000_000} MB; the rest of "
                                 "its output was dropped")
    verdict.cells = [state.runs[i] for i in sorted(state.runs)]


def unusable_verdict(stem: str, course: CourseNotebook | None, message: str,
                     status: str = "unusable") -> NotebookVerdict:
    """A verdict without a run: every exercise of the notebook gets 0 and ``message``."""
    verdict = NotebookVerdict(stem, status=status, message=message)
    for name in (course.exercises if course else []):
        verdict.exercises[name] = ExerciseVerdict(name, stem, messages=[message])
    return verdict


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hidden_seed(secret: bytes, digest: str) -> int:
    """The hidden checks' seed for one submitted file: secret (the grader's, never in a
    kernel before the judging cells), yet the same for the same file, so that grading a
    notebook twice gives the same verdict."""
    return int.from_bytes(hmac.new(secret, digest.encode(), hashlib.sha256).digest()[:8], "big")


async def judge_file(path: Path, root: Path, limits: Limits, *,
                     course: CourseNotebook | None = None,
                     on_kernel: Callable[[int | None], None] | None = None,
                     run_gate: contextlib.AbstractAsyncContextManager | None = None,
                     secret: bytes | None = None) -> NotebookVerdict:
    """Judge the notebook at ``path`` against the course at ``root``.

    With ``secret`` (the grader's), the hidden checks draw their inputs from
    ``hidden_seed(secret, the file's digest)``.

    Raises UnusableInput when ``path`` is not a notebook or not one of the
    course's exercise notebooks (the grader turns that into a verdict).
    """
    stem = notebook_stem(path)
    if not path.exists():
        raise UnusableInput(f"{path}: no such file")
    if not path.name.endswith(".ipynb"):
        raise UnusableInput(f"{path.name}: not a notebook (the name does not end in .ipynb)")
    course = course or load_course_notebook(stem, root)
    learner = read_notebook(path)
    digest = file_digest(path)
    seed = hidden_seed(secret, digest) if secret is not None else None
    verdict = await judge_notebook(learner, course, limits, on_kernel=on_kernel,
                                   run_gate=run_gate, seed=seed)
    verdict.source = str(path)
    verdict.sha256 = digest
    verdict.key = f"{verdict.sha256[:32]}-{course.digest}"
    return verdict


def png_bytes(verdict: ExerciseVerdict) -> bytes | None:
    return base64.b64decode(verdict.png) if verdict.png else None
