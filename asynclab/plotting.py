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
WAIT_COLOR = "#c6dbef"  # waiting on I/O or a timer
THREAD_COLOR = "#c7e9c0"  # waiting for a call in a thread or process (an executor)
SLOT_COLOR = "#fdae6b"  # waiting for a slot: lock, semaphore, queue, event
TASKS_COLOR = "#d9d9d9"  # waiting for other tasks
LIMIT_COLOR = "#d62728"
DEADLINE_COLOR = "#7b3294"
# state: (face colour, hatch, legend text), in legend order; a hatch is drawn in its edge colour
WAIT_STYLE = {
    "io": (WAIT_COLOR, None, "waiting on I/O or a timer"),
    "thread": (THREAD_COLOR, "...", "waiting for a thread or process"),
    "slot": (SLOT_COLOR, "////", "waiting for a slot (lock, semaphore, queue)"),
    "tasks": (TASKS_COLOR, None, "waiting for other tasks"),
}
OUTCOME_STYLE = {
    # outcome: (marker, colour, legend text)
    "finished": ("|", "#2ca02c", "finished"),
    "failed": ("X", "#d62728", "failed"),
    "cancelled": ("s", "#ff7f0e", "cancelled"),
}
# the colour of each hatch: darker than its face
HATCH_EDGE = {"thread": "#31a354", "slot": "#e6550d"}
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
    """Number repeated names ("fetch #1", "fetch #2") so every row is distinct.

    The course's one convention for row labels, in every lesson, solution and check:

    * a row is labelled with its task's coroutine name (``fetch_one``, ``FakeService.fetch``),
      which is what the learner can find in the code;
    * a task is given a name (``create_task(..., name=...)``, ``traced(..., name=...)``) only when
      the lesson tells that task apart by something of its own: what it books ("hotel"), the page
      or record it loads ("page 2", "record 20"), a role ("loader", "join()");
    * ordinals are never written by hand: tasks that differ only by when they were made share a
      name, and this function numbers them, from 1, in the order they were created.
    """
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


def time_unit(span_s: float, unit: str | None = None) -> tuple[str, float]:
    """Milliseconds for short spans and seconds otherwise, unless ``unit`` says which."""
    if unit is not None:
        return (unit, {"ms": 1000.0, "s": 1.0}[unit])
    return ("ms", 1000.0) if span_s < 2.0 else ("s", 1.0)


def draw_deadline(ax, at: float, label: str = "deadline") -> None:
    """A deadline, drawn the same way in every chart: a dashed purple vertical line, labelled
    just above the plot (left of the line when it is in the right half, so it stays inside)."""
    ax.axvline(at, color=DEADLINE_COLOR, linestyle="--", linewidth=1.5, zorder=2.5)
    low, high = ax.get_xlim()
    right_half = at > low + 0.55 * (high - low)
    ax.annotate(label, xy=(at, 1.0), xycoords=("data", "axes fraction"),
                xytext=(-3 if right_half else 3, 1), textcoords="offset points", va="bottom",
                ha="right" if right_half else "left", fontsize="small", color=DEADLINE_COLOR)


