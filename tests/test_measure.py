from asynclab.measure import Stopwatch, timing


import configparser
import re

from conftest import ROOT


def sanitized(text: str) -> str:
    """``text`` as nbval compares it, through the course's tests/sanitize.cfg."""
    config = configparser.ConfigParser()
    config.read(ROOT / "tests" / "sanitize.cfg")
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def test_the_measured_figure_is_printed_beside_the_prediction():
    assert timing(2.03, expect_s=2.0) == "took 2.03 s: about 2 s, as predicted (within ±500 ms)"
    assert timing(0.0486, expect_s=0.05).startswith("took 48.6 ms: about 50 ms, as predicted")


def test_outside_tolerance_says_which_side():
    assert timing(3.4, expect_s=2.0) == ("took 3.40 s: slower than the 2 s predicted, "
                                         "beyond the ±500 ms tolerance")
    assert "faster" in timing(0.05, expect_s=1.0)


def test_only_the_measured_digits_are_masked_for_nbval():
    """Two runs within the tolerance compare equal; a run outside it does not."""
    assert sanitized(timing(2.03, expect_s=2.0)) == sanitized(timing(1.91, expect_s=2.0))
    assert sanitized(timing(0.212, expect_s=0.2)) == sanitized(timing(0.19, expect_s=0.2))
    assert sanitized(timing(3.4, expect_s=2.0)) != sanitized(timing(2.03, expect_s=2.0))
    # outputs committed before the figure was printed still compare equal
    assert sanitized(timing(0.212, expect_s=0.2)) == "took about 200 ms, as predicted (within ±150 ms)"
    assert "2.03" not in sanitized("x took 2.03 s: about 2 s")


def test_stopwatch_measures():
    with Stopwatch() as sw:
        pass
    assert 0 <= sw.elapsed < 1
