"""`icf-bench model` and `icf-bench baseline`: step latency per model x backend x resolution x precision.

model: every ICF variant asked for, on every backend asked for, after warm-up, rotating through
several input sets; also parameters and GFLOPs (this folds in the old bench/model_cost.py).
baseline: the same frames through the AVSBench-style reference network (bench/baseline_net.py,
eager) and through our backends, in the same process, reported as ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from .backends import Artifacts, RunSpec, input_tuple
from .env import envelope
from .flops import cost
from .frames import input_sets
from .measure import measure, model_ratios, parse_resolution, ratios_md
from .report import command_line, header_md, latency_table, md_table, targets_md, write_report

BACKEND_NAMES = ("eager", "compile", "cudagraph", "onnxruntime", "tensorrt", "aotinductor")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_common(p: argparse.ArgumentParser, *, backends: tuple[str, ...] | None = None) -> None:
    p.add_argument("--models", nargs="+", default=None, help="registry names (default: icf-lite icf-r50; smoke: icf-tiny)")
    p.add_argument("--backends", nargs="+", choices=BACKEND_NAMES, default=backends,
                   help="default on a GPU: eager compile cudagraph tensorrt; on the CPU: eager onnxruntime "
                        "(compile on the CPU costs ~20 s per model, aotinductor ~40 s+ to build its package once; ask for them)")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"), default=None, help="default: fp32 fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--resolutions", nargs="+", default=["224"], help="N or HxW (default 224)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--runs", type=int, default=None, help="timed calls per row (default 100; smoke 4)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 10; smoke 1)")
    p.add_argument("--input-sets", type=int, default=None, help="distinct inputs rotated through (default 8; smoke 2)")
    p.add_argument("--inputs", default="auto", choices=("auto", "synthavs", "random"), help="where frames come from")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime (default 2; smoke 1)")
    p.add_argument("--channels-last", action="store_true", help="torch rows use channels_last memory format")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on CUDA, default on CPU)")
    p.add_argument("--freezing", action="store_true", help="Inductor freezing for compile rows (folds BN into convs)")
    p.add_argument("--row-budget-s", type=float, default=60.0, help="stop timing a row after this many seconds")
    p.add_argument("--artifacts", type=Path, default=None, help="keep checkpoints/ONNX exports here (default: a temp dir)")
    p.add_argument("--smoke", action="store_true", help="tiny model and counts: checks the command end to end in seconds")
    p.add_argument("--no-plots", action="store_true", help="JSON + Markdown only")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default out/bench)")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    device = default_device() if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    args.device = device
    args.models = args.models or (["icf-tiny"] if args.smoke else ["icf-lite", "icf-r50"])
    args.backends = args.backends or (["eager", "compile", "cudagraph", "tensorrt"] if gpu else ["eager", "onnxruntime"])
    args.precisions = args.precisions or (["fp32", "fp16"] if gpu else ["fp32"])
    args.runs = args.runs or (4 if args.smoke else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 10)
    args.input_sets = args.input_sets or (2 if args.smoke else 8)
    # smoke: one thread, so a busy shared CPU does not stall OpenMP barriers
    args.threads = args.threads or (1 if args.smoke else min(2, os.cpu_count() or 1))
    args.resolution_list = [parse_resolution(r) for r in args.resolutions]
    return args


def specs_for(args: argparse.Namespace) -> list[RunSpec]:
    """Eager fp32 first: it is the reference for output diffs and the denominator of speed-ups."""
    specs = [RunSpec("torch", "eager", "fp32", args.channels_last)]
    for b in args.backends:
        for prec in args.precisions:
            if b in ("eager", "compile", "cudagraph"):
                spec = RunSpec("torch", b, prec, args.channels_last, args.compile_mode if b == "compile" else None, args.freezing and b == "compile")
            else:
                spec = RunSpec(b, "engine", prec)
            if spec not in specs:
                specs.append(spec)
    return specs


def sweep(args: argparse.Namespace, folder: Path, *, with_baseline: bool) -> tuple[list[dict], list[dict]]:
    """(rows, cost lines). Progress goes to stdout as each row finishes."""
    import torch

    torch.set_num_threads(args.threads)
    rows, costs = [], []
    for res in args.resolution_list:
        for name in args.models:
            arts = Artifacts(name, res, folder)
            net = arts.net()
            sets, source = input_sets(net.config, args.input_sets, source=args.inputs)
            costs.append({"model": name, "resolution": f"{res[0]}x{res[1]}", **cost(net, input_tuple(sets[0])), "inputs": source})
            del net
            reference = None
            for spec in specs_for(args):
                row, out = measure(spec, model=name, resolution=res, artifacts=arts, sets=sets, device=args.device,
                                   warmup=args.warmup, iters=args.runs, threads=args.threads, budget_s=args.row_budget_s, reference=reference)
                if reference is None and row.get("status") == "ok":
                    reference = out
                rows.append(row)
                print(progress(row), flush=True)
            if with_baseline and name == args.models[0]:  # the same image + audio as the first model's rows
                rows.extend(baseline_rows(args, res, sets))
                costs.append(baseline_cost_line(res))
    return rows, costs


def baseline_rows(args: argparse.Namespace, res: tuple[int, int], sets: list) -> list[dict]:
    rows = []
    precisions = ["fp32", "fp16"] if args.device.startswith("cuda") else ["fp32"]
    for prec in precisions:
        row, _ = measure(RunSpec("baseline", "eager", prec), model="baseline-avsbench", resolution=res, artifacts=None, sets=sets,
                         device=args.device, warmup=args.warmup, iters=args.runs, budget_s=args.row_budget_s)
        rows.append(row)
        print(progress(row), flush=True)
    return rows


def baseline_cost_line(res: tuple[int, int]) -> dict:
    from .baseline_net import cost as baseline_cost

    return {"model": "baseline-avsbench", "resolution": f"{res[0]}x{res[1]}", **baseline_cost(res), "inputs": "same frames as above"}


def progress(row: dict) -> str:
    head = f"[{row['model']} {row['resolution']}] {row['label']:<40}"
    if row.get("status") == "ok":
        return f"{head} p50 {row['p50_ms']:8.3f} ms  p95 {row['p95_ms']:8.3f}  p99 {row['p99_ms']:8.3f}  setup {row['setup_s']:.1f}s"
    return f"{head} {row.get('status')}: {row.get('reason') or row.get('error')}"


def run(args: argparse.Namespace, *, command: str) -> dict:
    args = resolve(args)
    with_baseline = command == "baseline"
    if args.artifacts:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        rows, costs = sweep(args, args.artifacts, with_baseline=with_baseline)
    else:
        with tempfile.TemporaryDirectory(prefix="icf-bench-") as tmp:
            rows, costs = sweep(args, Path(tmp), with_baseline=with_baseline)
    doc = envelope(command, vars(args))
    doc["command_line"] = command_line()
    ratios, targets = model_ratios(rows)
    doc.update(cost=costs, rows=rows, ratios=ratios, targets=targets)
    cost_md = md_table(["model", "res", "params M", "GFLOPs", "GMACs", "inputs"],
                       [[c["model"], c["resolution"], c["params_M"], c["gflops"], c["gmacs"], c["inputs"]] for c in costs])
    title = "Baseline (AVSBench-style, eager) vs ICF" if with_baseline else "Model step latency"
    md = "\n\n".join(x for x in [header_md(doc, title), cost_md, latency_table(rows), ratios_md(ratios), targets_md(targets)] if x)
    doc["written"] = write_report(doc, args.out, command, md, plots=not args.no_plots)
    print(md, flush=True)
    return doc
