"""GPU check: torch CUDA-graph backend vs eager, parity and latency (batch 1).

    python -m bench.gpu_check --out gpu_check.json [--models icf-tiny icf-lite] [--iters 300]

For each model and precision (fp32, fp16) it runs TorchBackend eager, cudagraph and (fp16)
cudagraph + channels_last on the same frames (synthetic scenes, rings rolled by the fp32
reference), and reports:
- latency: median / p90 of CUDA-event timings of one device-resident step (inputs already on the
  GPU, as the stream's pinned upload overlaps), and the median host round trip (NumPy in/out);
- parity: max abs logit diff against eager at the same precision (graph replay must not change
  results) and against eager fp32, and the pooled mask IoU against eager fp32.
PASS rules: engine.tolerance's (the one export, check and the builds use), against eager at the same
precision (else fp32) and against eager fp32: fp32 (IEEE, TF32 off) scale-aware max abs diff + mask
agreement; tf32 / fp16 mask IoU >= 0.99. IoU on an
untrained net is harsh: its mask logits sit near 0 and the foreground is tiny (the JSON records
the reference foreground fraction), so judge fp16 on trained weights (--weights). Needs only torch + model/ (no onnxruntime, no
TensorRT). Without CUDA it prints why and writes {"skipped": ...}. Exit 1 if a parity rule fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.inputs import synthetic_sequence
from engine.spec import INPUT_NAMES, OUTPUT_NAMES
from engine.tolerance import Parity, masks


def _timings(backend, frames_dev: list[dict], iters: int, warmup: int) -> list[float]:
    import torch

    for i in range(warmup):
        backend.infer_device(frames_dev[i % len(frames_dev)])
    torch.cuda.synchronize()
    pairs = []
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        backend.infer_device(frames_dev[i % len(frames_dev)])
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in pairs]


def _host_roundtrip(backend, frames: list[dict], iters: int) -> float:
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        backend.infer(frames[i % len(frames)])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _judge(ref: list[dict], got: list[dict], precision: str) -> dict[str, Any]:
    """engine.tolerance's verdict (the rule export, check and the builds use) over a sequence of frames."""
    parity = Parity()
    for r, g in zip(ref, got):
        parity.add(r, g)
    return parity.verdict(precision)


