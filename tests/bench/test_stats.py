"""Percentile / summary helpers on data whose answers are worked out by hand."""

import math

import pytest

from bench.stats import percentiles, ratio, summarize, target_check


def test_percentiles_linear_interpolation_1_to_100():
    # rank = q/100 * (n - 1) = 0.5 * 99 = 49.5 -> between 50 and 51
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5)
    assert p["p95"] == pytest.approx(95.05)  # rank 94.05 -> 95 + 0.05
    assert p["p99"] == pytest.approx(99.01)  # rank 98.01 -> 99 + 0.01


def test_percentiles_four_values_unsorted():
    # sorted 10, 20, 30, 40; p95 rank 2.85 -> 30 + 0.85 * 10; p99 rank 2.97 -> 39.7
    p = percentiles([40.0, 10.0, 30.0, 20.0])
    assert p == pytest.approx({"p50": 25.0, "p95": 38.5, "p99": 39.7})


def test_summarize_by_hand():
    s = summarize([2.0, 4.0, 6.0])
    assert s["n"] == 3
    assert s["mean_ms"] == pytest.approx(4.0)
    assert s["std_ms"] == pytest.approx(2.0)  # sample std: sqrt(((-2)^2 + 0 + 2^2) / 2)
    assert s["min_ms"] == 2.0 and s["max_ms"] == 6.0
    assert s["p50_ms"] == pytest.approx(4.0)
    assert s["fps"] == pytest.approx(250.0)  # 1000 / mean


def test_summarize_single_and_empty():
    assert summarize([5.0])["std_ms"] == 0.0
    empty = summarize([])
    assert empty["n"] == 0 and math.isnan(empty["p50_ms"]) and math.isnan(empty["fps"])


def test_ratio_and_targets():
    assert ratio(10.0, 2.0) == pytest.approx(5.0)
    assert math.isnan(ratio(float("nan"), 1.0)) and math.isnan(ratio(1.0, 0.0))
    ceiling = target_check("lite", 0.7, 0.5)
    assert not ceiling["met"] and ceiling["gap"] == pytest.approx(0.2)
    floor = target_check("speed-up", 6.0, 5.0, "x", higher_is_better=True)
    assert floor["met"] and floor["gap"] == pytest.approx(-1.0)
    assert not target_check("missing", float("nan"), 1.0)["met"]
