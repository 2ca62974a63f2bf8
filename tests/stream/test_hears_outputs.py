"""metrics.jsonl and the published mask header carry the hearing verdict ("nothing", "unsure" or a concept,
stream/stages/hearing.py) and the mask's area, not only the raw top concepts (which always have a winner)."""

from __future__ import annotations

import json

import numpy as np

from engine.spec import read_sidecar
from stream import PipelineConfig, run_pipeline


def test_metrics_lines_carry_the_verdict_and_the_mask_area(media, tiny_onnx, tmp_path):
    cfg = PipelineConfig(source={"kind": "file", "video": str(media["av"]), "pace": "fast"},
                         backend={"kind": "engine", "artifact": tiny_onnx, "backend": "onnxruntime"},
                         transport="inproc", masks=str(tmp_path / "m.npz"), metrics=str(tmp_path / "m.jsonl"))
    report = run_pipeline(cfg)
    assert report["ok"], report["errors"]
    lines = [json.loads(x) for x in open(tmp_path / "m.jsonl") if '"seq"' in x]
    masks = np.load(tmp_path / "m.npz")["masks"]
    assert len(lines) == len(masks) > 0
    verdicts = {"nothing", "unsure", *read_sidecar(tiny_onnx)["concepts"]}
    for line, mask in zip(lines, masks, strict=True):
        assert line["hears"] in verdicts, line
        assert abs(line["mask_area"] - np.count_nonzero(mask) / mask.size) < 1e-4  # the delivered mask's own area
