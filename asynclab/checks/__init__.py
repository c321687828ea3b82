"""The course's exercise checks, one module per notebook.

Each module ``asynclab.checks.nbNN_slug`` declares::

    NOTEBOOK = "NN_slug"                 # the notebook's file name, without .ipynb
    EXERCISES = {"fn_name": check_fn}    # the function the learner writes -> its check

and every check has the signature ``check_fn(fn, *, variant="public", seed=None) -> Report``.
``variant="hidden"`` runs other inputs (other sizes, limits and latencies) that
are not shown in the notebooks, drawn from ``random.Random(seed)`` (a fixed
default when ``seed`` is None); the grader uses both. Every check runs its
scenarios more than once (``asynclab.checking.varied``), settling what asyncio
leaves to chance differently each time, and passes only if every run passes.

In a notebook, the check cell after an exercise is simply::

    check(fetch_all_urls)
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from asynclab.findings import Report

__all__ = ["check", "registry", "exercises_for", "exercise_names", "module_file",
           "notebook_stems", "parse_python", "CheckFn"]

CheckFn = Callable[..., Report]


@lru_cache(maxsize=1)
def registry() -> dict[str, dict[str, CheckFn]]:
    """``{notebook: {exercise: check}}`` for every checks module in this package."""
    found: dict[str, dict[str, CheckFn]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("nb"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.NOTEBOOK] = dict(module.EXERCISES)
    return found


def notebook_stems() -> list[str]:
    """The stem of every notebook that has checks, in course order, importing none of them:
    the module of notebook ``NN_slug`` is ``nbNN_slug`` (a test holds every module to it)."""
    return sorted(info.name[2:] for info in pkgutil.iter_modules(__path__)
                  if info.name.startswith("nb"))


_PARSING = threading.Lock()


def parse_python(source: str) -> ast.Module | None:
    """``ast.parse(source)``, or None when it cannot be parsed (a syntax error, a null byte, an
    expression nested too deep for the parser), one thread at a time: on CPython 3.11 two
    threads parsing at once can fail with "SystemError: AST constructor recursion depth
    mismatch" (python/cpython#106905), and the grader's Dask workers judge in threads."""
    with _PARSING:
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None


def module_file(notebook: str) -> Path | None:
    """The source file of notebook ``notebook``'s checks module (None: it has none)."""
    if notebook not in notebook_stems():
        return None
    return Path(__file__).resolve().parent / f"nb{notebook}.py"


def exercise_names(notebook: str) -> list[str]:
    """The exercises of one notebook, in order, read from its module's ``EXERCISES`` without
    importing it: the grader needs only the names, and the module would bring virtual time,
    pytest and, for some notebooks, aiohttp. Keys are strings or module-level string
    constants; a test holds this to ``exercises_for`` for every module."""
    path = module_file(notebook)
    if path is None:
        return []
    constants: dict[str, str] = {}
    tree = parse_python(path.read_text(encoding="utf-8"))
    for node in tree.body if tree is not None else []:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        target, value = node.targets[0].id, node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[target] = value.value
        elif target == "EXERCISES" and isinstance(value, ast.Dict):
            try:
                return [key.value if isinstance(key, ast.Constant) else constants[key.id]
                        for key in value.keys]  # type: ignore[union-attr]
            except (AttributeError, KeyError):
                break
    raise LookupError(f"{path.name}: EXERCISES must be a dict whose keys are strings or "
                      "module-level string constants")


def exercises_for(notebook: str) -> dict[str, CheckFn]:
    """The checks of one notebook (by stem, e.g. ``"05_semaphore"``); empty if none.

    Imports that notebook's module only (some import heavy libraries: aiohttp, for one).
    """
    if module_file(notebook) is None:
        return {}
    module = importlib.import_module(f"{__name__}.nb{notebook}")
    return dict(module.EXERCISES)


def _find(name: str) -> CheckFn:
    for checks in registry().values():
        if name in checks:
            return checks[name]
    known = sorted(n for checks in registry().values() for n in checks)
    raise LookupError(f"there is no exercise called {name!r}; the exercises are: {', '.join(known)}")


def check(fn: Any, *, name: str | None = None, variant: str = "public",
          seed: int | None = None) -> Report:
    """Judge the learner's function ``fn`` with the course's check for it.

    The exercise is found by the function's name (or ``name``). Returns a
    ``Report``; in a notebook it shows itself as a list of passed and failed
    properties, with hints, and the timeline of the run.
    """
    exercise = name or getattr(fn, "__name__", None)
    if not exercise:
        raise TypeError("check() needs the function you wrote, for example check(fetch_all_urls)")
    return _find(exercise)(fn, variant=variant, seed=seed)
