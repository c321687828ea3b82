"""Draw timelines and small course charts with matplotlib.

Figures are built with ``matplotlib.figure.Figure`` directly rather than
``pyplot``, so drawing never registers a figure with the notebook's inline
backend (no duplicate plots) and works in threads and scripts alike.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

if TYPE_CHECKING:  # pragma: no cover
    from asynclab.timeline import Timeline

RUN_COLOR = "#1f77b4"
WAIT_COLOR = "#c6dbef"
OUTCOME_STYLE = {
    # outcome: (marker, colour, legend text)
    "finished": ("|", "#2ca02c", "finished"),
    "failed": ("X", "#d62728", "failed"),
    "cancelled": ("s", "#ff7f0e", "cancelled"),
}
MAX_ROWS = 40
DPI = 80  # small figures: notebooks are committed with their outputs


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def show(fig: Figure) -> None:
    """Display a figure in a notebook as a PNG (works without any matplotlib backend set up)."""
    from IPython.display import Image, display

    display(Image(figure_png(fig)))


def row_labels(names: Sequence[str]) -> list[str]:
    """Number repeated names ("fetch #1", "fetch #2") so every row is distinct."""
    totals = Counter(names)
    seen: Counter[str] = Counter()
    labels = []
    for name in names:
        if totals[name] > 1:
            seen[name] += 1
            labels.append(f"{name} #{seen[name]}")
        else:
            labels.append(name)
    return labels


def time_unit(span_s: float) -> tuple[str, float]:
    """Pick milliseconds for short spans and seconds otherwise."""
    return ("ms", 1000.0) if span_s < 2.0 else ("s", 1.0)


def draw_timeline(timeline: "Timeline", title: str | None = None, width: float = 7.0) -> Figure:
    """One row per task: pale while it waits, dark while it runs, a marker where it ends.

    With more than ``MAX_ROWS`` tasks, the first ``MAX_ROWS`` are drawn and the
    title says how many were left out.
    """
    records = timeline.records[:MAX_ROWS]
    hidden = len(timeline.records) - len(records)
    t0 = timeline.t0
    span = max(timeline.elapsed, 1e-9)
    unit, scale = time_unit(span)
    height = 0.9 + 0.32 * max(len(records), 1)
    fig = Figure(figsize=(width, min(height, 12.0)), layout="constrained")
    ax = fig.add_subplot()
    # Running stretches narrower than this fraction of the span are widened so they stay visible.
    min_width = span * scale / 400
    labels = row_labels([r.name for r in records])
    for row, rec in enumerate(records):
        y = len(records) - 1 - row
        begin = (rec.started if rec.started is not None else rec.created) - t0
        end = (rec.ended if rec.ended is not None else t0 + span) - t0
        ax.broken_barh([(begin * scale, max((end - begin) * scale, 0))], (y - 0.3, 0.6),
                       facecolors=WAIT_COLOR)
        runs = [((s - t0) * scale, max((e - s) * scale, min_width)) for s, e in rec.steps]
        ax.broken_barh(runs, (y - 0.3, 0.6), facecolors=RUN_COLOR)
        if rec.outcome in OUTCOME_STYLE:
            marker, colour, _ = OUTCOME_STYLE[rec.outcome]
            ax.plot([end * scale], [y], marker=marker, color=colour, markersize=9, mew=2,
                    linestyle="none")
    ax.set_yticks(range(len(records)), labels[::-1])
    ax.set_ylim(-0.7, len(records) - 0.3)
    clock = "virtual time" if timeline.virtual else "time"
    ax.set_xlabel(f"{clock} ({unit})")
    ax.set_xlim(0, span * scale * 1.03)
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=RUN_COLOR, label="running"), Patch(color=WAIT_COLOR, label="waiting")]
    used = {r.outcome for r in records}
    for outcome, (marker, colour, text) in OUTCOME_STYLE.items():
        if outcome in used:
            handles.append(Line2D([], [], marker=marker, color=colour, linestyle="none",
                                  mew=2, label=text))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False,
               fontsize="small")
    if hidden:
        title = f"{title + ' - ' if title else ''}first {len(records)} of {len(timeline.records)} tasks"
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def draw_steps(times: Sequence[float], values: Sequence[float], *, title: str, ylabel: str,
               xlabel: str = "time (s)", limit: float | None = None, width: float = 7.0) -> Figure:
    """A step chart (for example tasks in flight over time), with an optional limit line."""
    fig = Figure(figsize=(width, 2.4), layout="constrained")
    ax = fig.add_subplot()
    ax.step(times, values, where="post", color=RUN_COLOR)
    if limit is not None:
        ax.axhline(limit, color="#d62728", linestyle="--", label=f"limit = {limit:g}")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig
