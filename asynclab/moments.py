"""Label moments on a timeline: what a task did, and when (a read, a write, a decision).

A timeline (``asynclab.timeline``) shows when each task ran and when it waited,
but not *what* it did in each dark stretch. ``Moments`` lets the code say it::

    moments = Moments()

    async def withdraw(account, amount):
        balance = account.balance
        moments.note(f"read {balance}")
        ...

    with trace() as timeline:
        ...
    moments.show(timeline, "two withdrawals")

``note(label)`` records the loop's clock, the calling task and the label;
``figure(timeline)`` draws the timeline with each label on its task's row, at
its time. ``text()`` lists the same moments in order, one line each, which is
deterministic on virtual time (for printing, and for tests). Labels of one row at one
instant are drawn as one, joined with commas.

Guarantees: notes are kept in the order they were made; a note made outside a
traced task (or after its timeline ended) is kept in ``text()`` and skipped in
the figure; drawing never changes the timeline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asynclab.plotting import MAX_ROWS, draw_timeline, row_labels, show, time_unit
from asynclab.timeline import _ACTIVE  # the timeline being recorded (same package)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from asynclab.timeline import Timeline

__all__ = ["Moment", "Moments"]

MARK_COLOR = "#222222"


@dataclass
class Moment:
    """One labelled moment: when (loop clock), which task, and what."""

    at: float
    task_name: str
    label: str
    timeline: Any = None  # the Timeline being recorded when it was noted, if any
    row: int | None = None  # the noting task's row in that timeline


class Moments:
    """Labelled moments noted by tasks while they run, to draw on top of their timeline."""

    def __init__(self) -> None:
        self.items: list[Moment] = []

    def note(self, label: str) -> None:
        """Record ``label`` now, for the current task (call it from inside a coroutine)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        name = task.get_name() if task is not None else "-"
        timeline, row = _ACTIVE.get(), None
        if timeline is not None and task is not None:
            # Rows are matched now: trace() drops its references to the tasks when it ends.
            row = next((i for i, r in enumerate(timeline.records) if r.task is task), None)
            given = task.get_name()
            if row is not None and (given.startswith("Task-") or given == "None"):
                name = timeline.records[row].name  # unnamed task: its coroutine's name
        self.items.append(Moment(loop.time(), name, label, timeline, row))

    def clear(self) -> None:
        self.items.clear()

    def text(self, t0: float = 0.0) -> str:
        """One line per moment, in the order they were noted: ``0.00 s  Alice  read 100``.

        A moment noted inside a ``trace()`` block names its task by its row's label, as the
        figure does ("worker #2" when several tasks run ``worker``); others by the task's name.
        """
        labels: dict[int, list[str]] = {}
        for m in self.items:
            if m.timeline is not None and id(m.timeline) not in labels:
                labels[id(m.timeline)] = row_labels(m.timeline.names())
        who = [labels[id(m.timeline)][m.row] if m.timeline is not None and m.row is not None
               else m.task_name for m in self.items]
        width = max((len(name) for name in who), default=0)
        return "\n".join(f"{m.at - t0:6.2f} s  {name:<{width}}  {m.label}"
                         for m, name in zip(self.items, who))

    def figure(self, timeline: "Timeline", title: str | None = None,
               width: float = 7.0) -> "Figure":
        """The timeline, with each moment drawn as a small mark and its label on its row."""
        fig = draw_timeline(timeline, title=title, width=width)
        ax = fig.axes[0]
        drawn = len(timeline.records[:MAX_ROWS])
        span = max(timeline.elapsed, 1e-9)
        unit, scale = time_unit(span)
        # Labels of one row at one instant are joined ("read 30, refused"): stacked, they would
        # run into the row above.
        spots: dict[tuple[int, float], list[str]] = {}
        for moment in self.items:
            row = moment.row
            if moment.timeline is not timeline or row is None or row >= drawn:
                continue
            x = (moment.at - timeline.t0) * scale
            if 0 <= x <= span * scale * 1.0001:
                spots.setdefault((row, round(x, 9)), []).append(moment.label)
        for (row, x), labels in spots.items():
            y = drawn - 1 - row
            right_side = x > span * scale * 0.75
            ax.plot([x], [y + 0.3], marker="v", color=MARK_COLOR, markersize=5, linestyle="none")
            ax.annotate(", ".join(labels), (x, y + 0.3), xytext=(-3 if right_side else 3, 2),
                        textcoords="offset points", fontsize=8, color=MARK_COLOR,
                        ha="right" if right_side else "left", va="bottom")
        # Taller rows than a plain timeline's, so that each label fits below the next row's bar.
        fig.set_size_inches(width, min(0.9 + 0.5 * max(drawn, 1), 14.0))
        ax.set_ylim(-0.7, drawn - 0.3 + 0.45)
        return fig

    def show(self, timeline: "Timeline", title: str | None = None) -> None:
        """Display ``figure(timeline, title)`` in a notebook, as a PNG."""
        show(self.figure(timeline, title=title))