def run_model(name: str, *, iters: int, warmup: int, frames: int, weights: str | None) -> list[dict[str, Any]]:
    import torch

    import model
    from engine.torch_backend import TorchBackend

    torch.manual_seed(0)
    net = model.load_checkpoint(weights) if weights else model.build_model(name)
    label = weights or f"registry:{name} (seed 0)"
    ref = TorchBackend(label, net=net, mode="eager", device="cuda", precision="fp32", reason="gpu_check reference")
    seq = list(synthetic_sequence(ref.input_specs, frames, np.random.default_rng(0), step=ref.infer, frames_per_segment=3))
    seq_dev = [{n: torch.from_numpy(x[n]).cuda() for n in INPUT_NAMES} for x in seq]
    ref_out = [ref.infer(x) for x in seq]
    rows = []
    variants = [("fp32", "eager", False), ("fp32", "cudagraph", False), ("tf32", "cudagraph", False),
                ("fp16", "eager", False), ("fp16", "cudagraph", False), ("fp16", "cudagraph", True)]
    fg = float(np.mean([(masks(r["mask_logits"]) > 0).mean() for r in ref_out]))
    eager_out: dict[str, list[dict]] = {}
    eager_ms: dict[str, float] = {}
    for precision, mode, cl in variants:
        b = ref if (precision, mode, cl) == ("fp32", "eager", False) else TorchBackend(
            label, net=net, mode=mode, device="cuda", precision=precision, channels_last=cl, reason="gpu_check")
        outs = [b.infer(x) for x in seq]
        ms = _timings(b, seq_dev, iters, warmup)
        host = _host_roundtrip(b, seq, max(iters // 3, 20))
        if mode == "eager" and not cl:
            eager_out[precision], eager_ms[precision] = outs, float(np.median(ms))
        same = precision if precision in eager_out else "fp32"  # tf32 has no eager row: compare with fp32
        vs_same, vs_fp32 = _judge(eager_out[same], outs, precision), _judge(ref_out, outs, precision)
        ok = vs_same["passed"] and vs_fp32["passed"]  # fp32 (TF32 off): graph replay must reproduce eager
        same_diff, same_iou = vs_same["max_abs_logit_diff"], vs_same["mask_iou"]
        fp32_diff, fp32_iou = vs_fp32["max_abs_logit_diff"], vs_fp32["mask_iou"]
        rows.append({
            "model": name, "precision": precision, "mode": mode + ("+channels_last" if cl else ""),
            "p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "host_roundtrip_p50_ms": host,
            "speedup_vs_eager": eager_ms[same] / float(np.median(ms)), "eager_baseline": same,
            "reference_foreground_fraction": fg,
            "max_abs_logit_diff_vs_eager_same_precision": same_diff, "mask_iou_vs_eager_same_precision": same_iou,
            "max_abs_logit_diff_vs_fp32_eager": fp32_diff, "mask_iou_vs_fp32_eager": fp32_iou,
            "setup_s": b.info().get("setup_seconds"), "passed": bool(ok),
        })
        if b is not ref:
            b.close()
        del outs
        torch.cuda.empty_cache()
    ref.close()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<9} {'prec':<5} {'mode':<24} {'p50 ms':>7} {'p90 ms':>7} {'host ms':>8} {'x eager':>7} "
            f"{'d_same':>9} {'d_fp32':>9} {'IoU fp32':>8}  ok")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<9} {r['precision']:<5} {r['mode']:<24} {r['p50_ms']:>7.3f} {r['p90_ms']:>7.3f} "
            f"{r['host_roundtrip_p50_ms']:>8.3f} {r['speedup_vs_eager']:>7.2f} {r['max_abs_logit_diff_vs_eager_same_precision']:>9.2e} "
            f"{r['max_abs_logit_diff_vs_fp32_eager']:>9.2e} {r['mask_iou_vs_fp32_eager']:>8.4f}  {'PASS' if r['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--models", nargs="+", default=["icf-tiny", "icf-lite"])
    p.add_argument("--weights", nargs="*", default=None, help="checkpoints to use instead of fresh registry models (one per --models entry)")
    p.add_argument("--iters", type=int, default=300, help="timed steps per row (default 300)")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--frames", type=int, default=8, help="distinct synthetic frames cycled through (default 8)")
    args = p.parse_args(argv)
    import torch

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "python": platform.python_version(), "cuda_runtime": torch.version.cuda}
    if not torch.cuda.is_available():
        reason = f"no CUDA: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False); nothing measured"
        print(f"gpu_check: SKIPPED - {reason}. Run it on a GPU machine.")
        out.write_text(json.dumps({"skipped": True, "reason": reason, "env": env}, indent=2) + "\n")
        return 0
    env.update(gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick the fastest kernels once
    weights = args.weights or [None] * len(args.models)
    if len(weights) != len(args.models):
        p.error("--weights needs one checkpoint per --models entry")
    rows = []
    for name, w in zip(args.models, weights):
        print(f"gpu_check: {name} on {env['gpu']} ...", flush=True)
        rows += run_model(name, iters=args.iters, warmup=args.warmup, frames=args.frames, weights=w)
    table = format_table(rows)
    fgs = {r["model"]: r["reference_foreground_fraction"] for r in rows}
    print(f"\ntorch {env['torch']} CUDA {env['cuda_runtime']} on {env['gpu']} (sm {env['capability']}), batch 1, "
          f"{args.iters} timed steps per row (CUDA events, device-resident inputs)\n{table}\n"
          f"reference mask foreground fraction: {', '.join(f'{k} {v:.2%}' for k, v in fgs.items())}")
    doc = {"env": env, "iters": args.iters, "outputs": list(OUTPUT_NAMES), "rows": rows, "table": table}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
