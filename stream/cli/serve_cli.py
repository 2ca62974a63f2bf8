"""``icf-stream serve``: many camera streams, one model (stream/graph/multistream_serve.py).

    icf-stream serve --streams 3 --seconds 20                 # 3 synthetic 640x480 scenes, shipped weights
    icf-stream serve --video a.mp4 --video b.mp4 --publish tcp://127.0.0.1:5560   # every stream's masks, keyed by "stream"
    icf-stream serve --streams 4 --model icf-lite --batch-sizes 1,2,4 --out out/serve
    icf-stream serve --streams 4 --backend torch --torch-mode compile      # or aotinductor; cudagraph on a GPU (compiles: minutes per size on a CPU)

Every batch runs on a static-shape program, one per batch size: ONNX Runtime and AOTInductor load an
export / package made once per size (engine.cache.resolve(..., batch=B), cached in the engine cache,
built here before the processes start); torch compiles (or, on CUDA, captures) once per size at the
segmenter's start, over one copy of the weights (engine.batching.open_sizes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from weights import SHIPPED as SHIPPED_WEIGHTS  # package data: found from any directory
from weights import SHIPPED_NAME, weights_arg


def add_args(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("streams")
    s.add_argument("--streams", type=int, default=None, help="number of synthetic scenes (default 3; ignored with --video)")
    s.add_argument("--video", action="append", default=[], metavar="FILE", help="a video file per stream (repeat)")
    s.add_argument("--size", default="640x480", help="synthetic frame size WxH (default 640x480)")
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: 20 for synthetic)")
    m = p.add_argument_group("model (one of; default: the shipped weights)")
    g = m.add_mutually_exclusive_group()
    g.add_argument("--weights", metavar="CKPT", type=weights_arg, help=f"ICF checkpoint (.safetensors; {SHIPPED_NAME}: the shipped one)")
    g.add_argument("--model", metavar="NAME", help="registry model with untrained weights (icf-tiny, icf-lite)")
    g.add_argument("--null", action="store_true", help="no model: the pipeline's own cost")
    m.add_argument("--batch-sizes", default=None, help="exported batch sizes, comma-separated (default 1..number of streams, at most 8)")
    add_backend_args(m)
    m.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="intra-op threads on the CPU")
    m.add_argument("--deadline-ms", type=float, default=5.0, help="longest a ready frame waits for other streams' (default 5)")
    o = p.add_argument_group("pipeline and outputs")
    o.add_argument("--transport", default="ipc", choices=("ipc", "tcp"))
    o.add_argument("--shm", default="auto", choices=("auto", "on", "off"), help="frames by shared memory (auto: on for ipc)")
    o.add_argument("--publish", metavar="ADDR", help="PUB address for every stream's masks (each header names its stream; docs/protocol.md)")
    o.add_argument("--out", metavar="DIR", help="per-stream masks (<id>.npz) and metrics (<id>.jsonl)")
    o.add_argument("--report", metavar="FILE", help="write the run report (JSON)")
    from stream.cli.console import add_view_args

    add_view_args(o)  # every stream in one grid


SERVE_BACKENDS = ("onnxruntime", "torch", "aotinductor")
TORCH_MODES = ("eager", "compile", "cudagraph")


def add_backend_args(p) -> None:
    """--backend / --torch-mode / --device (``icf-stream serve`` and ``icf-bench streams``)."""
    p.add_argument("--backend", default="onnxruntime", choices=SERVE_BACKENDS,
                   help="engine for every batch size (default onnxruntime; aotinductor compiles one package per size, once)")
    p.add_argument("--torch-mode", default=None, choices=TORCH_MODES, help="torch backend mode (default: cudagraph on CUDA, else eager)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="torch / aotinductor device (default: cuda when present)")


def batch_artifacts(sizes: list[int], *, weights: str | None = None, model: str | None = None) -> dict[int, str]:
    """{B: onnx path}: engine.cache.resolve owns batch exports (made once per checkpoint and size, in a
    subprocess, so the stream's processes never import torch)."""
    from engine import cache

    if weights:
        return {b: str(cache.resolve(weights, "onnx", batch=b)) for b in sizes}
    return {b: str(cache.onnx_for_model(model, seed=0, batch=b)) for b in sizes}


def backend_spec(*, null: bool, weights: str | None, model: str | None, sizes: list[int], threads: int, backend: str = "onnxruntime",
                 torch_mode: str | None = None, device: str | None = None) -> dict:
    """The segmenter's backend spec (stream.stages.models; + "artifacts" {B: path} / "batch_sizes"), every
    export and package it needs made here, once, before any process starts."""
    if null:
        return {"kind": "null", "image_size": [224, 224], "batch_sizes": sizes}
    if not model and not weights:
        weights = str(SHIPPED_WEIGHTS)
    if weights and not Path(weights).is_file():
        raise SystemExit(f"icf-stream: weights file {weights} not found")
    sizes = sorted(set(sizes) | {1})
    if backend == "onnxruntime":
        arts = batch_artifacts(sizes, weights=weights, model=model)
        return {"kind": "engine", "artifact": arts[1], "artifacts": arts, "backend": "onnxruntime", "options": {"threads": threads}}
    if backend not in SERVE_BACKENDS:
        raise SystemExit(f"icf-stream: --backend must be one of {', '.join(SERVE_BACKENDS)}, not {backend!r}")
    from engine import cache
    from engine.runtime import cuda_available

    source = weights or str(cache.onnx_for_model(model, seed=0))  # the export records its seeded weights
    device = device or ("cuda" if cuda_available()[0] else "cpu")
    cpu = {"threads": threads} if device == "cpu" else {}
    if backend == "torch":
        mode = torch_mode or ("cudagraph" if device == "cuda" else "eager")
        if mode == "cudagraph" and device != "cuda":
            raise SystemExit("icf-stream: --torch-mode cudagraph needs a CUDA GPU (CUDA-graph capture is CUDA only); use eager or compile")
        return {"kind": "engine", "artifact": source, "backend": "torch", "options": {"mode": mode, "device": device, **cpu},
                "batch_sizes": sizes}
    arts = {b: str(cache.resolve(source, "package", device=device, precision="fp32", batch=b)) for b in sizes}
    return {"kind": "engine", "artifact": arts[1], "artifacts": arts, "backend": "aotinductor", "options": cpu}


def startup_budget_s(spec: dict) -> float:
    """How long the graph may take to open: torch compile compiles once per batch size in the segmenter
    (icf-lite on a loaded 2-core CPU: ~340 s for one size, docs/results/cpu_aoti.md)."""
    compiles = len(spec.get("batch_sizes") or []) if (spec.get("options") or {}).get("mode") == "compile" else 0
    return 180.0 + 360.0 * compiles


def parse_sizes(text: str | None, n: int) -> list[int]:
    if not text:
        return list(range(1, min(max(n, 1), 8) + 1))
    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"icf-stream: --batch-sizes must be comma-separated integers, not {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise SystemExit("icf-stream: --batch-sizes needs sizes >= 1")
    return sizes


def cmd_serve(args) -> int:
    from stream.graph.multistream_serve import ServeConfig, run_serve
    from stream.graph.report import save_report

    for v in args.video:
        if not Path(v).is_file():
            print(f"icf-stream: file '{v}' does not exist", file=sys.stderr)
            return 2
    try:
        w, h = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        print(f"icf-stream: size '{args.size}' is not WxH (e.g. 640x480)", file=sys.stderr)
        return 2
    if args.video:
        sources = [{"kind": "file", "video": v} for v in args.video]
    else:
        seconds = args.seconds or 20.0
        sources = [{"kind": "synthetic", "width": w, "height": h, "fps": args.fps, "seed": i, "seconds": seconds}
                   for i in range(args.streams or 3)]
    try:
        spec = backend_spec(null=args.null, weights=args.weights, model=args.model, sizes=parse_sizes(args.batch_sizes, len(sources)),
                            threads=args.threads, backend=args.backend, torch_mode=args.torch_mode, device=args.device)
    except SystemExit as exc:  # bad input found while resolving the model: one line, exit 2
        print(exc.code, file=sys.stderr)
        return 2
    cfg = ServeConfig(sources=sources, backend=spec, transport=args.transport, shm=args.shm, publish=args.publish,
                      out_dir=args.out, seconds=args.seconds, deadline_ms=args.deadline_ms, startup_timeout_s=startup_budget_s(spec))
    from stream.cli.console import run_in_console

    what = (f"icf-stream serve: {len(sources)} streams, model {spec.get('artifact', 'null')}, "
            f"batch sizes {spec.get('artifacts', spec.get('batch_sizes'))}")
    outs = f"  outputs: per-stream masks and metrics in {args.out}/" if args.out else "  outputs: none written (--out DIR keeps masks and metrics)"
    report = run_in_console(run_serve, cfg, view=args.view, quiet=args.quiet, banner=[what, outs], title="icf-stream serve")
    if report is None:
        return 2
    if args.report:
        save_report(report, args.report)
    print(summary(report))
    for sid, s in report["streams"].items():
        if not s["ok"]:
            print(f"icf-stream: warning: stream {sid} ended early: {s['ended']}", file=sys.stderr)
    for e in report["errors"]:
        print(f"icf-stream: error: {e}", file=sys.stderr)
    return 2 if report["errors"] else 0


def summary(report: dict) -> str:
    lines = [f"{'stream':10s} {'sent':>6s} {'processed':>10s} {'ratio':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'mIoU':>6s}"]
    for sid, s in report["streams"].items():
        c = s["capture_to_mask_ms"]
        lines.append(f"{sid:10s} {s['sent'] or 0:6d} {s['processed']:10d} {s['processed_ratio'] or 0:7.3f} "
                     f"{c.get('p50_ms', float('nan')):8.1f} {c.get('p99_ms', float('nan')):8.1f} {s['miou'] if s['miou'] is not None else '-':>6}")
    b = report.get("batching") or {}
    lines.append(f"batches: mean rows {b.get('mean_rows')}, histogram {b.get('histogram')}")
    return "\n".join(lines)
