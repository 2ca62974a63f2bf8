"""Timing loops: host clock on CPU, CUDA events on GPU. torch + stdlib only (bench/gpu.py uses it).

Every loop rotates through several pre-built input sets so caches (CPU L2, GPU L2, ORT's buffer
reuse) do not flatter the result with one hot input, and warms up first so one-off costs
(allocator growth, cuDNN autotuning, lazy compilation) stay out of the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

Step = Callable[[Any], Any]


def time_host(fn: Step, inputs: Sequence[Any], *, warmup: int, iters: int, budget_s: float | None = None) -> list[float]:
    """Per-call wall-clock latencies in ms (perf_counter). Stops early after ``budget_s`` seconds."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    samples: list[float] = []
    start = time.perf_counter()
    for i in range(iters):
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        samples.append((time.perf_counter() - t0) * 1e3)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(samples) >= 3:
            break
    return samples


def time_cuda(fn: Step, inputs: Sequence[Any], *, warmup: int, iters: int, budget_s: float | None = None) -> list[float]:
    """Per-call latencies in ms from CUDA events, one frame at a time.

    The device is synchronised before every call, so the start event fires on an idle GPU and the
    interval covers launch + execution of that frame alone: the latency a stream sees when it
    needs each mask before publishing it. (Timing back-to-back calls without the sync would let
    the CPU queue frame i+1 while the GPU runs frame i and report throughput, not latency.)
    """
    import torch

    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    torch.cuda.synchronize()
    pairs = []
    start = time.perf_counter()
    for i in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        a.record()
        fn(inputs[i % len(inputs)])
        b.record()
        b.synchronize()
        pairs.append((a, b))
        if budget_s is not None and time.perf_counter() - start > budget_s and len(pairs) >= 3:
            break
    return [a.elapsed_time(b) for a, b in pairs]


def timer_for(device: str) -> tuple[str, Callable[..., list[float]]]:
    """(name, loop) for a torch device string: CUDA events on cuda, host clock elsewhere."""
    if device.startswith("cuda"):
        return "cuda-events", time_cuda
    return "perf_counter", time_host
