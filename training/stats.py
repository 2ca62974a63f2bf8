"""Paired statistics. Across seeds (``seed_paired``, ``decide``): the unit of replication of a recipe
comparison, since a recipe effect varies between training seeds. Over clips (``paired_bootstrap``): two
weights scored on the same clips, bootstrap over clips: only the precision of one network pair.

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


# Student t 0.975 quantiles, so no scipy is needed: every df from 1 to 30, then rows up to 120; between
# rows the smaller df's quantile (an interval a little wider than exact, never narrower)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_T975_ROWS = {40: 2.021, 50: 2.009, 60: 2.000, 80: 1.990, 99: 1.984, 120: 1.980}


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    below = [k for k in _T975_ROWS if k <= df]
    return _T975_ROWS[max(below)] if below else _T975[-1]


def seed_paired(diffs, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """The unit of replication is the training seed: diffs[s] = metric(A, seed s) - metric(B, seed s), one
    number per seed (each from the same evaluation clips). Returns the mean, the between-seed sd, the
    95% paired t interval (n - 1 df) and a percentile bootstrap over seeds. With one seed the intervals
    are infinite: a single pair says nothing about the recipe."""
    d = np.asarray(diffs, np.float64)
    n = len(d)
    if n == 0 or not np.isfinite(d).all():
        raise ValueError("seed_paired needs at least one finite per-seed difference")
    mean = float(d.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": float("nan"), "t_lo": -np.inf, "t_hi": np.inf, "boot_lo": -np.inf, "boot_hi": np.inf}
    sd = float(d.std(ddof=1))
    half = t975(n - 1) * sd / np.sqrt(n)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, n, size=(samples, n))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n": n, "mean": mean, "sd": sd, "t_lo": mean - half, "t_hi": mean + half, "boot_lo": float(lo), "boot_hi": float(hi),
            "samples": samples, "seed": seed}


def decide(stats: dict, *, margin: float = 3.0) -> str:
    """The pre-registered rule (docs/results/icf_decisive.md) on the paired t interval, in the units of the
    differences: 'helps' if it excludes 0 and the mean is >= margin; 'no useful effect' if it lies inside
    (-margin, +margin); otherwise 'undecided'."""
    lo, hi, mean = stats["t_lo"], stats["t_hi"], stats["mean"]
    if (lo > 0 or hi < 0) and mean >= margin:
        return "helps"
    if -margin < lo and hi < margin:
        return "no useful effect"
    return "undecided"
