"""`icf-bench pipeline --null --compare`: today's frame path against the shared-memory path, in one run.

Variants (PipelineConfig.shm x the worker's resize, stream/stages/resize.py):
  payload+area   frames as ZeroMQ payload, INTER_AREA resize (the path before issue 13)
  shm+area       frames through the shared-memory ring, INTER_AREA
  payload+fast   payload, the cheap resize
  shm-frames+fast  frames through the ring, results segmenter -> sink still as payload (the path
                 before the results ring)
  shm+fast       frames and results through shared-memory rings, cheap resize (the default on ipc)
Each variant runs ``--repeats`` times, interleaved (A B C D A B C D ...) so a load change on a
shared machine hits all of them alike; per-frame samples are pooled per variant. Overhead per
frame = capture -> mask minus the backend's own time (the NullBackend's is ~0), as the sink's
``overhead`` latency.

``python -m bench.shm_compare [WxH ...]`` times the source -> segmenter hop alone (two processes,
ipc, 30 frames/s of image + ground truth): send stamp -> arrays usable in the receiver.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from .env import envelope
from .report import command_line, header_md, md_table, write_report
from .stats import summarize

VARIANTS = (("payload+area", "off", "area"), ("shm+area", "on", "area"), ("payload+fast", "off", "fast"),
            ("shm-frames+fast", "frames", "fast"), ("shm+fast", "on", "fast"))
HOPS = ("to_context", "context_queue", "preprocess", "postprocess", "to_sink", "reorder")


def _one(args: argparse.Namespace, shm: str, resize: str, folder: Path) -> tuple[dict, list[dict]]:
    from stream import PipelineConfig, run_pipeline

    metrics = folder / f"m-{shm}-{resize}-{len(os.listdir(folder))}.jsonl"
    source = {"kind": "synthetic", "seconds": args.seconds, "fps": args.fps, "width": args.width, "height": args.height, "pace": "realtime"}
    cfg = PipelineConfig(source=source, backend={"kind": "null", "image_size": [224, 224], "resize": resize},
                         transport=args.transport, shm=shm, metrics=str(metrics))
    report = run_pipeline(cfg)
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
    return report, lines


def run(args: argparse.Namespace) -> dict:
    args.seconds = args.seconds or 10.0
    args.transport = args.transport or "ipc"
    repeats = max(1, int(getattr(args, "repeats", 2) or 2))
    pooled: dict[str, dict[str, list[float]]] = {v[0]: {k: [] for k in ("overhead", "capture_to_mask", *HOPS)} for v in VARIANTS}
    runs: dict[str, list[dict]] = {v[0]: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="icf-bench-shm-") as tmp:
        for r in range(repeats):
            for name, shm, resize in VARIANTS:
                print(f"compare: {name} (repeat {r + 1}/{repeats}) {args.width}x{args.height} {args.seconds:g} s over {args.transport}", flush=True)
                report, lines = _one(args, shm, resize, Path(tmp))
                for line in lines:
                    st = line.get("stages_ms") or {}
                    if "capture_to_mask" in st:
                        pooled[name]["capture_to_mask"].append(st["capture_to_mask"])
                        pooled[name]["overhead"].append(st["capture_to_mask"] - st.get("inference", 0.0))
                    for hop in HOPS:
                        if hop in st:
                            pooled[name][hop].append(st[hop])
                ctx = report.get("stages", {}).get("context", {}).get("counters", {})
                sink = report.get("stages", {}).get("sink", {}).get("counters", {})
                runs[name].append({"ok": report.get("ok"), "errors": report.get("errors"), "frames": report.get("frames"),
                                   "processed_ratio": (report.get("fps") or {}).get("processed_ratio"),
                                   "shm_frames": ctx.get("shm_frames", 0), "shm_stale": ctx.get("shm_stale", 0) + sink.get("shm_stale", 0),
                                   "shm_results": sink.get("shm_results", 0), "result_slot_waits": ctx.get("result_slot_waits", 0)})
    doc = envelope("pipeline-compare", vars(args))
    doc["command_line"] = command_line()
    doc["variants"] = {name: {k: summarize(v) for k, v in pooled[name].items()} | {"runs": runs[name]} for name, _, _ in VARIANTS}
    doc["goal"] = {"overhead_p50_ms": 2.0, "overhead_p99_ms": 4.0}
    md = markdown(doc)
    doc["written"] = write_report(doc, args.out, f"pipeline_compare_{args.width}x{args.height}", md, plots=False)
    print(md, flush=True)
    return doc


def markdown(doc: dict) -> str:
    rows = []
    for name, v in doc["variants"].items():
        o, c = v["overhead"], v["capture_to_mask"]
        ratio = [r["processed_ratio"] for r in v["runs"]]
        rows.append([name, o["p50_ms"], o["p99_ms"], c["p50_ms"], c["p99_ms"], v["to_context"]["p50_ms"], v["preprocess"]["p50_ms"],
                     v["to_sink"]["p50_ms"], o["n"], min(ratio) if all(x is not None for x in ratio) else None,
                     sum(r["shm_stale"] for r in v["runs"])])
    table = md_table(["variant", "overhead p50 ms", "overhead p99 ms", "capture->mask p50", "p99", "source->context p50",
                      "resize+to-float p50", "segmenter->sink p50", "frames", "min processed ratio", "shm stale"], rows)
    return "\n\n".join([header_md(doc, "Pipeline overhead: payload vs shared-memory frames (null model)"),
                        "Goal: overhead <= 2 ms p50 and <= 4 ms p99.",
                        "shm: frames source -> segmenter and results segmenter -> sink through shared-memory rings; "
                        "shm-frames: the frame ring only, results as ZeroMQ payload. shm stale: frames or results dropped "
                        "because their slot was reused.", table])


__all__ = ["run", "VARIANTS"]


def _hop_producer(addr: str, shm: bool, width: int, height: int, n: int, period_s: float) -> None:
    import time

    import numpy as np
    import zmq

    from stream.wire.protocol import encode
    from stream.wire.shm_link import ShmSender
    from stream.wire.transport import stamp

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(addr)
    sender = ShmSender({"slots": 16}) if shm else None
    rng = np.random.default_rng(0)
    frames = [{"image": rng.integers(0, 255, (height, width, 3), np.uint8), "gt_mask": rng.integers(0, 2, (height, width), np.uint8)}
              for _ in range(4)]
    time.sleep(0.5)
    for i in range(n):
        arrays = frames[i % 4]
        head = {"stream": "hop", "seq": i, "capture_ns": stamp(), "pts_ns": 0, "t": {"src_send": stamp()}}
        if sender is not None:
            head, arrays = sender.pack(head, arrays), {}
        sock.send_multipart(encode("frame", head, arrays), copy=False)
        time.sleep(period_s)
    time.sleep(0.5)
    if sender is not None:
        sender.close()
    sock.close()
    ctx.term()


def hop(width: int = 640, height: int = 480, n: int = 300, period_s: float = 1 / 30) -> dict:
    """The source -> segmenter hop alone, between two processes over ipc: send stamp -> arrays
    usable in the receiver (decoded; for shm, slot mapped and generation checked), payload vs shm."""
    import multiprocessing as mp

    import numpy as np
    import zmq

    from stream.wire.protocol import decode
    from stream.wire.shm_link import ShmReceiver
    from stream.wire.transport import stamp

    out = {}
    for shm in (False, True):
        folder = tempfile.mkdtemp(prefix="icf-hop-")
        addr = f"ipc://{folder}/hop.sock"
        ctx = zmq.Context()
        pull = ctx.socket(zmq.PULL)
        pull.bind(addr)
        proc = mp.get_context("spawn").Process(target=_hop_producer, args=(addr, shm, width, height, n, period_s))
        proc.start()
        recv, lat = ShmReceiver(), []
        while len(lat) < n and pull.poll(5000):
            pkt = decode(pull.recv_multipart(copy=False))
            if recv.attach(pkt, {}) and "image" in pkt.arrays:
                int(pkt.arrays["image"][0, 0, 0])  # touch it
                lat.append((stamp() - pkt.header["t"]["src_send"]) / 1e6)
        proc.join(10)
        recv.close()
        pull.close(0)
        ctx.term()
        arr = np.asarray(lat[10:])  # skip warm-up
        out["shm" if shm else "payload"] = {"n": int(arr.size), "p50_ms": round(float(np.percentile(arr, 50)), 3),
                                            "p99_ms": round(float(np.percentile(arr, 99)), 3)}
    return out


if __name__ == "__main__":
    from icfcli import Parser, size_wh

    ap = Parser(prog="python -m bench.shm_compare", description="the source -> segmenter hop alone: payload vs shared-memory frames")
    ap.add_argument("sizes", nargs="*", type=size_wh, default=[(640, 480)], metavar="WxH", help="frame sizes (default 640x480)")
    for w, h in ap.parse_args().sizes:
        print(json.dumps({"size": f"{w}x{h}", **hop(w, h)}), flush=True)
