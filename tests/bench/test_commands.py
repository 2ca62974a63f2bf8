"""Every command end to end in smoke mode: valid JSON, Markdown and PNG, real (non-empty) rows.

Nothing here asserts a time: the machine is shared and timings are noise at these counts.
"""

import json

import pytest

from bench.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_outputs(out, stem, *, png=True):
    doc = json.loads((out / f"{stem}.json").read_text())
    assert doc["command"] == stem
    assert doc["machine"]["cores"] and doc["libraries"]["torch"]
    md = (out / f"{stem}.md").read_text()
    assert md.startswith("## ") and "|---" in md
    if png:
        pngs = sorted(out.glob(f"{stem}_*.png"))
        assert pngs and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    return doc


def _ok_timed(row):
    return row["status"] == "ok" and row["n"] >= 1 and row["p50_ms"] > 0 and len(row["samples_ms"]) == row["n"]


def test_model_smoke(tmp_path):
    assert main(["model", "--smoke", "--inputs", "random", "--out", str(tmp_path)]) == 0
    doc = _check_outputs(tmp_path, "model")
    rows = {r["label"]: r for r in doc["rows"]}
    assert _ok_timed(rows["torch-eager fp32"]) and _ok_timed(rows["onnxruntime fp32"])
    assert rows["onnxruntime fp32"]["max_abs_diff"] < 1e-3  # same function as eager torch
    assert doc["cost"][0]["gflops"] > 0
    assert doc["ratios"][0]["model"] == "icf-tiny"


def test_baseline_smoke(tmp_path):
    # 96 x 96: the reference net at 224 takes seconds per step on a shared 2-core CPU
    assert main(["baseline", "--smoke", "--backends", "eager", "--inputs", "random", "--resolutions", "96", "--out", str(tmp_path)]) == 0
    doc = _check_outputs(tmp_path, "baseline")
    base = [r for r in doc["rows"] if r["backend"] == "baseline"]
    assert base and _ok_timed(base[0])
    assert doc["rows"][0]["resolution"] == "96x96"
    assert doc["ratios"][0]["speedup_vs_baseline_eager_fp32"] > 0
    assert any(c["model"] == "baseline-avsbench" and c["gflops"] > 0 for c in doc["cost"])


def test_transport_smoke(tmp_path):
    assert main(["transport", "--smoke", "--frames", "640x480", "--out", str(tmp_path)]) == 0
    doc = _check_outputs(tmp_path, "transport")
    assert {(r["transport"], r["copy_mode"]) for r in doc["rows"]} == {
        (t, m) for t in ("inproc", "ipc", "tcp") for m in ("copy", "zero-copy")
    }
    assert all(_ok_timed(r) and r["throughput_MBps"] > 0 for r in doc["rows"])
    assert len(doc["targets"]) == 2  # ipc 640x480, copy and zero-copy


def test_pipeline_smoke_null_backend(tmp_path):
    assert main(["pipeline", "--smoke", "--null", "--seconds", "1.5", "--out", str(tmp_path)]) == 0
    doc = _check_outputs(tmp_path, "pipeline")
    assert [s["stage"] for s in doc["stages"]][:3] == ["capture", "transport", "context (audio window + wait)"]
    assert doc["frames"]["sent"] > 0 and doc["end_to_end"]["capture_to_mask"]["n"] > 0


def test_gpu_script_smoke_on_cpu_and_replot(tmp_path):
    from bench.gpu import main as gpu_main

    out = tmp_path / "gpu"
    assert gpu_main(["--smoke", "--no-baseline", "--variants", "eager-fp32", "eager-fp16", "cudagraph-fp16-cl", "--out", str(out)]) == 0
    doc = json.loads((out / "gpu.json").read_text())
    rows = {r["variant"]: r for r in doc["rows"]}
    assert _ok_timed(rows["eager-fp32"]) and _ok_timed(rows["eager-fp16"])
    assert rows["cudagraph-fp16-cl"]["status"] == "skipped"
    assert rows["eager-fp16"]["max_abs_diff"] < 0.1  # fp16 computes the same function, roughly
    assert (out / "gpu.md").read_text().startswith("## GPU step latency")
    assert main(["plot", str(out / "gpu.json")]) == 0
    assert (out / "gpu_latency.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("text,expected", [("224", (224, 224)), ("480x640", (480, 640))])
def test_parse_resolution(text, expected):
    from bench.measure import parse_resolution

    assert parse_resolution(text) == expected
