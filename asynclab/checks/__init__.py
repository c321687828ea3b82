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

import importlib
import pkgutil
from functools import lru_cache
from typing import Any, Callable

from asynclab.checking import Report

__all__ = ["check", "registry", "exercises_for", "notebook_stems", "CheckFn"]

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


def exercises_for(notebook: str) -> dict[str, CheckFn]:
    """The checks of one notebook (by stem, e.g. ``"05_semaphore"``); empty if none.

    Imports that notebook's module only (some import heavy libraries: aiohttp, for one).
    """
    if notebook not in notebook_stems():
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
