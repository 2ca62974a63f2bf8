"""Latency histograms and counters with bounded memory.

A Histogram keeps the most recent values (exact percentiles for runs up to ``keep`` samples) and
log-spaced buckets (about 2 % relative error) for everything, so a pipeline that runs for days
still reports p50 / p95 / p99 / max without growing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_BUCKETS_PER_OCTAVE = 16
_MIN_MS = 1e-3  # 1 microsecond: anything faster lands in bucket 0
_NUM_BUCKETS = _BUCKETS_PER_OCTAVE * 28  # 1 us .. ~75 hours


class Histogram:
    """Durations in milliseconds."""

    def __init__(self, keep: int = 20_000) -> None:
        # a NumPy ring, not a deque of Python floats: 8 bytes a value instead of ~32
        self.recent = np.zeros(keep, np.float64)
        self.keep = keep
        self.buckets = np.zeros(_NUM_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, ms: float) -> None:
        ms = max(float(ms), 0.0)
        if not math.isfinite(ms):
            return  # a broken stamp must not poison every later percentile
        self.recent[self.count % self.keep] = ms
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.min = min(self.min, ms)
        i = 0 if ms <= _MIN_MS else int(math.log2(ms / _MIN_MS) * _BUCKETS_PER_OCTAVE)
        self.buckets[min(i, _NUM_BUCKETS - 1)] += 1

    def percentile(self, q: float) -> float:
        if self.count == 0:
            return float("nan")
        if self.count <= self.keep:  # every value still kept: exact
            return float(np.percentile(self.recent[: self.count], q))
        rank = q / 100.0 * self.count
        i = int(np.searchsorted(np.cumsum(self.buckets), rank, side="left"))
        mid = _MIN_MS * 2 ** ((i + 0.5) / _BUCKETS_PER_OCTAVE)  # geometric middle of the bucket
        return float(min(max(mid, self.min), self.max))

    def summary(self) -> dict[str, Any]:
        if self.count == 0:
            return {"count": 0}
        return {
            "count": self.count,
            "mean_ms": round(self.total / self.count, 3),
            "p50_ms": round(self.percentile(50), 3),
            "p95_ms": round(self.percentile(95), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(self.max, 3),
        }


class Gauge:
    """A sampled level (queue depth, backlog): last, mean and max of the samples."""

    def __init__(self) -> None:
        self.n = 0
        self.sum = 0.0
        self.max = 0.0
        self.last = 0.0

    def set(self, value: float) -> None:
        self.n += 1
        self.sum += value
        self.max = max(self.max, value)
        self.last = value

    def summary(self) -> dict[str, float]:
        return {"samples": self.n, "mean": round(self.sum / self.n, 3) if self.n else 0.0, "max": self.max, "last": self.last}


class Latencies:
    """Named histograms, created on first use."""

    def __init__(self) -> None:
        self.hists: dict[str, Histogram] = {}

    def add(self, name: str, ms: float) -> None:
        hist = self.hists.get(name)
        if hist is None:
            hist = self.hists[name] = Histogram()
        hist.add(ms)

    def add_ns(self, name: str, t0: int | None, t1: int | None) -> None:
        if t0 is not None and t1 is not None:
            self.add(name, (t1 - t0) / 1e6)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: h.summary() for name, h in self.hists.items()}


class Rate:
    """Events per second over the whole run (first to last event)."""

    def __init__(self) -> None:
        self.n = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def tick(self, t_ns: int) -> None:
        self.n += 1
        self.first_ns = t_ns if self.first_ns is None else self.first_ns
        self.last_ns = t_ns

    def per_second(self) -> float:
        if self.n < 2 or self.last_ns == self.first_ns:
            return 0.0
        return (self.n - 1) * 1e9 / (self.last_ns - self.first_ns)
