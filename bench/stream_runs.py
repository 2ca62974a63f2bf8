"""Stream benchmark: where a frame's time goes, measured on the real pipeline.

    python -m bench.stream_runs                  # both runs below, 10 s each, JSON to out/bench-stream/
    python -m bench.stream_runs --only overhead  # just the pipeline without a model

1. ``overhead``: the pipeline with the model replaced by stream.stages.models.NullBackend (same shapes,
   no compute): synthetic 640x480 at 30 fps over ipc. capture -> mask is then the pipeline's own
   cost: transport hops, (de)serialisation, audio window and context, resize + upsample.
2. ``demo``: what ``icf-stream demo`` runs (shipped icf-lite weights on ONNX Runtime, recording,
   masks, metrics), reporting sustained fps and capture -> mask percentiles.

Numbers are this machine's, at this moment: other processes on a 2-core box move them; each run
records the load average so a noisy result can be recognised as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from stream.graph.pipeline import PipelineConfig, run_pipeline
from stream.graph.report import format_summary, save_report

HOPS = ("to_context", "to_worker", "to_sink")
IMAGE_WORK = ("preprocess", "postprocess")


def _p50(report: dict, stage: str) -> float | None:
    return report["latency_ms"].get(stage, {}).get("p50_ms")


def breakdown(report: dict) -> dict:
    """The headline numbers of one run."""
    lat = report["latency_ms"]
    c2m = lat.get("capture_to_mask", {})
    return {
        "fps_ratio": report["fps"]["processed_ratio"], "fps_processed": report["fps"]["processed"],
        "capture_to_mask_p50_ms": c2m.get("p50_ms"), "capture_to_mask_p99_ms": c2m.get("p99_ms"),
        "overhead_p50_ms": lat.get("overhead", {}).get("p50_ms"),
        "overhead_p99_ms": lat.get("overhead", {}).get("p99_ms"),
        "hops_p50_ms": {h: _p50(report, h) for h in HOPS},
        "image_work_p50_ms": {s: _p50(report, s) for s in IMAGE_WORK},
        "inference_p50_ms": _p50(report, "inference"), "inference_p99_ms": lat.get("inference", {}).get("p99_ms"),
        "dropped": report["frames"].get("dropped"), "accounted": report["frames"].get("accounted"),
        "miou": report.get("miou"),
    }


def run_overhead(seconds: float, transport: str) -> dict:
    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": seconds, "width": 640, "height": 480, "fps": 30},
                         backend={"kind": "null", "image_size": [224, 224]}, transport=transport)
    return run_pipeline(cfg)


def run_demo(seconds: float, threads: int, out: Path) -> dict:
    from stream.cli.main import SHIPPED_WEIGHTS
    from stream.stages.models import export_cached

    if not SHIPPED_WEIGHTS.is_file():
        raise SystemExit(f"bench.stream_runs: {SHIPPED_WEIGHTS} is missing; the demo run needs the shipped weights")
    artifact = str(export_cached(weights=str(SHIPPED_WEIGHTS)))
    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": seconds, "width": 640, "height": 480, "fps": 30},
                         backend={"kind": "engine", "artifact": artifact, "backend": "auto", "options": {"threads": threads}},
                         transport="ipc", record=str(out / "overlay.mp4"), masks=str(out / "masks.npz"),
                         metrics=str(out / "metrics.jsonl"))
    return run_pipeline(cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_runs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    ap.add_argument("--only", choices=("overhead", "demo"), help="run just one of the two")
    ap.add_argument("--transport", default="ipc", choices=("inproc", "ipc", "tcp"), help="for the overhead run (default ipc)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="ONNX Runtime threads for the demo run")
    ap.add_argument("--out", default="out/bench-stream", help="folder for bench.json and the per-run reports")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "runs": {}}
    runs = [r for r in ("overhead", "demo") if args.only in (None, r)]
    for name in runs:
        load_before = os.getloadavg()
        t0 = time.time()
        if name == "overhead":
            report = run_overhead(args.seconds, args.transport)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                report = run_demo(args.seconds, args.threads, Path(tmp))
        save_report(report, out / f"{name}.json")
        results["runs"][name] = {"headline": breakdown(report), "load_avg_before": [round(v, 2) for v in load_before],
                                 "wall_s": round(time.time() - t0, 1), "errors": report["errors"]}
        print(f"\n== {name} ({args.transport if name == 'overhead' else 'ipc'}, {args.seconds:g} s, load before "
              f"{load_before[0]:.2f})\n{format_summary(report)}", flush=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {out / 'bench.json'}")
    print(json.dumps({k: v["headline"] for k, v in results["runs"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
