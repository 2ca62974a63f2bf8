"""`icf-bench streams`: how many camera streams one model serves (stream/multistream_serve.py).

For each N in --counts: N synthetic SynthAVS scenes (WxH at --fps, paced to real time) through
``icf-stream serve``'s graph (one process per source, one batched segmenter, one sink per
stream), icf-lite on ONNX Runtime (per-batch-size static exports) or --null. Reports per N the
worst stream's processed ratio and capture -> mask p99, and plots both against N.
Goal on this 2-core CPU: >= 3 streams of 640x480 at 30 fps, each >= 95 % processed with p99 <= 66 ms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .env import envelope
from .report import command_line, header_md, md_table, write_report

GOAL = {"processed_ratio": 0.95, "p99_ms": 66.0}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counts", default="1,2,3,4", help="numbers of streams to try (default 1,2,3,4)")
    p.add_argument("--seconds", type=float, default=None, help="stream length per N (default 15; smoke 2)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights, weights/icf-lite-stamps.safetensors)")
    src.add_argument("--model", default=None, help="registry model with untrained weights instead")
    src.add_argument("--null", action="store_true", help="no model: the multi-stream pipeline's own cost")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1: the other core runs sources and sinks)")
    p.add_argument("--deadline-ms", type=float, default=5.0)
    p.add_argument("--shm", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--smoke", action="store_true", help="--null, 2 s, N = 1,2 at 320x240: checks the command end to end")
    p.add_argument("--step-only", action="store_true", help="only time the batched step per batch size (no streams)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", type=Path, default=Path("out/bench"))


def run(args: argparse.Namespace) -> dict:
    from stream.multistream_serve import ServeConfig, run_serve
    from stream.serve_cli import backend_spec

    if args.step_only:
        return step_per_batch(args)
    if args.smoke:
        args.null, args.width, args.height = True, 320, 240
        args.counts = "1,2" if args.counts == "1,2,3,4" else args.counts
    args.seconds = args.seconds or (2.0 if args.smoke else 15.0)
    counts = sorted({int(v) for v in args.counts.split(",") if v.strip()})
    rows = []
    for n in counts:
        spec = backend_spec(null=args.null, weights=args.weights, model=args.model, sizes=list(range(1, n + 1)), threads=args.threads)
        sources = [{"kind": "synthetic", "width": args.width, "height": args.height, "fps": args.fps, "seed": i,
                    "seconds": args.seconds, "pace": "realtime"} for i in range(n)]
        print(f"streams: N={n} {args.width}x{args.height}@{args.fps} for {args.seconds:g} s, model {spec.get('artifact', 'null')}", flush=True)
        report = run_serve(ServeConfig(sources=sources, backend=spec, shm=args.shm, deadline_ms=args.deadline_ms))
        per = {sid: {"processed_ratio": s["processed_ratio"], "p50_ms": s["capture_to_mask_ms"].get("p50_ms"),
                     "p99_ms": s["capture_to_mask_ms"].get("p99_ms"), "sent": s["sent"], "processed": s["processed"], "miou": s["miou"]}
               for sid, s in report["streams"].items()}
        ratios = [v["processed_ratio"] or 0.0 for v in per.values()]
        p99s = [v["p99_ms"] if v["p99_ms"] is not None else float("inf") for v in per.values()]
        ok = report["ok"] and min(ratios) >= GOAL["processed_ratio"] and max(p99s) <= GOAL["p99_ms"]
        rows.append({"n": n, "ok": report["ok"], "errors": report["errors"], "meets_goal": ok, "min_processed_ratio": min(ratios),
                     "max_p99_ms": max(p99s), "streams": per, "batching": report.get("batching"), "model": report.get("model")})
        print(f"  N={n}: min processed ratio {min(ratios):.3f}, worst p99 {max(p99s):.1f} ms, goal {'met' if ok else 'missed'}", flush=True)
    doc = envelope("streams", vars(args))
    doc["command_line"] = command_line()
    doc.update(goal=GOAL, results=rows, largest_n_meeting_goal=max((r["n"] for r in rows if r["meets_goal"]), default=0))
    md = markdown(doc)
    stem = f"streams_{args.width}x{args.height}" + ("_null" if args.null else "")
    doc["written"] = write_report(doc, args.out, stem, md, plots=False)
    if not args.no_plots:
        doc["written"]["png"] = [str(plot(doc, Path(args.out) / f"{stem}.png"))]
    print(md, flush=True)
    return doc


def step_per_batch(args: argparse.Namespace, runs: int = 30) -> dict:
    """ms per batched step call and per row, for each exported batch size (same inputs repeated)."""
    import time

    import numpy as np

    from engine import runtime
    from engine.inputs import random_inputs
    from stream.serve_cli import backend_spec

    counts = sorted({int(v) for v in args.counts.split(",") if v.strip()})
    spec = backend_spec(null=False, weights=args.weights, model=args.model, sizes=counts, threads=args.threads)
    rows = []
    for b in counts:
        be = runtime.load(spec["artifacts"][b], backend="onnxruntime", threads=args.threads)
        x = random_inputs(be.input_specs, np.random.default_rng(0))
        for _ in range(3):
            be.infer(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            be.infer(x)
            ts.append((time.perf_counter() - t0) * 1e3)
        be.close()
        rows.append({"batch": b, "p50_ms": round(float(np.percentile(ts, 50)), 2), "p99_ms": round(float(np.percentile(ts, 99)), 2),
                     "per_row_p50_ms": round(float(np.percentile(ts, 50)) / b, 2)})
        print(rows[-1], flush=True)
    doc = envelope("streams-step", vars(args))
    doc.update(command_line=command_line(), results=rows)
    md = header_md(doc, "Batched step per batch size") + "\n\n" + md_table(["batch", "p50 ms", "p99 ms", "per row p50 ms"],
                                                                          [[r["batch"], r["p50_ms"], r["p99_ms"], r["per_row_p50_ms"]] for r in rows])
    doc["written"] = write_report(doc, args.out, f"streams_step_t{args.threads}", md, plots=False)
    print(md, flush=True)
    return doc


def markdown(doc: dict) -> str:
    table = md_table(["N streams", "min processed ratio", "worst p99 capture->mask ms", "mean batch rows", "batch histogram", "goal met"],
                     [[r["n"], r["min_processed_ratio"], r["max_p99_ms"], (r["batching"] or {}).get("mean_rows"),
                       (r["batching"] or {}).get("histogram"), r["meets_goal"]] for r in doc["results"]])
    per = md_table(["N", "stream", "sent", "processed", "ratio", "p50 ms", "p99 ms"],
                   [[r["n"], sid, s["sent"], s["processed"], s["processed_ratio"], s["p50_ms"], s["p99_ms"]]
                    for r in doc["results"] for sid, s in r["streams"].items()])
    a = doc["args"]
    return "\n\n".join([header_md(doc, "Many streams, one model"),
                        f"{a['width']}x{a['height']} at {a['fps']} fps, {a['seconds']:g} s per N; goal: each stream >= "
                        f"{GOAL['processed_ratio']:.0%} processed, p99 <= {GOAL['p99_ms']:g} ms. "
                        f"Largest N meeting it: {doc['largest_n_meeting_goal']}.", table, per])


def plot(doc: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in doc["results"]]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(ns, [r["max_p99_ms"] for r in doc["results"]], "o-")
    ax[0].axhline(GOAL["p99_ms"], ls="--", c="gray")
    ax[0].set(xlabel="streams", ylabel="worst stream p99 capture->mask (ms)")
    ax[1].plot(ns, [r["min_processed_ratio"] for r in doc["results"]], "o-")
    ax[1].axhline(GOAL["processed_ratio"], ls="--", c="gray")
    ax[1].set(xlabel="streams", ylabel="worst stream processed ratio", ylim=(0, 1.05))
    load = (doc.get("machine") or {}).get("load_average")
    for a in ax:
        a.set_xticks(ns)
    fig.suptitle(f"{doc['args']['width']}x{doc['args']['height']}@{doc['args']['fps']}, {doc['results'][0].get('model')}, "
                 f"{(doc.get('machine') or {}).get('cores')} cores, load average at start {load}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["run", "add_args"]
