"""The helper package's front door: ``from asynclab import ...`` as notebooks use it."""

import subprocess
import sys

import asynclab


def test_every_exported_name_is_there_and_listed():
    for name in asynclab.__all__:
        assert getattr(asynclab, name) is not None
        assert name in dir(asynclab)


def test_an_unknown_name_is_an_attribute_error():
    try:
        asynclab.no_such_helper  # noqa: B018
    except AttributeError as exc:
        assert "no_such_helper" in str(exc)
    else:
        raise AssertionError("asynclab.no_such_helper did not raise")


def test_importing_the_package_loads_nothing_until_a_name_is_used():
    """The ``asynclab`` command lives in the package: it must start without the lesson helpers
    (checks, virtual time, pytest through looptime), which a name loads on first use."""
    code = ("import sys, asynclab\n"
            "heavy = ['asynclab.checks', 'asynclab.vtime', 'asynclab.timeline', 'looptime']\n"
            "print([m for m in heavy if m in sys.modules])\n"
            "from asynclab import check, run_virtual, trace\n"
            "print([m for m in heavy if m not in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout
