"""Measure real durations and say them in a way that is stable from run to run.

A lesson that prints ``took 2.0031 s`` prints something else on every run. A
lesson should instead compare the measurement with the prediction it taught,
within a stated tolerance: ``timing(elapsed, expect_s=2.0)`` says
``took about 2 s, as predicted`` when the measurement is within the tolerance
(the same text every run), and otherwise gives the real figure and says that
it differs, which is exactly what a learner (and a test) should notice.
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
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:g} s"


def timing(elapsed_s: float, expect_s: float, rel_tol: float = 0.25, abs_tol_s: float = 0.15) -> str:
    """Compare a measured duration with the predicted one.

    Within ``max(rel_tol * expect_s, abs_tol_s)`` of the prediction, the text
    depends only on ``expect_s``; outside it, the real figure is shown.
    """
    tolerance = max(rel_tol * expect_s, abs_tol_s)
    if abs(elapsed_s - expect_s) <= tolerance:
        return f"took about {_fmt(expect_s)}, as predicted (within ±{_fmt(tolerance)})"
    side = "slower" if elapsed_s > expect_s else "faster"
    return (f"took {elapsed_s:.3f} s: {side} than the {_fmt(expect_s)} predicted, "
            f"beyond the ±{_fmt(tolerance)} tolerance")
