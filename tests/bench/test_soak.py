"""icf-bench soak: the flatness verdicts on hand-made samples (the run itself is `--smoke`)."""

import pytest

from bench.soak import latency_by_minute, memory_summary


def test_memory_summary_flags_growth_after_warmup():
    samples = [{"t_s": t, "flat": 100.0 + (5 if t < 60 else 0), "leaky": 100.0 + t / 6} for t in range(0, 600, 5)]
    out = memory_summary(samples, warmup_s=60, slack_mb=20)
    assert out["flat"]["flat"] and out["flat"]["growth_mb"] == 0
    assert not out["leaky"]["flat"] and 9.5 < out["leaky"]["slope_mb_per_min"] < 10.5
    samples.append({"t_s": 610, "flat": 130.0, "leaky": 200.0})  # shutdown: outputs written, not growth
    out = memory_summary(samples, warmup_s=60, slack_mb=20, end_s=600)
    assert out["flat"]["flat"] and out["flat"]["peak_mb"] == 130.0


def test_latency_by_minute_groups_by_stream_time():
    lines = [{"pts_ms": i * 1000 / 30, "capture_to_mask_ms": 10.0 + (i % 100 == 0) * 90} for i in range(3600)]
    rows = latency_by_minute(lines)
    assert [r["minute"] for r in rows] == [0, 1] and rows[0]["frames"] == 1800
    assert rows[0]["p50_ms"] == 10.0 and rows[0]["p99_ms"] > 10.0


@pytest.mark.slow
def test_soak_smoke(tmp_path):
    import json

    from bench.__main__ import main

    assert main(["soak", "--smoke", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "soak.json").read_text())
    assert doc["frames"]["processed"] > 100 and doc["memory"] and doc["latency_by_minute"]
