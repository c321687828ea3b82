"""The pins live in requirements.txt; environment.yml must name the same ones."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-\[\]]+)==(?P<version>[^\s#]+)\s*(?P<comment>#.*)?$")


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt: not an exact pin with a comment: {line!r}"
        assert match["comment"], f"requirements.txt: say what needs {match['name']}"
        pins[match["name"].lower()] = match["version"]
    return pins


def environment_pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return pip_sections[0]


def test_requirements_are_exact_pins():
    pins = requirement_pins()
    for needed in ("jupyterlab", "nbclient", "ipywidgets", "matplotlib", "pytest", "nbval"):
        assert needed in pins, f"{needed} is not pinned in requirements.txt"


def test_environment_yml_matches_requirements():
    env_pins = {}
    for entry in environment_pip_lines():
        if entry.startswith("-e"):
            continue
        name, _, version = entry.partition("==")
        env_pins[name.lower()] = version
    assert env_pins == requirement_pins()


def test_environment_yml_installs_the_course_package_and_comments_every_pin():
    assert "-e ." in environment_pip_lines(), "Binder must install asynclab itself"
    text = (ROOT / "environment.yml").read_text()
    for name in requirement_pins():
        line = next(l for l in text.splitlines() if f"- {name}==" in l.lower())
        assert "#" in line, f"environment.yml: say what needs {name}"


def test_environment_yml_python_is_supported():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
