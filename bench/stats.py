"""Latency statistics (NumPy only, so bench/gpu.py can use it on a machine without pyzmq or PyAV).

Percentiles use NumPy's default linear interpolation between closest ranks (method="linear"),
the same definition as ``numpy.percentile``; tests pin it on hand-checked data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

QUANTILES = (50.0, 95.0, 99.0)


def percentiles(samples_ms: Sequence[float], qs: Iterable[float] = QUANTILES) -> dict[str, float]:
    """{"p50": ..., "p95": ..., "p99": ...} in the samples' unit; NaN for no samples."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    out = {}
    for q in qs:
        key = f"p{q:g}"
        out[key] = float(np.percentile(arr, q)) if arr.size else float("nan")
    return out


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """Summary of per-call latencies in milliseconds.

    ``fps`` is 1000 / mean: the rate of back-to-back calls, which is what a stream that runs one
    frame after another can sustain (the p50 alone would flatter a distribution with a long tail).
    """
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return {"n": 0, "mean_ms": nan, "std_ms": nan, "min_ms": nan, "p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "max_ms": nan, "fps": nan}
    p = percentiles(arr)
    mean = float(arr.mean())
    return {
        "n": int(arr.size),
        "mean_ms": mean,
        "std_ms": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min_ms": float(arr.min()),
        "p50_ms": p["p50"],
        "p95_ms": p["p95"],
        "p99_ms": p["p99"],
        "max_ms": float(arr.max()),
        "fps": 1000.0 / mean if mean > 0 else float("inf"),
    }


def ratio(slow_ms: float, fast_ms: float) -> float:
    """How many times faster ``fast`` is than ``slow`` (NaN when either is missing)."""
    if not (np.isfinite(slow_ms) and np.isfinite(fast_ms)) or fast_ms <= 0:
        return float("nan")
    return float(slow_ms / fast_ms)


def target_check(name: str, measured: float, limit: float, unit: str = "ms", higher_is_better: bool = False) -> dict:
    """A target line for reports: measured value, the limit, whether it is met and the gap.

    The gap is measured - limit for a ceiling (positive = still this far off), limit - measured
    for a floor; never asserted anywhere, only reported.
    """
    ok = bool(np.isfinite(measured)) and (measured >= limit if higher_is_better else measured <= limit)
    gap = (limit - measured) if higher_is_better else (measured - limit)
    return {"target": name, "measured": float(measured), "limit": float(limit), "unit": unit, "met": ok, "gap": float(gap)}


def rounded_samples(samples_ms: Sequence[float], digits: int = 4) -> list[float]:
    """Raw samples kept in the JSON (for plots and re-analysis), rounded to 0.1 us."""
    return [round(float(s), digits) for s in samples_ms]
