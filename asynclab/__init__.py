"""asynclab: the helper package of the interactive asyncio course.

What notebooks import (once, in their setup cell):

* ``trace``, ``traced``: record tasks and draw their timeline (``asynclab.timeline``)
* ``run_virtual``: run a coroutine on virtual time (``asynclab.vtime``)
* ``check``: judge an exercise (``asynclab.checks``)
* ``timing``: say how long something took, stably (``asynclab.measure``)

Each is imported from its module on first use (PEP 562), so that the ``asynclab`` command,
which lives in this package too, starts without loading them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each exported name, and the module it is loaded from on first use.
_HOME = {"check": "asynclab.checks", "trace": "asynclab.timeline", "traced": "asynclab.timeline",
         "Timeline": "asynclab.timeline", "run_virtual": "asynclab.vtime",
         "HangError": "asynclab.vtime", "Stopwatch": "asynclab.measure",
         "timing": "asynclab.measure"}
__all__ = list(_HOME)

if TYPE_CHECKING:  # pragma: no cover
    from asynclab.checks import check
    from asynclab.measure import Stopwatch, timing
    from asynclab.timeline import Timeline, trace, traced
    from asynclab.vtime import HangError, run_virtual


def __getattr__(name: str) -> Any:
    try:
        home = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'asynclab' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
