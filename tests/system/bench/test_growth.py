"""The growth rule of `python -m bench --growth`: the slope of log(cost) on log(size), and its words.

Pure arithmetic, no server: the figures at several sizes are made up with a known exponent.
"""

from __future__ import annotations

import pytest

from bench.growth import Series, classify, growth_exponent

SIZES = [100, 1_000, 10_000]


@pytest.mark.parametrize(
    ("values", "rate", "word"),
    [
        ([5.0, 5.0, 5.0], False, "flat"),  # a latency that does not move
        ([0.1, 1.0, 10.0], False, "linear"),  # a query that reads every row
        ([1.0, 100.0, 10_000.0], False, "worse than linear"),
        ([1.0, 3.16, 10.0], False, "sublinear"),
        ([9.0, 3.0, 1.0], False, "falls"),
        ([30.0, 30.0, 30.0], True, "flat"),  # a rate that holds: the time per item is flat
        ([1000.0, 100.0, 10.0], True, "linear"),  # a rate that falls with the size: linear cost per item
    ],
)
def test_words_follow_the_exponent(values: list[float], rate: bool, word: str) -> None:
    assert classify(growth_exponent(SIZES, values, rate=rate)) == word


def test_exponent_is_the_power_of_the_size() -> None:
    assert growth_exponent(SIZES, [2 * n**0.5 for n in SIZES]) == pytest.approx(0.5)


def test_memory_is_judged_above_idle_and_from_the_cache_on() -> None:
    # 100 -> 1,000 fills the cache (linear); from 1,000 on it holds: flat where it is judged.
    series = Series("waiting", "rss", "MB", "flat", "{n} waiting", base=100.0, judged_from=1_000)
    rows = series.rows([(100, [110.0]), (1_000, [200.0]), (10_000, [201.0])])
    assert [r.size for r in rows[:3]] == ["100 waiting", "1,000 waiting", "10,000 waiting"]
    growth = rows[-1]
    assert growth.text.startswith("flat (k = ") and growth.met is True
    assert "1,000 / 10,000" in growth.judged_on


def test_a_figure_that_grows_where_it_should_be_flat_is_missed() -> None:
    rows = Series("waiting", "latency", "ms", "flat", "{n} waiting").rows([(n, [n / 10]) for n in SIZES])
    assert rows[-1].text.startswith("linear") and rows[-1].met is False


def test_sizes_must_differ() -> None:
    with pytest.raises(ValueError):
        growth_exponent([10, 10], [1.0, 2.0])


def test_growth_sizes_are_a_comma_separated_list_of_two_or_more() -> None:
    from bench.__main__ import parse_args, sizes_from

    args = parse_args(["--growth-waiting", "1000,100,10000", "--quick"])
    assert sizes_from(args).growth_waiting == (100, 1_000, 10_000)
    assert sizes_from(parse_args(["--quick"])).growth_storm == ()  # --quick leaves the storm out
    for bad in ("5", "5,x", "0,10"):
        with pytest.raises(SystemExit):
            parse_args(["--growth-waiting", bad])