def draw_timeline(timeline: "Timeline", title: str | None = None, width: float = 7.0, *,
                  in_flight: bool = False, limit: int | None = None,
                  deadline: "float | dict[str, float] | None" = None,
                  unit: str | None = None) -> Figure:
    """One row per task: dark while it runs, and while it waits, a look that says why.

    Waiting for a slot (lock, semaphore, queue) is hatched orange, waiting on I/O or a timer
    pale blue, waiting for a call in a thread or process dotted green, waiting for other tasks
    grey; a marker shows how the task ended. With ``in_flight``, a panel under the rows counts
    the tasks in flight (running, or waiting on I/O, a timer, a thread or a process) at each
    moment, with ``limit`` as a dashed line. ``deadline`` (seconds from the start
    of the trace, or ``{label: seconds}`` for several) draws each as a labelled dashed purple
    line, the same way in every lesson. With more than ``MAX_ROWS`` tasks,
    the first ``MAX_ROWS`` are drawn and the title says how many were left out.
    """
    records = timeline.records[:MAX_ROWS]
    hidden = len(timeline.records) - len(records)
    t0 = timeline.t0
    span = max(timeline.elapsed, 1e-9)
    unit, scale = time_unit(span, unit)
    rows_height = 1.1 + 0.32 * max(len(records), 2)  # room for a title, axis and legend
    panel_height = 1.3 if in_flight else 0.0
    fig = Figure(figsize=(width, min(rows_height + panel_height, 12.0)), layout="constrained")
    if in_flight:
        ax, flight_ax = fig.subplots(2, 1, sharex=True,
                                     gridspec_kw={"height_ratios": [rows_height, panel_height]})
    else:
        ax, flight_ax = fig.add_subplot(), None
    # Running stretches narrower than this fraction of the span are widened so they stay visible.
    min_width = span * scale / 400
    labels = row_labels([r.name for r in records])
    end_of_trace = t0 + span
    used_waits: set[str] = set()
    for row, rec in enumerate(records):
        y = len(records) - 1 - row
        end = (rec.ended if rec.ended is not None else end_of_trace) - t0
        for state in WAIT_STYLE:
            bars = [((s - t0) * scale, (e - s) * scale)
                    for s, e, kind in rec.spans(until=end_of_trace) if kind == state and e > s]
            if bars:
                colour, hatch, _ = WAIT_STYLE[state]
                used_waits.add(state)
                ax.broken_barh(bars, (y - 0.3, 0.6), facecolors=colour, hatch=hatch,
                               edgecolor=HATCH_EDGE.get(state, colour), linewidth=0)
        runs = [((s - t0) * scale, max((e - s) * scale, min_width)) for s, e in rec.steps]
        ax.broken_barh(runs, (y - 0.3, 0.6), facecolors=RUN_COLOR)
        if rec.outcome in OUTCOME_STYLE:
            marker, colour, _ = OUTCOME_STYLE[rec.outcome]
            ax.plot([end * scale], [y], marker=marker, color=colour, markersize=9, mew=2,
                    linestyle="none", zorder=3)
    ax.set_yticks(range(len(records)), labels[::-1])
    ax.set_ylim(-0.7, len(records) - 0.3)
    clock = "virtual time" if timeline.virtual else "time"
    xlabel = f"{clock} ({unit})"
    # A trace whose tasks all start late (the set-up before the first task took most of the
    # span) would leave the plot mostly empty: start the axis just before the first task.
    first = min(((r.started if r.started is not None else r.created) - t0 for r in records),
                default=0.0)
    left = first - 0.05 * (span - first) if first > 0.3 * span else 0.0
    # ... and end it soon after the last row ends (the trace may go on after its tasks).
    last = max(((r.ended if r.ended is not None else t0 + span) - t0 for r in records),
               default=span)
    right = last if left < last < 0.9 * span else span
    ax.set_xlim(left * scale, right * scale * 1.03)
    ax.grid(axis="x", alpha=0.3)
    deadlines = ({} if deadline is None else
                 dict(deadline) if isinstance(deadline, dict) else {"deadline": deadline})
    if deadlines and max(deadlines.values()) * scale > ax.get_xlim()[1] * 0.97:
        ax.set_xlim(left * scale, max(deadlines.values()) * scale * 1.05)
    for label, at in deadlines.items():
        draw_deadline(ax, at * scale, label)
    if flight_ax is not None:
        times, counts = timeline.in_flight()
        xs = [t * scale for t in times] + [span * scale]
        ys = counts + counts[-1:]
        top = max(max(counts), limit or 0)
        if limit is not None:
            flight_ax.axhline(limit, color=LIMIT_COLOR, linestyle="--", linewidth=1, zorder=1)
            flight_ax.annotate(f"limit {limit}", xy=(1.0, limit), xycoords=("axes fraction", "data"),
                               xytext=(3, 0), textcoords="offset points", va="center",
                               fontsize="small", color=LIMIT_COLOR)
        flight_ax.step(xs, ys, where="post", color=RUN_COLOR, linewidth=2, zorder=3)
        flight_ax.set_ylim(-0.2, top * 1.25 + 0.5)
        flight_ax.set_ylabel("in flight", fontsize="small")
        flight_ax.grid(alpha=0.3)
        for at in deadlines.values():
            flight_ax.axvline(at * scale, color=DEADLINE_COLOR, linestyle="--", linewidth=1.5)
        flight_ax.set_xlabel(xlabel)
    else:
        ax.set_xlabel(xlabel)
    handles = [Patch(color=RUN_COLOR, label="running")]
    for state, (colour, hatch, text) in WAIT_STYLE.items():
        if state in used_waits:
            handles.append(Patch(facecolor=colour, hatch=hatch,
                                 edgecolor=HATCH_EDGE.get(state, colour), linewidth=0, label=text))
    used = {r.outcome for r in records}
    for outcome, (marker, colour, text) in OUTCOME_STYLE.items():
        if outcome in used:
            handles.append(Line2D([], [], marker=marker, color=colour, linestyle="none",
                                  mew=2, label=text))
    fig.legend(handles=handles, loc="outside lower center",
               ncol=len(handles) if len(handles) <= 4 and width >= 6.5 else 3,
               frameon=False, fontsize="small")
    if hidden:
        title = f"{title + ' - ' if title else ''}first {len(records)} of {len(timeline.records)} tasks"
    if title:
        # room above the plot for the deadlines' labels
        ax.set_title(title, fontsize="medium", pad=14 if deadlines else 6)
    return fig


def draw_steps(times: Sequence[float], values: Sequence[float], *, title: str, ylabel: str,
               xlabel: str = "time (s)", limit: float | None = None, width: float = 7.0) -> Figure:
    """A step chart (for example tasks in flight over time), with an optional limit line."""
    fig = Figure(figsize=(width, 2.4), layout="constrained")
    ax = fig.add_subplot()
    # The series is drawn above the limit line, thicker, so that running at the limit shows.
    ax.step(times, values, where="post", color=RUN_COLOR, linewidth=2, zorder=3)
    top = max(list(values) + ([limit] if limit is not None else []) + [0])
    ax.set_ylim(-0.05 * top - 0.2, top * 1.2 + 0.5)
    if limit is not None:
        ax.axhline(limit, color=LIMIT_COLOR, linestyle="--", linewidth=1, zorder=1)
        ax.annotate(f"limit {limit:g}", xy=(1.0, limit), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize="small",
                    color=LIMIT_COLOR)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig
