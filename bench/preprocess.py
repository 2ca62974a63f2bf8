"""The worker's preprocess + inference, before and after the one-buffer change, interleaved in one run.

"before" is the previous code path, kept here only as the reference: a transposed float temporary
(``small.transpose(2, 0, 1)[None].astype(np.float32) * 1/255``, not C-contiguous) that the backend's
checks then copied again (``np.ascontiguousarray``). "after" is ``stream.stages.worker.WorkerCore.run``'s
path: one pass into the reused contiguous [1,3,H,W] buffer, handed to the backend as is.
Both run on the same SynthAVS frames at the stream's size, alternating frame by frame.

    python -m bench.preprocess --weights weights/icf-lite-synthavs.safetensors --frames 150 --threads 1 \
        --out docs/results/cpu_preprocess_copy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from stream.stages.resize import resize_frame
from stream.stages.worker import STATE, WorkerCore
from stream.wire.protocol import finite


def _before(core: WorkerCore, image: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, w = core.geo["image_size"]
    small = resize_frame(image, (w, h), core.resize)
    x = small.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)
    return {"image": x, **{k: finite(v)[0] for k, v in state.items()}}  # the old prepare checked the state too


def _old_infer(core: WorkerCore, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The old ``Backend.infer``: its checks copied every input with np.ascontiguousarray (counted as model time)."""
    return core.backend._run({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})


def _after(core: WorkerCore, image: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return core.prepare({"image": image, **state}, {}, into=core.image_in)


def measure(weights: str, frames: int, threads: int, size: tuple[int, int]) -> dict:
    from synthavs import SceneConfig, SceneGenerator

    core = WorkerCore({"kind": "engine", "artifact": weights, "backend": "onnxruntime", "options": {"threads": threads}})
    gen = SceneGenerator(SceneConfig(width=size[0], height=size[1], mode="mixed", seed=3))
    images = [f.image for _, f in zip(range(frames), gen.stream(seconds=None))]
    state = {k: np.zeros(core.backend.input_specs[k][0], np.float32) for k in STATE}
    times: dict[str, dict[str, list[float]]] = {v: {"preprocess": [], "infer": [], "preprocess_cpu": [], "infer_cpu": []}
                                                for v in ("before", "after")}
    for i, image in enumerate(images * 2):  # alternate the order per frame so neither always goes first
        for variant in (("before", "after") if i % 2 else ("after", "before")):
            prep = _before if variant == "before" else _after
            # wall time, and this thread's CPU time (ORT at 1 thread runs on the calling thread): the latter is
            # what the change saves and is far less sensitive to a shared machine's load
            t0, c0 = time.perf_counter(), time.thread_time()
            inputs = prep(core, image, state)
            t1, c1 = time.perf_counter(), time.thread_time()
            out = _old_infer(core, inputs) if variant == "before" else core.backend.infer(inputs)
            t2, c2 = time.perf_counter(), time.thread_time()
            if i >= 10:  # warm-up frames are not counted
                times[variant]["preprocess"].append((t1 - t0) * 1e3)
                times[variant]["infer"].append((t2 - t1) * 1e3)
                times[variant]["preprocess_cpu"].append((c1 - c0) * 1e3)
                times[variant]["infer_cpu"].append((c2 - c1) * 1e3)
            assert np.isfinite(out["mask_logits"]).all()
    core.close()

    def stats(xs: list[float]) -> dict[str, float]:
        a = np.asarray(xs)
        return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3), "mean": round(float(a.mean()), 3)}

    rows = {v: {part: stats(xs) for part, xs in parts.items()} | {"total": stats([a + b for a, b in zip(parts["preprocess"], parts["infer"])])}
            for v, parts in times.items()}
    return {"frames_timed": len(times["after"]["infer"]), "threads": threads, "frame_size": list(size), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights/icf-lite-synthavs.safetensors")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--out", default=None, help="writes <out>.json and <out>.md")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    result = measure(args.weights, args.frames, args.threads, (w, h))
    result |= {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
               "load_avg_1m": round(os.getloadavg()[0], 2),
               "command": "python -m bench.preprocess " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(json.dumps(result, indent=1))
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        lines = [f"# Worker preprocess + inference, before / after one reused input buffer ({result['date']})", "",
                 f"Machine: {result['machine']}, 1-min load {result['load_avg_1m']}; icf-lite, ONNX Runtime CPU, {args.threads} thread(s); "
                 f"{args.size} SynthAVS frames, {result['frames_timed']} per variant, interleaved frame by frame.", "",
                 f"Command: `{result['command']}`", "", "| variant | preprocess p50 / p95 ms | inference (incl. the backend's input copy) "
                 "p50 / p95 ms | total p50 / p95 ms | preprocess CPU-ms mean | inference CPU-ms mean |",
                 "|---|---|---|---|---|---|"]
        for v, r in result["rows"].items():
            lines.append(f"| {v} | " + " | ".join(f"{r[k]['p50']} / {r[k]['p95']}" for k in ("preprocess", "infer", "total"))
                         + f" | {r['preprocess_cpu']['mean']} | {r['infer_cpu']['mean']} |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
