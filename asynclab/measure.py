"""Measure real durations, print them, and compare them with a prediction.

``timing(elapsed, expect_s=2.0)`` prints the measured figure first, then the
prediction it taught and the tolerance: ``took 2.03 s: about 2 s, as predicted
(within ±500 ms)``, or ``took 3.40 s: slower than the 2 s predicted, beyond the
±500 ms tolerance``. The verdict, not the digits, is what stays the same from
run to run: the course's tests mask the measured figure (the ``took 2.03 s:``
part, see tests/sanitize.cfg) and compare the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Stopwatch", "timing"]


@dataclass
class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.elapsed`` (seconds, ``perf_counter``)."""

    start: float = 0.0
    elapsed: float = 0.0

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def _fmt(seconds: float) -> str:
    """A prediction or tolerance, as the lesson states it: ``50 ms``, ``2 s``, ``1.05 s``."""
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:g} s"


def _measured(seconds: float) -> str:
    """A measured figure, to three significant digits or so: ``48.6 ms``, ``203 ms``, ``2.03 s``."""
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def timing(elapsed_s: float, expect_s: float, rel_tol: float = 0.25, abs_tol_s: float = 0.15) -> str:
    """The measured duration, and how it compares with the predicted one.

    The tolerance is ``max(rel_tol * expect_s, abs_tol_s)``: pick it as tight as
    the lesson's claim needs (wide enough for a loaded machine, narrow enough
    that the claim could fail). After the measured figure, the text depends
    only on the prediction, the tolerance and which side of it the figure fell.
    """
    tolerance = max(rel_tol * expect_s, abs_tol_s)
    measured = f"took {_measured(elapsed_s)}: "
    if abs(elapsed_s - expect_s) <= tolerance:
        return f"{measured}about {_fmt(expect_s)}, as predicted (within ±{_fmt(tolerance)})"
    side = "slower" if elapsed_s > expect_s else "faster"
    return (f"{measured}{side} than the {_fmt(expect_s)} predicted, "
            f"beyond the ±{_fmt(tolerance)} tolerance")
