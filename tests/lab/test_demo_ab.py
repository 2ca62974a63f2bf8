"""lab.demo_ab: the paired A/B rule that decides whether a change costs the demo p99 (issue 24)."""

from __future__ import annotations

import json

import pytest

from lab import demo_ab


def test_verdict_rule():
    # no cost: the whole interval sits below the margin
    assert demo_ab.verdict([0.5, -0.5, 1.0, -1.0, 0.0, 0.2], margin=5.0)["verdict"] == "no p99 cost"
    # a cost: the whole interval is above 0
    assert demo_ab.verdict([6.0, 7.0, 8.0, 6.5, 7.5, 7.2], margin=5.0)["verdict"] == "a p99 cost"
    # undecided: the interval holds 0 and reaches past the margin
    got = demo_ab.verdict([-10.0, 15.0, 2.0, -6.0, 12.0, 1.0], margin=5.0)
    assert got["verdict"] == "undecided" and got["ci95_ms"][0] < 0 < 5.0 < got["ci95_ms"][1]
    assert got["b_higher_in"] == 4 and got["pairs"] == 6


def test_report_reads_pairs_and_skips_failed_ones(tmp_path):
    run = {"p99_ms": 50.0, "p50_ms": 30.0, "to_context_p99_ms": 20.0, "processed": 296, "rc": 0}
    pairs = [{"pair": i, "order": "AB", "A": dict(run), "B": dict(run, p99_ms=50.0 + d)} for i, d in enumerate([1.0, 2.0, 3.0], 1)]
    pairs.append({"pair": 4, "order": "BA", "A": {"rc": 1}, "B": dict(run)})
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    rep = demo_ab.report(tmp_path, margin=5.0)
    assert rep["failed_pairs"] == 1
    assert rep["p99_b_minus_a"]["pairs"] == 3 and rep["p99_b_minus_a"]["mean_ms"] == pytest.approx(2.0)
    assert rep["medians"]["B"]["p99_ms"] == pytest.approx(52.0)
