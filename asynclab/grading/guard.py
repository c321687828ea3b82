"""The judge that runs *inside* the learner's kernel (``asynclab check`` and ``asynclab grade``).

The host side (``asynclab.grading.judge``) builds the notebook it executes like this:

1. a first cell, run before any learner code, calls ``install(...)``: it
   imports the course package, captures the course's own check functions for
   this notebook and takes a *fingerprint* of everything a check relies on;
2. the course's cells, with the learner's answer cells in place of the course's
   (check cells dropped: the learner may have edited them);
3. one judging cell per exercise, never shown to the learner, which calls the
   closure returned by ``install``.

The judge verifies the fingerprint before and after running the checks, runs
the captured checks (not whatever ``asynclab.checks`` holds by then) on the
function found in the notebook's namespace, and writes one JSON document to a
file whose path, and a nonce it must contain, the host chose at run time.

What the fingerprint covers (a change to any of these is reported as tampering
and the whole notebook gets no credit):

* every function, class method and constant of every loaded ``asynclab``
  module, including this notebook's checks module and its ``EXERCISES`` table
  (identity, ``__code__``, default values);
* the functions and classes of ``asyncio`` (all submodules), ``looptime``,
  ``time``, ``threading``, ``heapq``, ``random``, ``functools``, ``inspect``,
  ``warnings``, ``gc``, ``contextvars``, ``contextlib``, ``dataclasses``,
  ``json``, ``base64``, ``math``, ``types`` and ``builtins``;
* which module object ``sys.modules`` holds for each of them;
* trace and profile functions (``sys.settrace``, ``threading.settrace``),
  import hooks (``sys.meta_path``), and IPython's input transformers, AST
  transformers and pre/post-run callbacks added by notebook code.

Known limits, stated honestly. The learner's code runs in the same process as
the judge, so code written *against this judge* can still forge a pass: it can
reach the judge's own state through ``gc`` or frames, change objects the check
creates while it runs (``fetch.__self__``, the fake service), patch C-level
state with ``ctypes``, or race the result file from a thread after the judge
has written it (it would need the nonce, which is only in the judging cell's
code). The host flags answer cells that use such tools (frames, ``gc``,
``ctypes``, ``setattr`` on modules, ``globals()``...) for the instructor's
review, and re-executes everything, so forged outputs and edited check cells
are never trusted. What the learner's code can reach outside its kernel (the other
learners' work, the gradebook, the grader's processes, the network) is closed by the
sandbox ``asynclab grade`` starts every kernel in (``asynclab.grading.sandbox``).
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import types
from typing import Any, Callable

__all__ = ["install", "snapshot", "compare"]

# Packages fingerprinted with all their loaded submodules, and single modules.
WATCHED_PACKAGES = ("asynclab", "asyncio", "looptime")
WATCHED_MODULES = ("time", "threading", "heapq", "random", "functools", "inspect", "warnings",
                   "gc", "contextvars", "contextlib", "dataclasses", "json", "base64", "math",
                   "types", "builtins", "_asyncio")
# The host's own modules never run in the kernel and import heavy packages.
HOST_ONLY = ("asynclab.cli", "asynclab.grading.judge", "asynclab.grading.command",
             "asynclab.grading.report", "asynclab.grading.kernel", "asynclab.grading.kernel_process",
             "asynclab.grading.sandbox", "asynclab.grading.cluster")
# Values that change legitimately while a notebook runs.
VOLATILE = {("builtins", "_"), ("builtins", "__"), ("builtins", "___"),
            ("builtins", "input"), ("builtins", "raw_input")}  # ipykernel sets input per request
# IPython and plotting libraries register callbacks of their own (matplotlib's inline backend).
TRUSTED_CALLBACK_MODULES = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline",
                            "ipywidgets", "comm", "jupyter")
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: built-in types cannot be patched anyway
_PLAIN_VALUES = (int, float, str, bytes, bool, type(None), complex)


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN_VALUES):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_is_plain(v) for v in value)
    return False


def _function_print(fn: Any) -> tuple:
    """Identity, code, defaults: what a monkeypatch of a Python function changes."""
    kwdefaults = getattr(fn, "__kwdefaults__", None)
    return ("fn", id(fn), id(getattr(fn, "__code__", None)), id(getattr(fn, "__defaults__", None)),
            tuple(sorted((k, id(v)) for k, v in kwdefaults.items())) if kwdefaults else None)


def _member_print(value: Any) -> tuple:
    if isinstance(value, types.FunctionType):
        return _function_print(value)
    if isinstance(value, (classmethod, staticmethod)):
        return ("wrapped", id(value), _member_print(value.__func__))
    if isinstance(value, property):
        return ("property", id(value), *(_member_print(f) if f else None
                                          for f in (value.fget, value.fset, value.fdel)))
    wrapped = getattr(value, "__wrapped__", None)  # lru_cache, functools.wraps
    if isinstance(wrapped, types.FunctionType):
        return ("wrapper", id(value), _function_print(wrapped))
    return ("id", id(value))


def _class_print(cls: type) -> tuple:
    if cls.__flags__ & _IMMUTABLE_TYPE:
        return ("type", id(cls))
    members = tuple(sorted((name, _member_print(v)) for name, v in list(vars(cls).items())
                           if callable(v) or isinstance(v, (classmethod, staticmethod, property))))
    return ("class", id(cls), members)


def _value_print(value: Any, deep: bool) -> tuple | None:
    """How one module attribute is fingerprinted (None: not watched)."""
    if isinstance(value, types.ModuleType):
        return ("module", id(value))
    if isinstance(value, type):
        return _class_print(value)
    if callable(value):
        return _member_print(value)
    if not deep:  # other modules' data changes legitimately (caches, registries, state)
        return None
    if _is_plain(value):
        return ("value", repr(value))
    if isinstance(value, dict):  # e.g. EXERCISES: which function checks which exercise
        return ("dict", id(value), tuple(sorted((repr(k), id(v)) for k, v in list(value.items()))))
    return ("id", id(value))


def _watched_modules() -> list[str]:
    names = []
    for name in list(sys.modules):
        if name in HOST_ONLY:
            continue
        if name in WATCHED_MODULES or any(name == p or name.startswith(p + ".")
                                          for p in WATCHED_PACKAGES):
            names.append(name)
    return sorted(names)


def _made_in_notebook(obj: Any) -> bool:
    """Defined by code typed in the notebook (``__main__``), not by a library."""
    owner = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None)
    return owner == "__main__" or getattr(type(obj), "__module__", None) == "__main__"


def _callback_owner(callback: Any) -> str:
    return getattr(callback, "__module__", None) or type(callback).__module__ or "?"


def _hooks() -> dict[str, Any]:
    """Interpreter and IPython hooks through which code could rewrite or watch the judge."""
    found: dict[str, Any] = {
        "sys.settrace": repr(sys.gettrace()) if sys.gettrace() else None,
        "sys.setprofile": repr(sys.getprofile()) if sys.getprofile() else None,
        "threading.settrace": id(getattr(threading, "_trace_hook", None))
        if getattr(threading, "_trace_hook", None) else None,
        "threading.setprofile": id(getattr(threading, "_profile_hook", None))
        if getattr(threading, "_profile_hook", None) else None,
        # Import hooks the notebook's own code installed (libraries may add theirs).
        "sys.meta_path": frozenset(id(f) for f in sys.meta_path if _made_in_notebook(f)),
    }
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        shell = None
    if shell is not None:
        for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            found[f"IPython {attr}"] = tuple(id(t) for t in getattr(shell, attr, []))
        callbacks = getattr(getattr(shell, "events", None), "callbacks", {})
        for event, registered in callbacks.items():
            found[f"IPython {event} callbacks"] = frozenset(
                id(cb) for cb in registered
                if not _callback_owner(cb).startswith(TRUSTED_CALLBACK_MODULES))
    return found


def snapshot() -> dict[str, Any]:
    """The fingerprint: ``{"module.attr": print}`` plus hooks; cheap enough to take twice."""
    prints: dict[str, Any] = {}
    for name in _watched_modules():
        module = sys.modules.get(name)
        if module is None:
            continue
        prints[f"sys.modules[{name!r}]"] = id(module)
        deep = name == "asynclab" or name.startswith("asynclab.")
        for attr, value in list(vars(module).items()):
            if (name, attr) in VOLATILE or (attr.startswith("__") and attr.endswith("__")):
                continue
            fp = _value_print(value, deep)
            if fp is not None:
                prints[f"{name}.{attr}"] = fp
    for key, value in _hooks().items():
        prints[f"hook {key}"] = value
    return prints


def _allowed(key: str, now: Any, allowed: dict[str, set]) -> bool:
    return now in allowed.get(key, ())


def compare(before: dict[str, Any], after: dict[str, Any],
            allowed: dict[str, set] | None = None) -> list[str]:
    """What changed (or disappeared) since ``before``, as readable names; [] when nothing did."""
    allowed = allowed or {}
    changed = []
    for key, value in before.items():
        now = after.get(key, "<missing>")
        if now != value and not _allowed(key, now, allowed):
            changed.append(key)
    for key, value in after.items():  # hooks added by notebook code
        if key.startswith("hook ") and key not in before and value:
            changed.append(key)
    return sorted(changed)


def describe_tampering(changed: list[str], shown: int = 3) -> str:
    """``tampering detected: your code replaced asynclab.checks.nb05_semaphore.check_...; no credit``."""
    hooks = [c[5:] for c in changed if c.startswith("hook ")]
    # Names of functions first (check_fetch_all_urls), then data (EXERCISES), then hooks.
    names = sorted((c for c in changed if not c.startswith("hook ")),
                   key=lambda c: (c.split("[")[0].rsplit(".", 1)[-1].isupper(), c))
    parts = []
    if names:
        parts.append("replaced " + ", ".join(names[:shown]))
    if hooks:
        parts.append("installed " + ", ".join(hooks[:shown]))
    more = len(changed) - min(len(names), shown) - min(len(hooks), shown)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"tampering detected: your code {' and '.join(parts)}{tail}; no credit"


def _checks_module(notebook: str) -> types.ModuleType:
    """``asynclab.checks.nbNN_slug`` for notebook ``NN_slug`` (the registry's convention).

    Only this notebook's checks are imported: importing all of them (the
    registry) would cost every kernel the imports of every lesson's fakes.
    """
    import importlib

    try:
        module = importlib.import_module(f"asynclab.checks.nb{notebook}")
        if getattr(module, "NOTEBOOK", None) == notebook:
            return module
    except ImportError:
        pass
    from asynclab.checks import registry

    known = registry()  # imports every checks module
    for name, module in list(sys.modules.items()):
        if name.startswith("asynclab.checks.nb") and getattr(module, "NOTEBOOK", None) == notebook:
            return module
    raise LookupError(f"no checks module declares NOTEBOOK = {notebook!r} "
                      f"(the course has: {', '.join(sorted(known))})")


def install(notebook: str, exercises: list[str], namespace: dict[str, Any],
            idle_report: str | None = None, plots: bool = True) -> Callable[..., None]:
    """Capture the course's checks and the fingerprint; return the judge for this notebook.

    Must run before any learner code. ``namespace`` is the notebook's global
    namespace, where the learner's definitions will be looked up by name. With
    ``idle_report`` (in the sandbox), the kernel says there when it waits for ever
    (``asynclab.grading.idle``). ``plots``: the judge will draw timelines (matplotlib is
    imported now, before the fingerprint; without it, only if the notebook itself draws).
    """
    import asynclab
    import asynclab.blocking
    import asynclab.checking  # noqa: F401
    import asynclab.fakes  # noqa: F401
    if plots:
        import asynclab.plotting  # noqa: F401  (drawn lazily by Timeline.png)
    for name in asynclab.__all__:  # loaded on first use: loaded now, to be fingerprinted
        getattr(asynclab, name)
    checks_module = _checks_module(notebook)
    checks = dict(checks_module.EXERCISES)
    if idle_report:
        from asynclab.grading import idle

        idle.start_reports(idle_report)
    before = snapshot()
    # time.sleep is swapped for the blocking detector's stand-in while a check runs.
    allowed = {"time.sleep": {_value_print(asynclab.blocking._detecting_sleep, False)}}
    dumps, b64encode, perf_counter, open_file = json.dumps, base64.b64encode, time.perf_counter, open

    def exercises_intact() -> list[str]:
        current = getattr(sys.modules.get(checks_module.__name__), "EXERCISES", {})
        return [f"{checks_module.__name__}.EXERCISES[{name!r}]" for name, fn in checks.items()
                if current.get(name) is not fn]

    def tampering() -> list[str]:
        return sorted(set(compare(before, snapshot(), allowed) + exercises_intact()))

    def judge(exercise: str, variants: tuple[str, ...], result_path: str, nonce: str,
              want_png: bool = True, seed: int | None = None) -> None:
        """Judge one exercise and write the verdict to ``result_path`` (which must not exist).

        ``seed`` draws the hidden check's inputs: the grader puts it in this judging cell only,
        which runs after the learner's code, so reading the course package does not reveal them.
        """
        started = perf_counter()
        verdict: dict[str, Any] = {"nonce": nonce, "exercise": exercise, "tampering": [],
                                   "defined": True, "reports": {}, "errors": [], "warnings": [],
                                   "png": None, "skipped": []}
        changed = tampering()
        if changed:
            verdict["tampering"] = changed
        elif exercise not in checks:
            verdict["errors"].append(f"the course has no check for {exercise}")
        elif exercise not in namespace:
            verdict["defined"] = False
        else:
            fn = namespace[exercise]
            for variant in variants:
                try:
                    report = checks[exercise](fn, variant=variant, seed=seed)
                except BaseException as exc:  # noqa: BLE001 - learner code may raise anything
                    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    verdict["errors"].append(f"the {variant} check stopped with {text}")
                    break
                verdict["reports"][variant] = report.to_dict()
                if want_png and verdict["png"] is None and report.timeline is not None \
                        and report.timeline.records:
                    try:
                        png = report.timeline.png(title=f"your {exercise}: what each task did")
                        verdict["png"] = b64encode(png).decode("ascii")
                    except Exception as exc:  # noqa: BLE001 - a drawing problem costs no points
                        verdict["warnings"].append(f"the timeline could not be drawn: {exc}")
                if not report.passed:  # the hidden check only counts once the public one passes
                    verdict["skipped"] = [v for v in variants if v not in verdict["reports"]]
                    break
            verdict["tampering"] = tampering()
        verdict["duration_s"] = round(perf_counter() - started, 3)
        with open_file(result_path, "x", encoding="utf-8") as out:
            out.write(dumps(verdict, default=str))

    return judge
