"""asynclab: the helper package of the interactive asyncio course.

What notebooks import (once, in their setup cell):

* ``trace``, ``traced``: record tasks and draw their timeline (``asynclab.timeline``)
* ``run_virtual``: run a coroutine on virtual time (``asynclab.vtime``)
* ``check``: judge an exercise (``asynclab.checks``)
* ``timing``: say how long something took, stably (``asynclab.measure``)
"""

from asynclab.checks import check
from asynclab.measure import Stopwatch, timing
from asynclab.timeline import Timeline, trace, traced
from asynclab.vtime import HangError, run_virtual

__all__ = ["check", "trace", "traced", "Timeline", "run_virtual", "HangError", "Stopwatch",
           "timing"]
__version__ = "0.1.0"
