"""`icf-bench streams`: how many camera streams one model serves (stream/graph/multistream_serve.py).

For each N in --counts: N synthetic SynthAVS scenes (WxH at --fps, paced to real time) through
``icf-stream serve``'s graph (one process per source, one batched segmenter, one sink per
stream), icf-lite on --backend (onnxruntime, torch eager / compile / cudagraph, aotinductor: one
static-shape program per batch size) or --null. Reports per N the worst stream's processed ratio
and capture -> mask p99 (plotted against N), and the CPU-ms per processed frame of the whole graph
(every process, from /proc while it runs: bench/graph_cpu.py) split into sources, model, the rest of
the segmenter, sinks, ZeroMQ I/O threads and the supervisor.
Goal on this 2-core CPU: >= 3 streams of 640x480 at 30 fps, each >= 95 % processed with p99 <= 66 ms.

    icf-bench streams --counts 1,2,3 --backend torch --torch-mode compile --out out/bench
"""

from __future__ import annotations

import argparse
import os
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
    from stream.cli.serve_cli import add_backend_args

    add_backend_args(p)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: the other core runs sources and sinks)")
    p.add_argument("--batch-sizes", default=None, help="static batch sizes per N, comma-separated (default 1..N; larger N pad to these)")
    p.add_argument("--deadline-ms", type=float, default=5.0)
    p.add_argument("--shm", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--smoke", action="store_true", help="--null, 2 s, N = 1,2 at 320x240: checks the command end to end")
    p.add_argument("--step-only", action="store_true", help="only time the batched step per batch size (no streams)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", type=Path, default=Path("out/bench"))


def run(args: argparse.Namespace) -> dict:
    from stream.cli.serve_cli import backend_spec, startup_budget_s
    from stream.graph.multistream_serve import ServeConfig, run_serve

    from .graph_cpu import GraphCPU, breakdown

    if args.step_only:
        return step_per_batch(args)
    if args.smoke:
        args.null, args.width, args.height = True, 320, 240
        args.counts = "1,2" if args.counts == "1,2,3,4" else args.counts
    args.seconds = args.seconds or (2.0 if args.smoke else 15.0)
    counts = sorted({int(v) for v in args.counts.split(",") if v.strip()})
    batch_sizes = sorted({int(v) for v in (args.batch_sizes or "").split(",") if v.strip()})
    rows = []
    for n in counts:
        sizes = ([b for b in batch_sizes if b <= n] or [1]) if batch_sizes else list(range(1, n + 1))
        spec = backend_spec(null=args.null, weights=args.weights, model=args.model, sizes=sizes, threads=args.threads,
                            backend=args.backend, torch_mode=args.torch_mode, device=args.device)
        sources = [{"kind": "synthetic", "width": args.width, "height": args.height, "fps": args.fps, "seed": i,
                    "seconds": args.seconds, "pace": "realtime"} for i in range(n)]
        print(f"streams: N={n} {args.width}x{args.height}@{args.fps} for {args.seconds:g} s, model {spec.get('artifact', 'null')} "
              f"on {spec.get('backend', 'null')} {spec.get('options', {})}", flush=True)
        load_before = [round(v, 2) for v in os.getloadavg()]
        with GraphCPU() as cpu:
            report = run_serve(ServeConfig(sources=sources, backend=spec, shm=args.shm, deadline_ms=args.deadline_ms,
                                           startup_timeout_s=startup_budget_s(spec)), on_go=cpu.on_go)
        step = (report.get("batching") or {}).get("step") or {}
        cost = breakdown(cpu.result(), (step.get("model_cpu_ms") or 0.0) / 1e3, sum(s["processed"] for s in report["streams"].values()),
                         sum(s["sent"] or 0 for s in report["streams"].values()))
        per = {sid: {"processed_ratio": s["processed_ratio"], "p50_ms": s["capture_to_mask_ms"].get("p50_ms"),
                     "p99_ms": s["capture_to_mask_ms"].get("p99_ms"), "sent": s["sent"], "processed": s["processed"], "miou": s["miou"]}
               for sid, s in report["streams"].items()}
        ratios = [v["processed_ratio"] or 0.0 for v in per.values()]
        p99s = [v["p99_ms"] if v["p99_ms"] is not None else float("inf") for v in per.values()]
        ok = report["ok"] and min(ratios) >= GOAL["processed_ratio"] and max(p99s) <= GOAL["p99_ms"]
        rows.append({"n": n, "ok": report["ok"], "errors": report["errors"], "meets_goal": ok, "min_processed_ratio": min(ratios),
                     "max_p99_ms": max(p99s), "streams": per, "batching": report.get("batching"), "model": report.get("model"),
                     "backend": {k: spec.get(k) for k in ("backend", "options") if k in spec}, "cpu": cost, "cpu_nodes": cpu.result(),
                     "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()]})
        print(f"  N={n}: min processed ratio {min(ratios):.3f}, worst p99 {max(p99s):.1f} ms, goal {'met' if ok else 'missed'}; "
              f"graph CPU {cost['graph_cpu_ms_per_processed_frame']} ms per processed frame {cost['cpu_ms_per_processed_frame']}", flush=True)
    doc = envelope("streams", vars(args))
    doc["command_line"] = command_line()
    doc.update(goal=GOAL, results=rows, largest_n_meeting_goal=max((r["n"] for r in rows if r["meets_goal"]), default=0))
    md = markdown(doc)
    stem = f"streams_{args.width}x{args.height}" + ("_null" if args.null else "" if args.backend == "onnxruntime" else f"_{backend_label(args)}")
    doc["written"] = write_report(doc, args.out, stem, md, plots=False)
    if not args.no_plots:
        doc["written"]["png"] = [str(plot(doc, Path(args.out) / f"{stem}.png"))]
    print(md, flush=True)
    return doc


def step_per_batch(args: argparse.Namespace, runs: int = 30) -> dict:
    """ms (wall and process CPU) per batched step call and per row, for each batch size (same inputs repeated)."""
    import time

    import numpy as np

    from engine import runtime
    from engine.batching import open_sizes
    from engine.inputs import random_inputs
    from stream.cli.serve_cli import backend_spec

    counts = sorted({int(v) for v in args.counts.split(",") if v.strip()})
    spec = backend_spec(null=False, weights=args.weights, model=args.model, sizes=counts, threads=args.threads,
                        backend=args.backend, torch_mode=args.torch_mode, device=args.device)
    first = runtime.load(spec["artifact"], backend=spec["backend"], **spec["options"])
    backends = open_sizes(first, spec.get("batch_sizes") or [], artifacts=spec.get("artifacts"), backend=spec["backend"],
                          options=spec["options"])
    rows = []
    for b in counts:
        be = backends[b]
        x = random_inputs(be.input_specs, np.random.default_rng(0))
        for _ in range(3):
            be.infer(x)
        ts, cs = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            be.infer(x)
            ts.append((time.perf_counter() - t0) * 1e3)
            cs.append((time.process_time() - c0) * 1e3)
        rows.append({"batch": b, "p50_ms": round(float(np.percentile(ts, 50)), 2), "p99_ms": round(float(np.percentile(ts, 99)), 2),
                     "per_row_p50_ms": round(float(np.percentile(ts, 50)) / b, 2),
                     "per_row_cpu_p50_ms": round(float(np.percentile(cs, 50)) / b, 2)})
        print(rows[-1], flush=True)
    for be in backends.values():
        be.close()
    doc = envelope("streams-step", vars(args))
    doc.update(command_line=command_line(), results=rows)
    md = header_md(doc, f"Batched step per batch size ({backend_label(args)})") + "\n\n" + md_table(
        ["batch", "p50 ms", "p99 ms", "per row p50 ms", "per row CPU p50 ms"],
        [[r["batch"], r["p50_ms"], r["p99_ms"], r["per_row_p50_ms"], r["per_row_cpu_p50_ms"]] for r in rows])
    label = "" if args.backend == "onnxruntime" else f"_{backend_label(args)}"
    doc["written"] = write_report(doc, args.out, f"streams_step{label}_t{args.threads}", md, plots=False)
    print(md, flush=True)
    return doc


def backend_label(args: argparse.Namespace) -> str:
    return args.backend + (f"-{args.torch_mode}" if args.backend == "torch" and args.torch_mode else "")


PARTS = ("sources", "model", "segmenter_other", "sinks", "zmq_io_threads", "supervisor")


def markdown(doc: dict) -> str:
    table = md_table(["N streams", "min processed ratio", "worst p99 capture->mask ms", "mean batch rows", "batch histogram",
                      "graph CPU-ms / processed frame", "goal met"],
                     [[r["n"], r["min_processed_ratio"], r["max_p99_ms"], (r["batching"] or {}).get("mean_rows"),
                       (r["batching"] or {}).get("histogram"), r["cpu"]["graph_cpu_ms_per_processed_frame"], r["meets_goal"]]
                      for r in doc["results"]])
    cost = md_table(["N", *PARTS, "graph", "sources per sent frame", "load before", "load after"],
                    [[r["n"], *(r["cpu"]["cpu_ms_per_processed_frame"][k] for k in PARTS), r["cpu"]["graph_cpu_ms_per_processed_frame"],
                      r["cpu"]["cpu_ms_per_sent_frame"]["sources"], r["load_average_before"], r["load_average_after"]] for r in doc["results"]])
    per = md_table(["N", "stream", "sent", "processed", "ratio", "p50 ms", "p99 ms"],
                   [[r["n"], sid, s["sent"], s["processed"], s["processed_ratio"], s["p50_ms"], s["p99_ms"]]
                    for r in doc["results"] for sid, s in r["streams"].items()])
    a = doc["args"]
    return "\n\n".join([header_md(doc, "Many streams, one model"),
                        f"{a['width']}x{a['height']} at {a['fps']} fps, {a['seconds']:g} s per N; goal: each stream >= "
                        f"{GOAL['processed_ratio']:.0%} processed, p99 <= {GOAL['p99_ms']:g} ms. "
                        f"Largest N meeting it: {doc['largest_n_meeting_goal']}.", table,
                        "CPU-ms per processed frame, whole graph (every process from go to its end, /proc; bench/graph_cpu.py):", cost, per])


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
