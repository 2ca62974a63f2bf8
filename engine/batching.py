"""Many streams, one model: ``step`` for a batch of independent streams, static shapes per batch size.

Every row of a batch is its own stream (its own image, audio window and text rings); the network
has no op that mixes rows in inference (BatchNorm runs on its running statistics), so row i of a
batched call equals a batch-1 call on row i's inputs (tests/engine/test_batching.py checks it
within float tolerance). Engines want static shapes, so every backend gets one static-shape program
per batch size: ONNX Runtime one ONNX file (``<model>-b<B>.onnx``), AOTInductor one package
(engine.cache.resolve(..., batch=B) makes both once), torch one compiled program (mode compile) or
one captured CUDA graph (mode cudagraph) over shared weights (TorchBackend.for_batch); ``open_sizes``
is the one place that picks which. ``BatchedStep`` runs n requests through the smallest size >= n,
padding the unused rows with a copy of the last request (their outputs are dropped), and splits a
request list longer than the largest size into several calls.

    python -m engine.batching --model icf-lite --sizes 1,2,3,4 --out out/engine/icf-lite-batches
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .spec import INPUT_NAMES

BATCH_RE = re.compile(r"-b(\d+)\.onnx$")


def export_batches(out_dir: str | Path, sizes: list[int], *, model_name: str | None = None, checkpoint: str | Path | None = None,
                   seed: int = 0) -> dict[int, Path]:
    """Exports one verified ONNX per batch size from a registry model or a checkpoint (same weights)."""
    import torch

    import model

    from .export import export_onnx

    if bool(model_name) == bool(checkpoint):
        raise ValueError("give exactly one of model_name / checkpoint")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        torch.manual_seed(seed)
        net = model.build_model(model_name)
        checkpoint = model.save_checkpoint(net, out_dir / f"{model_name}-weights.safetensors",
                                          extra={"seed": seed, "source": f"registry:{model_name}"})
    else:
        net = model.load_checkpoint(checkpoint)
    stem = model_name or Path(checkpoint).stem
    return {b: export_onnx(net, out_dir, checkpoint=checkpoint, stem=f"{stem}-b{b}", batch=b) for b in sorted(set(sizes))}


def find_batches(folder: str | Path) -> dict[int, Path]:
    """{batch size: artifact} for the ``*-b<B>.onnx`` files in ``folder``."""
    found = {}
    for path in sorted(Path(folder).glob("*.onnx")):
        m = BATCH_RE.search(path.name)
        if m:
            found[int(m.group(1))] = path
    return found


def open_sizes(first: Any, sizes: list[int], *, artifacts: dict[int, str | Path] | None = None, backend: str = "auto",
               options: dict[str, Any] | None = None) -> dict[int, Any]:
    """{batch size: backend} for every size in ``sizes`` and ``artifacts``, around ``first`` (the open
    batch-1 backend, kept as entry 1). A size with an artifact (a batch-B .onnx or .pt2, made by
    engine.cache.resolve in the supervisor) is loaded from it on ``backend``; one without is the torch
    backend's own static program for that size (``for_batch``: compiled / captured again, same weights)."""
    from . import runtime

    out: dict[int, Any] = {1: first}
    artifacts = {int(b): p for b, p in (artifacts or {}).items()}
    try:
        for b in sorted({int(v) for v in sizes} | set(artifacts)):
            if b in out:
                continue
            if b in artifacts:
                out[b] = runtime.load(artifacts[b], backend=backend, **dict(options or {}))
            elif hasattr(first, "for_batch"):
                out[b] = first.for_batch(b)
            else:
                raise ValueError(f"no batch-{b} artifact was given and the {getattr(first, 'name', type(first).__name__)} "
                                 f"backend cannot make static shapes for it itself (give artifacts={{{b}: path}})")
    except Exception:
        for b, be in out.items():
            if b != 1:
                be.close()
        raise
    return out


class BatchedStep:
    """``run([inputs_0, ..., inputs_{n-1}])`` -> one output dict per request, each with batch dim 1.

    ``backends``: {batch size: an engine backend (or anything with ``infer`` and ``input_specs``)
    whose tensors have that first dim}. Requests are dicts of batch-1 arrays (the step contract)."""

    def __init__(self, backends: dict[int, Any]) -> None:
        if not backends:
            raise ValueError("BatchedStep needs at least one backend")
        for b, be in backends.items():
            got = be.input_specs["image"][0][0]
            if got != b:
                raise ValueError(f"the backend given for batch {b} takes batch {got}")
        self.backends = dict(sorted(backends.items()))
        self.sizes = list(self.backends)
        self.calls: dict[int, int] = dict.fromkeys(self.sizes, 0)
        self.padded_rows = 0
        # CPU time of this process while the model ran (all its threads: intra-op pools included) and
        # wall time, summed over calls: the model's share of a frame's CPU cost (bench/streams.py)
        self.cpu_s = 0.0
        self.wall_s = 0.0

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def size_for(self, n: int) -> int:
        return next((b for b in self.sizes if b >= n), self.max_batch)

    def run(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray]] = []
        for start in range(0, len(requests), self.max_batch):
            out += self._call(requests[start:start + self.max_batch])
        return out

    def _call(self, chunk: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        n = len(chunk)
        b = self.size_for(n)
        rows = chunk + [chunk[-1]] * (b - n)  # padding rows: any valid input; their outputs are dropped
        self.padded_rows += b - n
        self.calls[b] += 1
        if b == 1:  # one row is the batch already: no copy of the frame's pixels (the single-stream segmenter)
            batch = {name: rows[0][name] for name in INPUT_NAMES}
        else:
            batch = {name: np.concatenate([r[name] for r in rows], axis=0) for name in INPUT_NAMES}
        c0, t0 = time.process_time(), time.perf_counter()
        result = self.backends[b].infer(batch)
        self.cpu_s += time.process_time() - c0
        self.wall_s += time.perf_counter() - t0
        return [{k: v[i:i + 1] for k, v in result.items()} for i in range(n)]

    def info(self) -> dict[str, Any]:
        first = next(iter(self.backends.values()))
        base = first.info() if hasattr(first, "info") else {}
        return {**base, "batch_sizes": self.sizes, "calls": {str(k): v for k, v in self.calls.items()}, "padded_rows": self.padded_rows,
                "model_cpu_ms": round(self.cpu_s * 1e3, 1), "model_wall_ms": round(self.wall_s * 1e3, 1)}

    def close(self) -> None:
        for be in self.backends.values():
            be.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m engine.batching", description="Export one ONNX per batch size (many streams, one model).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="registry model name (seeded weights)")
    src.add_argument("--weights", help="a .safetensors checkpoint")
    p.add_argument("--sizes", default="1,2,3,4", help="comma-separated batch sizes (default 1,2,3,4)")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--sizes must be comma-separated integers, not {args.sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit("--sizes needs batch sizes >= 1")
    for b, path in export_batches(args.out, sizes, model_name=args.model, checkpoint=args.weights).items():
        print(f"batch {b}: {path}")


if __name__ == "__main__":
    main()
