"""fp32 vs int8 on the CPU, interleaved in one run: latency at 1 and 2 threads, agreement with fp32 and
mIoU against the SynthAVS ground truth on held-out frames (engine/quantize.py's frames and rule).

    python -m bench.int8 --weights weights/icf-lite-synthavs.safetensors --out docs/results/cpu_int8

The int8 graph is the cached one that passed (``icf-engine build --via onnxruntime --precision int8``);
when none passed, each scope that engine.quantize tries is quantised here again and measured, so the
report shows what int8 would buy and what it breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine import cache, quantize, spec


def _latency(sessions: dict[str, object], x: dict[str, np.ndarray], runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(runs + 3):
        for name, sess in (sessions.items() if i % 2 else reversed(sessions.items())):  # interleaved, order alternating
            t0 = time.perf_counter()
            sess.run(None, x)
            if i >= 3:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)} for k, v in times.items()}


def _gt_miou(path: Path, frames: list[dict[str, np.ndarray]], gts: list[np.ndarray]) -> float:
    run = quantize._runner(quantize._session(path))
    ious = []
    for x, gt in zip(frames, gts):
        pred = run(x)["mask_logits"][0, 0] > 0
        g = gt > 0
        union = np.count_nonzero(pred | g)
        ious.append(1.0 if union == 0 else np.count_nonzero(pred & g) / union)
    return round(float(np.mean(ious)), 4)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights/icf-lite-synthavs.safetensors")
    ap.add_argument("--frames", type=int, default=48, help="held-out frames (default 48)")
    ap.add_argument("--calib-frames", type=int, default=48)
    ap.add_argument("--runs", type=int, default=30, help="timed steps per graph and thread count")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    fp32 = cache.resolve(args.weights, "onnx")
    doc = spec.read_sidecar(fp32)
    specs = spec.specs_from(doc["inputs"])
    run = quantize._runner(quantize._session(fp32))
    gts: list[np.ndarray] = []
    held = list(quantize.step_sequence(run, specs, args.frames, quantize.HELDOUT_SEED, spec.frame_ring_rate(doc), masks=gts))
    passed = cache.int8_for(fp32)
    candidates: dict[str, Path] = {}
    tmp = Path(tempfile.mkdtemp(prefix="icf-int8-"))
    if passed:
        candidates[f"int8 ({spec.read_sidecar(passed)['int8']['scope']}, passed)"] = passed
    else:
        calib = list(quantize.step_sequence(run, specs, args.calib_frames, quantize.CALIB_SEED, spec.frame_ring_rate(doc)))
        for i, scope in enumerate(quantize.SCOPES):
            path = (tmp / f"scope{i}.onnx").resolve()
            quantize._quantize(fp32, path, calib, scope)
            candidates[f"int8 ({scope[0]}, not kept)"] = path
    rows = {"fp32": {"pooled_mask_iou_vs_fp32": 1.0, "miou_vs_ground_truth": _gt_miou(fp32, held, gts)}}
    for name, path in candidates.items():
        par = quantize.parity(fp32, path, held)
        rows[name] = {"pooled_mask_iou_vs_fp32": par["pooled_mask_iou"], "miou_vs_ground_truth": _gt_miou(path, held, gts),
                      "passes_rule": par["pooled_mask_iou"] >= quantize.INT8_IOU_MIN}
    x = held[len(held) // 2]
    for threads in (1, 2):
        sessions = {"fp32": quantize._session(fp32, threads), **{n: quantize._session(p, threads) for n, p in candidates.items()}}
        for name, lat in _latency(sessions, x, args.runs).items():
            rows[name][f"threads{threads}"] = lat
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "load_avg_1m": round(os.getloadavg()[0], 2), "command": "python -m bench.int8 " + " ".join(sys.argv[1:] if argv is None else argv),
              "rule": f"pooled mask IoU >= {quantize.INT8_IOU_MIN} vs fp32 on held-out SynthAVS frames (seed {quantize.HELDOUT_SEED})",
              "heldout_frames": len(held), "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        lines = [f"# INT8 on the CPU: fp32 vs ONNX Runtime static QDQ int8, icf-lite shipped weights ({result['date']})", "",
                 f"Machine: {result['machine']}, 1-min load {result['load_avg_1m']} (shared: other jobs ran). Command: `{result['command']}`", "",
                 f"Rule: {result['rule']}. {len(held)} held-out frames; latency interleaved, {args.runs} steps per graph.", "",
                 "| graph | mask IoU vs fp32 | mIoU vs ground truth | 1 thread p50 / p95 ms | 2 threads p50 / p95 ms |", "|---|---|---|---|---|"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['pooled_mask_iou_vs_fp32']} | {r['miou_vs_ground_truth']} "
                         f"| {r['threads1']['p50_ms']} / {r['threads1']['p95_ms']} "
                         f"| {r['threads2']['p50_ms']} / {r['threads2']['p95_ms']} |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
