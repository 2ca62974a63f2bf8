"""icf-bench soak: the flatness verdicts on hand-made samples (the run itself is `--smoke`)."""

import numpy as np
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


def test_a_slow_leak_in_a_one_minute_run_is_not_flat():
    """26.8: `soak --minutes 1` printed "flat" for a source growing 10.4 MB/min (45 s after the
    15 s warm-up grow 7.8 MB, under the 20 MB slack). The slope rule catches it; a flat, noisy
    series still passes; a window too short to show a slope is never called flat."""
    rng = np.random.default_rng(0)
    samples = [{"t_s": float(t), "leaky": 150.0 + 10.4 * t / 60, "steady": 150.0 + (20 if t < 15 else 0) + rng.uniform(-0.5, 0.5)}
               for t in range(0, 61)]
    out = memory_summary(samples, warmup_s=15, slack_mb=20, end_s=60)
    assert out["leaky"]["growth_mb"] < 20 and out["leaky"]["verdict"] == "grows" and not out["leaky"]["flat"]
    assert out["steady"]["verdict"] == "flat" and abs(out["steady"]["slope_mb_per_min"]) < 1
    short = memory_summary(samples, warmup_s=45, slack_mb=20, end_s=60)
    assert short["steady"]["verdict"] == "too short" and not short["steady"]["flat"]


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
