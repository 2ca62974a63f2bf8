"""`python -m bench.resize`: frame -> 224x224 resize methods timed on this CPU (stream/resize.py).

Prints p50 / p99 ms per method and source size, with OpenCV on 1 and 2 threads, and each
method's mean absolute difference from INTER_AREA on a SynthAVS frame (what training uses).
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from stream.resize import METHODS, resize_frame

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
    args = p.parse_args(argv)
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
