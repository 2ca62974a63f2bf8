"""What "passes" means when a compiled artifact is compared with the torch fp32 reference: the one rule.

Export, ``icf-engine check``, AOTInductor and torch-tensorrt builds all judge with :class:`Parity` (NumPy only,
so builders use it without importing the runtime that ``check`` drives):
- fp32: every output's max abs difference <= LOGIT_TOL x max(1, that output's value range in the reference),
  and >= MASK_AGREEMENT of mask pixels decided the same way. Scale-aware because trained logits span tens of
  units, where float32 rounding in another kernel order moves them by ~1e-4 without changing a mask pixel;
- tf32 / fp16 / bf16: pooled mask IoU >= 0.99 (exact logits are not expected at reduced precision);
- int8: pooled mask IoU >= 0.95 (our choice: entropy-calibrated INT8 is lossier still).
Masks are logits > 0 for binary heads and the argmax class for semantic heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import LOGIT_NAMES

LOGIT_TOL = 1e-4  # fp32: allowed max abs diff per unit of the reference's value range (at least 1)
MASK_AGREEMENT = 0.999  # fp32: share of mask pixels on the same side of 0 (semantic: the same class)
IOU_MIN = {"tf32": 0.99, "fp16": 0.99, "bf16": 0.99, "int8": 0.95}


def allowed_diff(value_range: float, tol: float = LOGIT_TOL) -> float:
    """The fp32 limit for an output whose reference values span ``value_range``."""
    return tol * max(1.0, float(value_range))


def masks(logits: np.ndarray) -> np.ndarray:
    """[1, C, H, W] logits -> [H, W] integer mask (binary: logits > 0; semantic: argmax class)."""
    return (logits[0, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits[0].argmax(axis=0)


def mask_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of mask pixels decided the same way: binary [.., 1, H, W] by sign, semantic by argmax."""
    if ref.ndim >= 3 and ref.shape[-3] > 1:
        return float(np.mean(ref.argmax(-3) == got.argmax(-3)))
    return float(np.mean((ref > 0) == (got > 0)))


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


class Parity:
    """Accumulates reference-vs-candidate output dicts frame by frame; :meth:`verdict` applies the rule."""

    def __init__(self) -> None:
        self.worst: dict[str, float] = {}
        self.scale: dict[str, float] = {}
        self.iou = IoU()
        self.agreement = 1.0

    def add(self, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
        """Adds one frame; returns its max abs difference per output."""
        diffs = {}
        for name, r in ref.items():
            r64, g64 = r.astype(np.float64), got[name].astype(np.float64)
            diffs[name] = float(np.max(np.abs(r64 - g64))) if r.size else 0.0
            self.worst[name] = max(self.worst.get(name, 0.0), diffs[name])
            if not diffs[name] == diffs[name]:  # NaN: max() above would drop it
                self.worst[name] = float("nan")
            self.scale[name] = max(self.scale.get(name, 0.0), float(np.ptp(r64)) if r.size else 0.0)
        self.iou.add(ref["mask_logits"], got["mask_logits"])
        self.agreement = min(self.agreement, mask_agreement(ref["mask_logits"], got["mask_logits"]))
        return diffs

    def verdict(self, precision: str, tol: float = LOGIT_TOL) -> dict[str, Any]:
        """{"passed", "rule", "failed" (what broke it, "" when passed), and the numbers behind it}."""
        logit = max((n for n in LOGIT_NAMES if n in self.worst), key=lambda n: self.worst[n], default="mask_logits")
        allowed = {n: allowed_diff(self.scale[n], tol) for n in self.worst}
        out: dict[str, Any] = {
            "max_abs_diff": dict(self.worst), "max_abs_logit_diff": self.worst.get(logit, 0.0),
            "logit_range": self.scale.get(logit, 0.0), "allowed_logit_diff": allowed.get(logit, tol),
            "mask_agreement": self.agreement, "mask_iou": self.iou.pooled(), "precision": precision,
        }
        if precision == "fp32":
            out["tolerance"] = tol
            out["rule"] = (f"max abs diff <= {tol:g} x max(1, value range of the reference) per output, "
                           f"mask agreement >= {MASK_AGREEMENT}")
            bad = [f"{n} {d:.3g} > {allowed[n]:.3g}" for n, d in self.worst.items() if not d <= allowed[n]]  # catches NaN
            if not self.agreement >= MASK_AGREEMENT:
                bad.append(f"mask agreement {self.agreement:.5f} < {MASK_AGREEMENT}")
        else:
            out["rule"] = f"pooled mask IoU >= {IOU_MIN[precision]}"
            bad = [] if self.iou.pooled() >= IOU_MIN[precision] else [f"pooled mask IoU {self.iou.pooled():.4f} < {IOU_MIN[precision]}"]
        out["passed"], out["failed"] = not bad, "; ".join(bad)
        return out
