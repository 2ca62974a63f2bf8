"""Paired statistics over clips: two weights scored on the same clips, bootstrap over clips.

Each metric is either a per-clip mean (mIoU, F: the dataset number is the mean over clips) or a
rate pooled over frames (hits / totals per clip: the dataset number is sum(hits) / sum(totals)).
A resample draws clips with replacement and recomputes both numbers from the same drawn clips, so
the interval is of the paired difference A - B. Seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def _stat(values: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """values: {'mean': [n]} or {'hits': [n], 'total': [n]}; idx [B, n] -> [B] statistics."""
    if "mean" in values:
        return values["mean"][idx].mean(axis=-1)
    hits, total = values["hits"][idx].sum(axis=-1), values["total"][idx].sum(axis=-1)
    return np.where(total > 0, hits / np.maximum(total, 1), np.nan)


def paired_bootstrap(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, float]:
    """A - B with a 95% percentile interval. a / b: {'mean': per-clip values} or {'hits', 'total'}
    per clip, over the same clips in the same order."""
    a = {k: np.asarray(v, np.float64) for k, v in a.items()}
    b = {k: np.asarray(v, np.float64) for k, v in b.items()}
    n = len(next(iter(a.values())))
    if n == 0 or any(len(v) != n for v in (*a.values(), *b.values())):
        raise ValueError("paired_bootstrap needs the same non-zero number of clips on both sides")
    keep = np.ones(n, bool)
    for v in (*a.values(), *b.values()):
        keep &= np.isfinite(v)
    a = {k: v[keep] for k, v in a.items()}
    b = {k: v[keep] for k, v in b.items()}
    n = int(keep.sum())
    full = np.arange(n)[None]
    rng = np.random.default_rng(seed)
    diffs = []
    for chunk in range(0, samples, 500):  # chunks keep the index array small
        idx = rng.integers(0, n, size=(min(500, samples - chunk), n))
        diffs.append(_stat(a, idx) - _stat(b, idx))
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    lo, hi = np.percentile(d, [2.5, 97.5]) if len(d) else (np.nan, np.nan)
    return {
        "a": float(_stat(a, full)[0]),
        "b": float(_stat(b, full)[0]),
        "diff": float(_stat(a, full)[0] - _stat(b, full)[0]),
        "lo": float(lo),
        "hi": float(hi),
        "clips": n,
        "samples": samples,
        "seed": seed,
    }


def per_clip_metrics(per_clip: dict) -> dict[str, dict[str, np.ndarray]]:
    """listening_report()['per_clip'] -> {metric: values dict for paired_bootstrap}."""
    out = {"mIoU": {"mean": np.asarray(per_clip["mIoU"])}, "F": {"mean": np.asarray(per_clip["F"])}}
    for key in per_clip:
        if key.endswith("_hits"):
            name = key[: -len("_hits")]
            out[name] = {"hits": np.asarray(per_clip[key]), "total": np.asarray(per_clip[f"{name}_total"])}
    return out
