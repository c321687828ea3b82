"""What a check concludes: ``Finding`` (one property, judged) and ``Report`` (all of them).

Kept apart from ``asynclab.checking`` (which runs code on virtual time and imports the
timeline, looptime and pytest with it) so that the grader, which only rebuilds reports
from what the kernel wrote, reads them without importing any of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from asynclab.timeline import Timeline

__all__ = ["Finding", "Report", "PASS_MARK", "FAIL_MARK"]

PASS_MARK, FAIL_MARK = "PASS", "FAIL"


@dataclass
class Finding:
    """One property of the learner's code, judged."""

    prop: str  # short name of the property, e.g. "limit respected"
    passed: bool
    message: str  # what was observed, in a sentence
    hint: str = ""
    # What the code did, decided before the hint was picked: "blocked the loop",
    # "swallowed cancellation", ... (empty for a passed finding). Tests assert it.
    diagnosis: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"property": self.prop, "passed": self.passed, "message": self.message,
                "hint": self.hint, "diagnosis": self.diagnosis}


class Report:
    """The verdict on one exercise: findings, and the timeline of the learner's run."""

    def __init__(self, exercise: str, findings: list[Finding] | None = None,
                 timeline: Timeline | None = None) -> None:
        self.exercise = exercise
        self.findings: list[Finding] = list(findings or [])
        self.timeline = timeline
        # The run that failed, when it was not the first: "timers due together fired in
        # reverse order" (see ``varied``). Empty when the first run decided the verdict.
        self.variation = ""

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.passed for f in self.findings)

    @property
    def diagnoses(self) -> list[str]:
        """What the failed findings say the code did, in report order, without repeats."""
        return list(dict.fromkeys(f.diagnosis for f in self.findings
                                  if not f.passed and f.diagnosis))

    def add(self, prop: str, passed: bool, message: str, hint: str = "",
            diagnosis: str = "") -> bool:
        self.findings.append(Finding(prop, passed, message, "" if passed else hint,
                                     "" if passed else diagnosis))
        return passed

    def text(self) -> str:
        """Deterministic plain text: the same on every run of the same code."""
        failed = [f for f in self.findings if not f.passed]
        head = (f"{self.exercise}: all {len(self.findings)} checks passed" if self.passed
                else f"{self.exercise}: {len(failed)} of {len(self.findings)} checks failed")
        if self.variation and not self.passed:
            head += f" (in the run where {self.variation})"
        lines = [head]
        for f in self.findings:
            lines.append(f"  [{PASS_MARK if f.passed else FAIL_MARK}] {f.prop}: {f.message}")
            if not f.passed and f.hint:
                lines.append(f"         hint: {f.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "passed": self.passed, "variation": self.variation,
                "findings": [f.to_dict() for f in self.findings]}

    def __repr__(self) -> str:
        return self.text()

    def _ipython_display_(self) -> None:
        print(self.text())
        if self.timeline is not None and self.timeline.records:
            self.timeline.show(title=f"your {self.exercise}: what each task did")
