"""`icf-bench soak`: a long paced stream run that shows whether memory and latency stay flat.

Runs the real pipeline (source | segmenter | sink as separate processes over ipc) on an endless
synthetic scene for --minutes, with every output on (mask archive, metrics log, MP4 recording),
and samples the resident memory (RSS) of every pipeline process every --sample-s seconds. The
per-frame capture->mask latency comes from the stream's own metrics log, grouped per minute of
stream time. Flat means: after the warm-up (the first minute, or a quarter of a shorter run), over
a window of at least 30 s, the RSS of each process grows less than --rss-slack-mb and its slope
stays under --rss-slope-mb-per-min; and the last minute's p99 is within --p99-ratio of the second
minute's. A missed target is reported, not hidden: the JSON says which process or minute broke it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .env import envelope
from .report import command_line, header_md, md_table, write_report

NODES = ("source", "segmenter", "sink")  # stream.graph.pipeline's process layout with one worker


def add_args(p: argparse.ArgumentParser) -> None:
    from icfcli import positive_float, positive_int

    p.add_argument("--minutes", type=positive_float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--fps", type=positive_int, default=30)
    p.add_argument("--width", type=positive_int, default=320)
    p.add_argument("--height", type=positive_int, default=240)
    p.add_argument("--model", default="icf-tiny", help="registry model exported through the engine (default icf-tiny)")
    p.add_argument("--null", action="store_true", help="no model: the pipeline's own memory and latency")
    p.add_argument("--threads", type=positive_int, default=1, help="intra-op threads of the backend")
    p.add_argument("--sample-s", type=positive_float, default=5.0, help="seconds between memory samples")
    p.add_argument("--rss-slack-mb", type=float, default=20.0, help="RSS growth after warm-up still called flat")
    p.add_argument("--rss-slope-mb-per-min", type=float, default=1.0,
                   help="RSS slope after warm-up (least squares, MB/min) still called flat")
    p.add_argument("--p99-ratio", type=float, default=1.5, help="last-minute p99 / second-minute p99 still called flat")
    p.add_argument("--smoke", action="store_true", help="0.25 minutes, null model: checks the command end to end")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default out/bench)")


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` -> their command line (from /proc)."""
    kids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                kids[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return kids


def _uses_zmq(pid: int) -> bool:
    try:
        return "libzmq" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _sampler(stop: threading.Event, every_s: float, samples: list[dict]) -> None:
    me, t0 = os.getpid(), time.monotonic()
    while not stop.wait(every_s):
        row = {"t_s": round(time.monotonic() - t0, 1), "supervisor": _rss_mb(me)}
        kids = sorted(_children(me))
        # the pipeline's processes are spawned in layout order (source, segmenter, sink) and all
        # load libzmq; multiprocessing's own helper does not
        stages = [p for p in kids if _uses_zmq(p)]
        for name, pid in [*zip(NODES, stages), *(("helper", p) for p in kids if p not in stages)]:
            rss = _rss_mb(pid)
            if rss is not None:
                row[name] = rss
        samples.append(row)


MIN_WINDOW_S = 30.0  # a post-warm-up window shorter than this cannot show a slope: never called flat


def memory_summary(samples: list[dict], warmup_s: float, slack_mb: float, end_s: float = float("inf"),
                   max_slope_mb_per_min: float = 1.0) -> dict:
    """Per process, over the streaming time after warm-up (``warmup_s`` .. ``end_s``): RSS at the
    start and end of that span, its growth and least-squares slope (MB/min), flat?; plus the peak
    over the whole run including shutdown (draining and writing the outputs is not growth with run
    length). Flat needs all three: a window of at least MIN_WINDOW_S, growth under ``slack_mb`` and
    a slope under ``max_slope_mb_per_min``. The growth alone passed a source leaking 10 MB/min in a
    one-minute run (45 s after warm-up: 7.8 MB, under the 20 MB slack)."""
    out = {}
    names = sorted({k for s in samples for k in s if k != "t_s"})
    for name in names:
        every = [s[name] for s in samples if s.get(name) is not None]
        pts = [(s["t_s"], s[name]) for s in samples if s.get(name) is not None and warmup_s <= s["t_s"] <= end_s]
        if len(pts) < 2:
            continue
        t, mb = np.array(pts).T
        slope = float(np.polyfit(t / 60, mb, 1)[0])
        growth = float(mb[-1] - mb[0])
        window = float(t[-1] - t[0])
        verdict = ("too short" if window < MIN_WINDOW_S or len(pts) < 4 else
                   "grows" if growth >= slack_mb or slope >= max_slope_mb_per_min else "flat")
        out[name] = {"after_warmup_mb": round(float(mb[0]), 1), "end_mb": round(float(mb[-1]), 1),
                     "peak_mb": round(float(max(every)), 1), "window_s": round(window, 1),
                     "growth_mb": round(growth, 1), "slope_mb_per_min": round(slope, 2), "verdict": verdict,
                     "flat": verdict == "flat"}
    return out


def latency_by_minute(lines: list[dict]) -> list[dict]:
    by: dict[int, list[float]] = {}
    for line in lines:
        if line.get("capture_to_mask_ms") is not None:
            by.setdefault(int(line["pts_ms"] // 60_000), []).append(line["capture_to_mask_ms"])
    return [{"minute": m, "frames": len(v), "p50_ms": round(float(np.percentile(v, 50)), 2),
             "p99_ms": round(float(np.percentile(v, 99)), 2)} for m, v in sorted(by.items())]


def run(args: argparse.Namespace) -> dict:
    from stream import PipelineConfig, run_pipeline
    from stream.stages.models import export_cached

    if args.smoke:
        args.minutes, args.null, args.sample_s = 0.25, True, 1.0
    seconds = args.minutes * 60
    spec = {"kind": "null", "image_size": [224, 224]} if args.null else {
        "kind": "engine", "artifact": str(export_cached(model=args.model)), "backend": "onnxruntime",
        "options": {"threads": args.threads}}
    samples: list[dict] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="icf-bench-soak-") as tmp:
        metrics = Path(tmp) / "metrics.jsonl"
        cfg = PipelineConfig(source={"kind": "synthetic", "seconds": None, "fps": args.fps, "width": args.width,
                                     "height": args.height, "pace": "realtime"},
                             backend=spec, transport="ipc", seconds=seconds, metrics=str(metrics),
                             masks=str(Path(tmp) / "masks.npz"), record=str(Path(tmp) / "overlay.mp4"))
        print(f"soak: {args.minutes:g} min, {args.width}x{args.height} at {args.fps} fps, model "
              f"{spec.get('artifact', 'null')}, outputs masks + metrics + mp4", flush=True)
        sampler = threading.Thread(target=_sampler, args=(stop, args.sample_s, samples), daemon=True)
        sampler.start()
        try:
            report = run_pipeline(cfg)
        finally:
            stop.set()
            sampler.join()
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
        npz_mb = round((Path(tmp) / "masks.npz").stat().st_size / 2**20, 2) if (Path(tmp) / "masks.npz").is_file() else None
    warmup = min(60.0, seconds / 4)
    memory = memory_summary(samples, warmup, args.rss_slack_mb, end_s=seconds, max_slope_mb_per_min=args.rss_slope_mb_per_min)
    minutes = latency_by_minute(lines)
    full = [m for m in minutes if m["frames"] >= 0.5 * 60 * args.fps] or minutes
    ref = full[1] if len(full) > 2 else full[0] if full else None
    p99_ratio = round(full[-1]["p99_ms"] / ref["p99_ms"], 2) if ref and ref["p99_ms"] else None
    doc = envelope("soak", vars(args))
    doc.update(command_line=command_line(), memory=memory, memory_samples=samples, latency_by_minute=minutes,
               p99_last_over_reference=p99_ratio, masks_npz_mb=npz_mb, frames=report.get("frames"), ok=report.get("ok"),
               errors=report.get("errors"),
               flat={"memory": bool(memory) and all(m["flat"] for m in memory.values()),
                     "p99": p99_ratio is not None and p99_ratio <= args.p99_ratio})
    md = markdown(doc)
    doc["written"] = write_report(doc, args.out, "soak", md, plots=False)
    print(md, flush=True)
    return doc


def markdown(doc: dict) -> str:
    mem = md_table(["process", "RSS after warm-up MB", "RSS at the end of streaming MB", "peak MB (incl. shutdown)", "growth MB",
                    "slope MB/min", "verdict"],
                   [[k, v["after_warmup_mb"], v["end_mb"], v["peak_mb"], v["growth_mb"], v["slope_mb_per_min"], v["verdict"]]
                    for k, v in doc["memory"].items()])
    lat = md_table(["minute", "frames", "p50 ms", "p99 ms"], [[m["minute"], m["frames"], m["p50_ms"], m["p99_ms"]] for m in doc["latency_by_minute"]])
    f = doc.get("frames") or {}
    return "\n\n".join([header_md(doc, "Soak: memory and latency over a long run"),
                        f"- frames sent {f.get('sent')}, processed {f.get('processed')}, dropped {f.get('dropped')}; "
                        f"masks.npz {doc.get('masks_npz_mb')} MB; flat: {doc['flat']}; p99 last/reference {doc['p99_last_over_reference']}",
                        "Memory per process (source, segmenter, sink: the pipeline's processes; helper: multiprocessing's own):", mem,
                        "capture->mask latency per minute of stream time:", lat])


__all__ = ["run", "add_args", "memory_summary", "latency_by_minute"]
