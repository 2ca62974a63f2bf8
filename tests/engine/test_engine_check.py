"""check: the comparison against the torch reference and its IoU metric."""

from __future__ import annotations

import numpy as np

from engine.check import check, format_report
from engine.tolerance import IoU, masks


def test_iou_metric():
    iou = IoU()
    empty = np.full((1, 1, 4, 4), -1.0)
    iou.add(empty, empty)
    assert iou.frames == [1.0] and iou.pooled() == 1.0  # both empty: full agreement
    half = empty.copy()
    half[..., :2] = 1.0
    quarter = empty.copy()
    quarter[..., :1] = 1.0
    iou.add(half, quarter)
    assert iou.frames[-1] == 0.5 and iou.pooled() == 0.5
    semantic = np.zeros((1, 3, 2, 2))
    semantic[0, 2, 0, 0] = 5.0
    assert masks(semantic).tolist() == [[2, 0], [0, 0]]


def test_check_onnxruntime_passes(exports):
    report = check(exports["icf-lite"], "onnxruntime", threads=2, random_frames=1, synthetic_frames=2)
    assert report["passed"], format_report(report)
    assert report["rule"].startswith("max abs diff <= 0.0001 x max(1, value range of the reference)")
    assert report["max_abs_logit_diff"] <= 1e-4 and report["mask_iou"]["pooled"] == 1.0
    assert report["reference"]["checkpoint"].endswith("icf-lite-weights.safetensors")
    assert "PASS" in format_report(report)
