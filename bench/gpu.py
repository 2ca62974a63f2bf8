"""Everything that needs a GPU, in ONE prepared run of under 4 minutes (H100 / H200).

    bash scripts/gpu.sh                    # on the GPU machine; writes to $OUT (or out/bench/gpu)
    python -m bench.gpu --smoke --out /tmp/gpu-smoke   # here, on the CPU, before spending GPU time

Measures step latency (batch 1, 224 x 224, CUDA events, warm-up, 8 rotating input sets) of
icf-lite and icf-r50 in eager fp32, eager fp16, CUDA-graph replay (fp16, channels_last),
torch.compile (mode reduce-overhead, fp16, channels_last, with and without Inductor freezing,
which folds BN into convs) and TensorRT fp16 when installed; the AVSBench-style baseline network
in eager fp32 / fp16; then the ratios (best vs eager fp32 of the same model; ours best vs the
baseline in eager) and the targets (icf-lite <= 0.5 ms, icf-r50 <= 1.0 ms, >= 5x vs eager).

Order: cheap rows first (baseline, eager, CUDA graphs), then compiles (~20 s each), so a run cut
short still has the essentials; no new row starts once --budget-s is spent. gpu.json is
rewritten after every row; progress lines are flushed. Imports torch, NumPy, model/, engine/
(its torch / TensorRT backends) and bench's torch-only helpers: no pyzmq, PyAV, matplotlib.
Render PNGs here afterwards: icf-bench plot out/bench/gpu/gpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo importable (model/, engine/, bench/)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends import Artifacts, RunSpec, input_tuple  # noqa: E402
from bench.env import envelope  # noqa: E402
from bench.flops import cost  # noqa: E402
from bench.frames import random_sets  # noqa: E402
from bench.measure import measure, model_ratios, ratios_md  # noqa: E402
from bench.report import command_line, header_md, latency_table, md_table, targets_md, write_json  # noqa: E402

VARIANTS = {
    "eager-fp32": RunSpec("torch", "eager", "fp32"),
    "eager-fp16": RunSpec("torch", "eager", "fp16"),
    "cudagraph-fp16-cl": RunSpec("torch", "cudagraph", "fp16", True),
    "compile-ro-freeze-fp16-cl": RunSpec("torch", "compile", "fp16", True, "reduce-overhead", True),
    "tensorrt-fp16": RunSpec("tensorrt", "engine", "fp16"),
    "compile-ro-fp16-cl": RunSpec("torch", "compile", "fp16", True, "reduce-overhead", False),
    # opt-in: Inductor autotunes GEMM/conv templates; minutes of compile, beyond the 4-minute run
    "compile-mat-freeze-fp16-cl": RunSpec("torch", "compile", "fp16", True, "max-autotune-no-cudagraphs", True),
    # opt-in: AOTInductor package (compiled once per row, not in setup_s: setup_s is load + first call)
    "aoti-fp16": RunSpec("aotinductor", "engine", "fp16"),
    "aoti-fp32": RunSpec("aotinductor", "engine", "fp32"),
}
DEFAULT_VARIANTS = ["eager-fp32", "eager-fp16", "cudagraph-fp16-cl", "compile-ro-freeze-fp16-cl", "tensorrt-fp16", "compile-ro-fp16-cl"]
BASELINE = {"baseline-eager-fp32": RunSpec("baseline", "eager", "fp32"), "baseline-eager-fp16": RunSpec("baseline", "eager", "fp16")}
# Seconds a row needs at least before it may start (compiles take ~15-25 s on an H100).
NEEDS_S = {"compile": 45.0, "tensorrt": 90.0, "aotinductor": 90.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/gpu.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "out/bench/gpu"),
                    help="output folder (default $OUT, else out/bench/gpu)")
    ap.add_argument("--models", nargs="+", default=None, help="default icf-lite icf-r50 (smoke: icf-tiny)")
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS), help=f"default {' '.join(DEFAULT_VARIANTS)}")
    ap.add_argument("--no-baseline", action="store_true", help="leave out the AVSBench-style reference network")
    ap.add_argument("--resolution", type=int, default=224, help="square input size (default 224)")
    ap.add_argument("--runs", type=int, default=None, help="timed steps per row (default 300; smoke 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30; smoke 1)")
    ap.add_argument("--input-sets", type=int, default=8, help="distinct inputs rotated through (default 8)")
    ap.add_argument("--budget-s", type=float, default=200.0, help="start no new row after this many seconds (default 200)")
    ap.add_argument("--row-budget-s", type=float, default=20.0, help="stop timing one row after this many seconds")
    ap.add_argument("--smoke", action="store_true", help="CPU, icf-tiny, tiny counts (fp16 on the CPU too): checks this script here")
    args = ap.parse_args(argv)
    args.models = args.models or (["icf-tiny"] if args.smoke else ["icf-lite", "icf-r50"])
    args.variants = args.variants or DEFAULT_VARIANTS
    args.runs = args.runs or (3 if args.smoke else 300)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 30)
    if args.smoke:
        args.input_sets = min(args.input_sets, 2)
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str, RunSpec]]:
    """(model, variant name, spec) in run order: cheap rows for every model, then the compiles."""
    order = [] if args.no_baseline else [("baseline-avsbench", n, s) for n, s in BASELINE.items()]
    cheap = [v for v in args.variants if VARIANTS[v].mode != "compile" and VARIANTS[v].backend == "torch"]
    rest = [v for v in args.variants if v not in cheap]
    for group in (cheap, *[[v] for v in rest]):
        order += [(m, v, VARIANTS[v]) for m in args.models for v in group]
    return order


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    import torch

    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.smoke:
        print("WARNING: no CUDA GPU visible; running on the CPU (numbers are not GPU numbers)", flush=True)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest conv algorithms
    # smoke: one thread, so a busy shared CPU does not stall OpenMP barriers (seen: 200x slower)
    torch.set_num_threads(1 if args.smoke else min(os.cpu_count() or 1, 8))
    args.out.mkdir(parents=True, exist_ok=True)
    doc = envelope("gpu", vars(args))
    doc["command_line"] = command_line()
    doc["settings"] = {"device": device, "cudnn_benchmark": True, "timer": "cuda-events" if device == "cuda" else "perf_counter",
                       "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    doc.update(cost=[], rows=[], ratios=[], targets=[])
    json_path = args.out / "gpu.json"
    write_json(json_path, doc)
    print(f"device {device} {torch.cuda.get_device_name(0) if device == 'cuda' else ''}; torch {torch.__version__}; out {args.out}", flush=True)
    res = (args.resolution, args.resolution)
    with tempfile.TemporaryDirectory(prefix="icf-gpu-") as tmp:
        arts, sets, refs = {}, {}, {}
        for name in args.models:
            arts[name] = Artifacts(name, res, Path(tmp))
            net = arts[name].net()
            sets[name] = random_sets(net.config, args.input_sets, seed=0)  # NumPy only: no OpenCV / synthavs here
            doc["cost"].append({"model": name, "resolution": f"{res[0]}x{res[1]}", **cost(net, input_tuple(sets[name][0]))})
            del net
        if not args.no_baseline:
            from bench.baseline_net import cost as baseline_cost

            doc["cost"].append({"model": "baseline-avsbench", "resolution": f"{res[0]}x{res[1]}", **baseline_cost(res)})
        for model_name, variant, spec in plan(args):
            elapsed = time.perf_counter() - t_start
            need = NEEDS_S.get(spec.mode, NEEDS_S.get(spec.backend, 5.0))
            if elapsed + need > args.budget_s:
                row = {"model": model_name, "resolution": f"{res[0]}x{res[1]}", "label": spec.label, "backend": spec.backend, "mode": spec.mode,
                       "precision": spec.precision, "device": device, "status": "skipped",
                       "reason": f"budget: {elapsed:.0f} s spent of --budget-s {args.budget_s:.0f}, row needs ~{need:.0f} s"}
            else:
                is_base = spec.backend == "baseline"
                row, out = measure(spec, model=model_name, resolution=res, artifacts=None if is_base else arts[model_name],
                                   sets=sets[args.models[0]] if is_base else sets[model_name], device=device, warmup=args.warmup,
                                   iters=args.runs, budget_s=args.row_budget_s, reference=refs.get(model_name),
                                   allow_cpu_half=args.smoke and not is_base)  # the baseline in fp16 on a CPU takes seconds per step
                if variant in ("eager-fp32", "baseline-eager-fp32") and out is not None:
                    refs[model_name] = out  # outputs of later rows are compared with eager fp32
            row["variant"] = variant
            doc["rows"].append(row)
            doc["ratios"], doc["targets"] = model_ratios(doc["rows"], f"{res[0]}x{res[1]}")
            doc["elapsed_s"] = round(time.perf_counter() - t_start, 1)
            write_json(json_path, doc)
            print(progress(row, time.perf_counter() - t_start), flush=True)
    md = markdown(doc)
    (args.out / "gpu.md").write_text(md + "\n")
    print("\n" + md, flush=True)
    return 0


def progress(row: dict, elapsed: float) -> str:
    head = f"[{elapsed:6.1f}s] {row['model']:<18} {row['label']:<40}"
    if row.get("status") == "ok":
        diff = f" diff {row['max_abs_diff']:.2e}" if "max_abs_diff" in row else ""
        return f"{head} p50 {row['p50_ms']:.3f} ms p95 {row['p95_ms']:.3f} p99 {row['p99_ms']:.3f} setup {row['setup_s']:.1f}s{diff}"
    return f"{head} {row['status']}: {row.get('reason') or row.get('error')}"


def markdown(doc: dict) -> str:
    costs = md_table(["model", "res", "params M", "GFLOPs"], [[c["model"], c["resolution"], c["params_M"], c["gflops"]] for c in doc["cost"]])
    parts = [header_md(doc, "GPU step latency (batch 1)"), costs, latency_table(doc["rows"]), ratios_md(doc["ratios"]), targets_md(doc["targets"])]
    return "\n\n".join(p for p in parts if p)


if __name__ == "__main__":
    sys.exit(main())
