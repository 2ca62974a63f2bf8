"""How the stream gets a model: always through ``engine`` (the stream never imports training/ or
model/ or builds networks itself), plus a model-free NullBackend that measures the pipeline alone.

A backend spec is a plain dict so it can travel to worker processes:
    {"kind": "engine", "artifact": "model.onnx", "backend": "auto", "options": {...}}
    {"kind": "null", "image_size": [224, 224], "width": 32, "delay_ms": 0}
Which file a checkpoint or registry model becomes is decided by engine.cache.resolve (locked,
checked against its sidecar), called once in the supervisor before workers start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import cache
from engine.backend import Backend
from engine.spec import frame_ring_rate, io_from_config, zeros


class NullBackend(Backend):
    """An engine Backend with the step contract's shapes and no network: mask logits are -1 (empty
    mask) after an optional delay (fixed + uniform jitter). Used to measure pipeline overhead
    excluding the model and to emulate a slow model in tests. It is not a model and reports itself
    as ``null``; its frame text is the mean audio level, so context tests can see state flowing."""

    name = "null"

    def __init__(self, image_size=(224, 224), width: int = 32, frame_ring: int = 30, segment_ring: int = 4,
                 concepts: tuple[str, ...] = ("silence",), delay_ms: float = 0.0, jitter_ms: float = 0.0,
                 seed: int = 0, frame_ring_rate: int = 1, **_: Any) -> None:
        h, w = (int(v) for v in image_size)
        config = {"name": "null", "image_size": [h, w], "width": int(width), "frame_ring": int(frame_ring),
                  "segment_ring": int(segment_ring), "concepts": list(concepts), "frame_ring_rate": int(frame_ring_rate)}
        inputs, outputs = io_from_config(config)
        sidecar = {"model": {"name": "null", "config": config}, "concepts": list(concepts), "config": config,
                   "inputs": inputs, "outputs": outputs}
        super().__init__(artifact="null", sidecar=sidecar, device="none", precision="fp32", reason="no model (null backend)")
        self.delay_s = delay_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0  # uniform extra delay: lets tests make workers overtake each other
        self.rng = np.random.default_rng(seed)
        self._out = zeros(self.output_specs)
        self._out["mask_logits"] -= 1.0

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.delay_s or self.jitter_s:
            time.sleep(self.delay_s + self.jitter_s * self.rng.random())
        out = dict(self._out)
        out["frame_text"] = np.full_like(self._out["frame_text"], float(np.abs(inputs["audio"]).mean()))
        return out

    def _extra_info(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_s * 1000}


def open_backend(spec: dict[str, Any]):
    """A backend from its spec (see module doc). Engine errors propagate with the engine's message."""
    kind = spec.get("kind", "engine")
    if kind == "null":
        return NullBackend(**{k: v for k, v in spec.items() if k != "kind"})
    if kind != "engine":
        raise ValueError(f"unknown backend kind '{kind}' (engine or null)")
    from engine import runtime  # the only door to models

    return runtime.load(spec["artifact"], backend=spec.get("backend", "auto"), **spec.get("options", {}))


def model_geometry(backend) -> dict[str, Any]:
    """Sizes the stream needs, read from the backend's input specs (they are what the graph takes),
    and the frame ring's clock (``ring_rate``: entries per second, from the sidecar)."""
    specs = backend.input_specs
    _, _, h, w = specs["image"][0]
    _, nf, d = specs["frame_ring"][0]
    _, ns, _ = specs["segment_ring"][0]
    concepts = list(backend.sidecar.get("concepts") or [])
    out = getattr(backend, "output_specs", {}).get("mask_logits")
    channels = out[0][1] if out else 1
    model = backend.sidecar.get("model", {})
    name = model.get("name") if isinstance(model, dict) else str(model)
    return {"image_size": (int(h), int(w)), "width": int(d), "frame_ring": int(nf), "segment_ring": int(ns),
            "concepts": concepts, "mask_channels": int(channels), "model": name or "unknown",
            "audio_samples": int(specs["audio"][0][1]), "ring_rate": frame_ring_rate(backend.sidecar)}


def warm_up(backend) -> float:
    """One inference on zeros (first calls allocate and JIT); returns its ms."""
    inputs = zeros(backend.input_specs)
    t0 = time.perf_counter()
    backend.infer(inputs)
    return (time.perf_counter() - t0) * 1e3


def export_cached(weights: str | None = None, model: str | None = None, cache_dir: str | None = "out/engine") -> Path:
    """The ONNX the workers load for a checkpoint (or a registry model with untrained weights), from
    engine.cache (exported once in a child process, so the stream never imports torch; locked and
    checked against its sidecar). The stream keeps its exports under ``cache_dir`` (out/engine, so
    ``make clean`` removes them); None: the engine's own cache folder."""
    if bool(weights) == bool(model):
        raise ValueError("give exactly one of weights / model")
    if weights:
        return cache.onnx_for_checkpoint(weights, root=cache_dir)
    return cache.onnx_for_model(str(model), root=cache_dir)
