"""Parameters, GFLOPs and CPU `step` latency per registered variant (issue: foundation).

    python -m bench.model_cost [--models icf-lite ...] [--runs 50] [--threads 2]

Eager torch vs ONNX Runtime (CPU EP) on the same inputs; prints a table and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import model

INPUTS = ["image", "audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid"]
OUTPUTS = ["mask_logits", "frame_text", "segment_text", "concept_logits"]


def step_inputs(net: model.ICFNet, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    h, w = net.config.image_size
    state = net.initial_state(1)
    return (torch.rand(1, 3, h, w, generator=g), 0.3 * torch.randn(1, model.AUDIO_SAMPLES, generator=g), *state.as_inputs())


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def measure(name: str, runs: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    net = model.build_model(name).eval()
    inputs = [step_inputs(net, s) for s in range(4)]  # several input sets so caches do not flatter
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*inputs[0])
    row = {
        "model": name,
        "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
        "gflops": counter.get_total_flops() / 1e9,  # torch counts a multiply-add as 2 FLOPs
        "gmacs": counter.get_total_flops() / 2e9,
    }
    with torch.no_grad():
        for x in inputs:
            net(*x)
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            net(*inputs[i % len(inputs)])
            times.append(time.perf_counter() - t0)
    row["eager_p50_ms"] = percentile_ms(times, 50)
    row["eager_p95_ms"] = percentile_ms(times, 95)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / f"{name}.onnx"
        torch.onnx.export(net, inputs[0], str(path), input_names=INPUTS, output_names=OUTPUTS, opset_version=17, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = [{k: v.numpy() for k, v in zip(INPUTS, x)} for x in inputs]
    with torch.no_grad():
        ref = net(*inputs[0])[0].numpy()
    row["ort_max_abs_diff"] = float(np.abs(sess.run(["mask_logits"], feeds[0])[0] - ref).max())
    for f in feeds:
        sess.run(None, f)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds[i % len(feeds)])
        times.append(time.perf_counter() - t0)
    row["ort_p50_ms"] = percentile_ms(times, 50)
    row["ort_p95_ms"] = percentile_ms(times, 95)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=model.list_models())
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = [measure(m, args.runs, args.threads) for m in args.models]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}")
    print(f"{'model':10} {'params M':>9} {'GFLOPs':>7} {'GMACs':>6} {'eager p50':>10} {'ORT p50':>8} {'ORT diff':>9}")
    for r in rows:
        print(f"{r['model']:10} {r['params_M']:9.2f} {r['gflops']:7.2f} {r['gmacs']:6.2f} {r['eager_p50_ms']:8.1f}ms {r['ort_p50_ms']:6.1f}ms {r['ort_max_abs_diff']:9.1e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
