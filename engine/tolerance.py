"""What "passes" means when a compiled artifact is compared with the torch fp32 reference.

Its own module (NumPy only) so builders (AOTInductor, torch-tensorrt) judge their output with the same
rule as ``icf-engine check`` without importing the runtime that ``check`` drives.
- fp32: max abs logit difference (mask_logits, concept_logits) <= 1e-4;
- tf32 / fp16 / bf16: pooled mask IoU >= 0.99;
- int8: pooled mask IoU >= 0.95.
"""

from __future__ import annotations

import numpy as np

LOGIT_TOL = 1e-4
IOU_MIN = {"tf32": 0.99, "fp16": 0.99, "bf16": 0.99, "int8": 0.95}


def pass_rule(precision: str, logit_diff: float, iou: float) -> tuple[bool, str]:
    """(passed, rule text) for a candidate at ``precision`` against the torch fp32 reference."""
    if precision == "fp32":
        return bool(logit_diff <= LOGIT_TOL), f"max abs logit diff <= {LOGIT_TOL:g}"  # False for NaN too
    return bool(iou >= IOU_MIN[precision]), f"pooled mask IoU >= {IOU_MIN[precision]}"


def masks(logits: np.ndarray) -> np.ndarray:
    """[1, C, H, W] logits -> [H, W] integer mask (binary: logits > 0; semantic: argmax class)."""
    return (logits[0, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits[0].argmax(axis=0)


class IoU:
    """Pooled IoU over frames (per class for semantic masks, then averaged over classes seen)."""

    def __init__(self) -> None:
        self.inter: dict[int, int] = {}
        self.union: dict[int, int] = {}
        self.frames: list[float] = []

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        a, b = masks(ref), masks(got)
        classes = [1] if ref.shape[1] == 1 else sorted(set(np.unique(a)) | set(np.unique(b)))
        per = []
        for c in classes:
            i, u = int(np.sum((a == c) & (b == c))), int(np.sum((a == c) | (b == c)))
            self.inter[c] = self.inter.get(c, 0) + i
            self.union[c] = self.union.get(c, 0) + u
            per.append(1.0 if u == 0 else i / u)  # both empty: they agree
        self.frames.append(float(np.mean(per)))

    def pooled(self) -> float:
        vals = [1.0 if self.union[c] == 0 else self.inter[c] / self.union[c] for c in self.union]
        return float(np.mean(vals)) if vals else 1.0
