"""`python -m bench.resize`: frame -> 224x224 resize methods timed on this CPU (stream/stages/resize.py).

Prints p50 / p99 ms per method and source size, with OpenCV on 1 and 2 threads, and each
method's mean absolute difference from INTER_AREA on a SynthAVS frame (what training uses);
``--miou model.onnx`` adds the model's mean IoU on 2 x 90 SynthAVS frames per method.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from stream.stages.resize import METHODS, resize_frame

SIZES = ((640, 480), (1280, 720), (1920, 1080))


def scene(width: int, height: int) -> np.ndarray:
    from synthavs import SceneConfig, SceneGenerator

    frame = next(SceneGenerator(SceneConfig(width=width, height=height, fps=30, seed=0)).stream(1.0))
    return np.ascontiguousarray(frame.image)


def time_ms(fn, n: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(ts, 50)), float(np.percentile(ts, 99))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=300, help="timed calls per case")
    p.add_argument("--miou", metavar="ONNX", help="also: a binary model's mean IoU on SynthAVS frames with each method (batch-1 .onnx)")
    args = p.parse_args(argv)
    if args.miou:
        print(json.dumps({"miou_by_resize": miou_by_method(args.miou)}), flush=True)
    rows = []
    for width, height in SIZES:
        img = scene(width, height)
        ref = resize_frame(img, (224, 224), "area").astype(np.float32)
        for threads in (1, 2):
            cv2.setNumThreads(threads)
            for method in METHODS:
                p50, p99 = time_ms(lambda img=img, method=method: resize_frame(img, (224, 224), method), args.n)
                diff = float(np.abs(resize_frame(img, (224, 224), method).astype(np.float32) - ref).mean())
                rows.append({"size": f"{width}x{height}", "threads": threads, "method": method, "p50_ms": round(p50, 3),
                             "p99_ms": round(p99, 3), "mean_abs_diff_vs_area": round(diff, 2)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()


def miou_by_method(artifact: str, frames: int = 90, seeds: tuple[int, ...] = (0, 1), threads: int = 1) -> dict[str, float]:
    """Mean IoU of a binary model (its batch-1 ONNX) on SynthAVS streams, the frame resized with each
    method and the text rings rolled as the stream does (a segment closes every second)."""
    from engine import runtime
    from engine.inputs import advance
    from stream.stages.context import AudioRing
    from synthavs import SceneConfig, SceneGenerator

    be = runtime.load(artifact, backend="onnxruntime", threads=threads)
    (_, _, h, w), n_audio = be.input_specs["image"][0], be.input_specs["audio"][0][1]
    out: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in seeds:
        gen = SceneGenerator(SceneConfig(width=640, height=480, fps=30, seed=seed))
        clip = list(gen.stream(frames / 30))
        ring = AudioRing()
        ring.write(0, gen.audio_between(0.0, frames / 30 + 0.1))
        for method in METHODS:
            state = {k: np.zeros(be.input_specs[k][0], np.float32) for k in ("frame_ring", "frame_valid", "segment_ring", "segment_valid")}
            for f in clip:
                x = np.ascontiguousarray(resize_frame(f.image, (w, h), method).transpose(2, 0, 1)[None], np.float32) / 255
                audio = ring.window(ring.sample_at(int(f.time_s * 1e9)), n_audio)[None]
                y = be.infer({"image": x, "audio": audio, **state})
                mask = cv2.resize(y["mask_logits"][0, 0], (640, 480), interpolation=cv2.INTER_LINEAR) > 0
                gt = f.mask > 0
                union = (mask | gt).sum()
                out[method].append(1.0 if union == 0 else float((mask & gt).sum() / union))
                state = advance(state, y["frame_text"], y["segment_text"], close_segment=(f.index + 1) % 30 == 0)
    be.close()
    return {m: round(float(np.mean(v)), 4) for m, v in out.items()} | {"frames": len(out["fast"])}
