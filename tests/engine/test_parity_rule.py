"""One pass rule (engine.tolerance.Parity) judges export, ``icf-engine check`` and the builds alike:
fp32 is scale-aware (max abs diff <= 1e-4 x max(1, value range)) and counts mask pixels decided the same
way (binary by sign, semantic by argmax); reduced precision is judged by pooled mask IoU."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.tolerance import MASK_AGREEMENT, Parity, mask_agreement

ROOT = Path(__file__).resolve().parents[2]


def test_mask_agreement_binary_and_semantic():
    ref = np.array([[[[1.0, -1.0], [2.0, -3.0]]]])  # [1, 1, 2, 2]
    assert mask_agreement(ref, ref + 1e-3) == 1.0
    assert mask_agreement(ref, ref * np.array([1, 1, 1, -1]).reshape(1, 1, 2, 2)) == 0.75
    sem = np.zeros((1, 3, 2, 2))
    sem[0, 1] = 1.0
    flipped = sem.copy()
    flipped[0, 2, 0, 0] = 2.0
    assert mask_agreement(sem, sem) == 1.0 and mask_agreement(sem, flipped) == 0.75
    assert MASK_AGREEMENT > 0.99


def _frame(mask: np.ndarray, concept_shift: float = 0.0) -> dict[str, np.ndarray]:
    return {"mask_logits": mask, "concept_logits": np.array([[0.5 + concept_shift, -0.5]], np.float32),
            "frame_text": np.zeros((1, 4), np.float32), "segment_text": np.zeros((1, 4), np.float32)}


def test_fp32_rule_scales_with_the_logit_range():
    """The numbers `icf-engine check` met on the shipped weights' export: 1.28e-4 on logits spanning 36.9
    failed check's absolute 1e-4 while export passed it (limit 3.7e-3). Now both say the same."""
    rng = np.random.default_rng(0)
    ref = (rng.uniform(-18.45, 18.45, (1, 1, 8, 8)) + 0.01 * np.sign(rng.standard_normal((1, 1, 8, 8)))).astype(np.float32)
    ref[0, 0, 0, :2] = (-18.45, 18.45)
    near = ref.copy()
    near[0, 0, 3, 3] += 1.28e-4 * np.sign(near[0, 0, 3, 3])  # same side of 0
    judge = Parity()
    judge.add(_frame(ref), _frame(near))
    v = judge.verdict("fp32")
    assert v["passed"], v
    assert math.isclose(v["allowed_logit_diff"], 1e-4 * 36.9, rel_tol=1e-3)

    far = Parity()
    far.add(_frame(ref), _frame(ref, concept_shift=5e-3))  # concepts span 1 unit: limit 1e-4
    assert not far.verdict("fp32")["passed"] and "concept_logits" in far.verdict("fp32")["failed"]


def test_fp32_rule_fails_nan_and_flipped_mask_pixels():
    ref = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    nan = Parity()
    nan.add(_frame(ref), _frame(np.full_like(ref, np.nan)))
    nan.add(_frame(ref), _frame(ref))  # a good later frame does not hide the NaN
    assert not nan.verdict("fp32")["passed"]
    flipped = ref.copy()
    flipped[0, 0, 3:5] = -flipped[0, 0, 3:5]  # tiny values around 0 change side
    flip = Parity()
    flip.add(_frame(ref), _frame(flipped))
    v = flip.verdict("fp32")
    assert not v["passed"] and "mask agreement" in v["failed"] + v["rule"]


def test_reduced_precision_is_judged_by_mask_iou():
    ref = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    one_off = ref.copy()
    one_off[0, 0, 7, 7] = -1.0  # 1 of 32 foreground pixels lost: IoU 31/32
    judge = Parity()
    judge.add(_frame(ref), _frame(one_off))
    assert not judge.verdict("fp16")["passed"] and judge.verdict("int8")["passed"]
    same = Parity()
    same.add(_frame(ref), _frame(ref * 1.5))  # every pixel on the same side: IoU 1
    assert same.verdict("fp16")["passed"] and not same.verdict("fp32")["passed"]


@pytest.mark.slow  # ~25 s: exports the shipped weights, then runs `icf-engine check` on the export
def test_check_passes_the_shipped_weights_export_with_exports_limit(tmp_path):
    """The README's two commands, in order: export passes its parity check, and check on that export
    passes with the same limit (it failed at 1.2e-4 > 1e-4 with an absolute rule)."""
    from engine.__main__ import main
    from engine.check import check
    from engine.spec import file_sha256, read_sidecar
    from weights import SHIPPED as weights

    if not weights.is_file():
        pytest.skip("shipped weights absent")
    assert main(["export", "--out", str(tmp_path / "engine")]) == 0  # no --weights: the shipped ones, as the other commands
    onnx = tmp_path / "engine" / "icf-lite.onnx"
    assert read_sidecar(onnx)["checkpoint"]["sha256"] == file_sha256(weights)
    exported = read_sidecar(onnx)["parity"]
    report = check(onnx, "onnxruntime", threads=2)
    assert report["passed"], report
    assert report["rule"] == exported["tolerance_rule"]
    assert report["max_abs_logit_diff"] <= report["allowed_logit_diff"]
