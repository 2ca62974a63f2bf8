"""What the live view costs the pipeline, and one Python-API call (docs/results/live_view.md).

    python -m bench.live_view                  # view off / on alternating (null backend, 640x480, 6 s each), then Segmenter calls
    python -m bench.live_view --runs 4 --seconds 6 --out docs/results/live_view_cost.json

The view run has the view server up and no page open: what every run pays by default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def pipeline_once(feed: str | None, seconds: float, size: tuple[int, int]) -> dict:
    from stream import PipelineConfig, run_pipeline

    cfg = PipelineConfig(source={"kind": "synthetic", "width": size[0], "height": size[1], "seconds": seconds},
                         backend={"kind": "null"}, transport="ipc", sink={"view": feed} if feed else {})
    r = run_pipeline(cfg)
    lat = r["latency_ms"]
    return {"view": bool(feed), "processed": r["frames"]["processed"], "sent": r["frames"]["sent"],
            "capture_to_mask_p50": lat["capture_to_mask"]["p50_ms"], "capture_to_mask_p99": lat["capture_to_mask"]["p99_ms"],
            "outputs_p50": lat["outputs"]["p50_ms"], "outputs_p99": lat["outputs"]["p99_ms"]}


def segmenter_calls(seconds: float, size: tuple[int, int]) -> dict:
    from stream import Segmenter
    from synthavs import SceneConfig, SceneGenerator

    seg = Segmenter(threads=1)
    gen = SceneGenerator(SceneConfig(width=size[0], height=size[1], fps=30, seed=0))
    ms, sent = [], 0.0
    for f in gen.stream(seconds):
        audio = gen.audio_between(sent, f.time_s)
        sent = f.time_s
        t0 = time.perf_counter()
        seg(f.image, audio, t=f.time_s)
        ms.append((time.perf_counter() - t0) * 1e3)
    ms = np.array(ms[5:])  # after warm-up
    return {"frames": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1)}


def main(argv: list[str] | None = None) -> int:
    from stream.view.server import ViewServer

    ap = argparse.ArgumentParser(prog="python -m bench.live_view", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="pipeline runs, alternating view off / on (default 4)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--out", metavar="FILE", help="write the results (JSON)")
    args = ap.parse_args(argv)
    size = (640, 480)
    rows = []
    with ViewServer(port=18800) as view:
        for i in range(args.runs):
            rows.append(pipeline_once(view.feed_address if i % 2 else None, args.seconds, size))
            print(json.dumps(rows[-1]), flush=True)
    api = segmenter_calls(4.0, size)
    print(json.dumps({"segmenter_640x480": api}))
    if args.out:
        from .env import machine_info
        from .report import command_line, write_json

        write_json(Path(args.out), {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command_line(),
                                    "machine": machine_info(), "pipeline": rows, "segmenter_640x480": api})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
