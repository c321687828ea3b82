"""Shared helpers for the course's tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def define(code: str, name: str) -> Any:
    """Execute a learner-style snippet in a fresh module namespace and return ``name`` from it.

    The snippet gets its own globals (as a notebook would), so blocking-call
    detection through ``from time import sleep`` is exercised for real.
    """
    namespace: dict[str, Any] = {"__name__": "learner"}
    exec(compile(textwrap.dedent(code), f"<cell {name}>", "exec"), namespace)
    return namespace[name]


def failed_props(report) -> dict[str, str]:
    """``{property: message}`` of the failed findings of a report."""
    return {f.prop: f.message for f in report.findings if not f.passed}


def assert_diagnosed(report, prop: str, fragment: str, diagnosis: str) -> None:
    """The report failed ``prop`` with ``fragment`` in its message, and diagnosed ``diagnosis``."""
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()
    assert diagnosis in report.diagnoses, (report.diagnoses, report.text())
    finding = next(f for f in report.findings if f.prop == prop)
    assert finding.diagnosis, f"{prop} failed without a diagnosis:\n{report.text()}"


@pytest.fixture
def root() -> Path:
    return ROOT
