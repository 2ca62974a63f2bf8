"""`icf-stream demo` end to end (slow: about 20 s with the export cached)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.cli.main import SHIPPED_WEIGHTS, main

from .conftest import ROOT


@pytest.mark.slow
def test_demo_writes_its_outputs(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.chdir(ROOT)
    args = ["demo", "--seconds", "3", "--out", str(tmp_path)]
    if not (ROOT / SHIPPED_WEIGHTS).is_file():
        args += ["--weights", tiny_onnx, "--backend", "onnxruntime"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["frames"]["accounted"] and report["frames"]["sent"] == 90
    assert report["miou"] is not None and report["transport"] == "ipc"
    for stage in ("capture_to_mask", "inference", "to_context", "to_sink"):
        assert {"p50_ms", "p95_ms", "p99_ms", "max_ms"} <= set(report["latency_ms"][stage])
    masks = np.load(tmp_path / "masks.npz")
    assert masks["masks"].shape == (report["frames"]["processed"], 480, 640)
    assert (tmp_path / "overlay.mp4").stat().st_size > 10_000
