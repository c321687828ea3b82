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


@pytest.fixture
def root() -> Path:
    return ROOT
