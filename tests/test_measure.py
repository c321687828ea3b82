from asynclab.measure import Stopwatch, timing


def test_within_tolerance_the_text_is_stable():
    assert timing(2.03, expect_s=2.0) == timing(1.91, expect_s=2.0)
    assert timing(2.03, expect_s=2.0).startswith("took about 2 s, as predicted")


def test_outside_tolerance_the_real_figure_shows():
    text = timing(3.4, expect_s=2.0)
    assert "3.400 s" in text and "slower" in text
    assert "faster" in timing(0.05, expect_s=1.0)


def test_small_durations_use_milliseconds_and_an_absolute_tolerance():
    assert timing(0.06, expect_s=0.05).startswith("took about 50 ms")


def test_stopwatch_measures():
    with Stopwatch() as sw:
        pass
    assert 0 <= sw.elapsed < 1
