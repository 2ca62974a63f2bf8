"""How the stream gets a model: always through ``engine.runtime`` (the stream never imports training/
or builds networks itself), plus a model-free NullBackend that measures the pipeline alone.

A backend spec is a plain dict so it can travel to worker processes:
    {"kind": "engine", "artifact": "out/engine/icf-lite.onnx", "backend": "auto", "options": {...}}
    {"kind": "null", "image_size": [224, 224], "width": 32, "delay_ms": 0}
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .context import ContextState

INPUTS = ("image", "audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid")
AUDIO_SAMPLES = 15_600  # model.AUDIO_SAMPLES: the VGGish window (400 + 95 * 160 samples at 16 kHz)


class NullBackend:
    """Same interface and shapes as an engine backend, no network: mask logits are -1 (empty mask)
    after an optional delay (fixed + uniform jitter). Used to measure pipeline overhead excluding the model and to
    emulate a slow model in tests. It is not a model and reports itself as ``null``."""

    def __init__(self, image_size=(224, 224), width: int = 32, frame_ring: int = 30, segment_ring: int = 4,
                 concepts: tuple[str, ...] = ("silence",), delay_ms: float = 0.0, jitter_ms: float = 0.0,
                 seed: int = 0, **_: Any) -> None:
        h, w = image_size
        f32 = np.dtype(np.float32)
        k = len(concepts)
        self.input_specs = {
            "image": ((1, 3, h, w), f32), "audio": ((1, AUDIO_SAMPLES), f32),
            "frame_ring": ((1, frame_ring, width), f32), "frame_valid": ((1, frame_ring), f32),
            "segment_ring": ((1, segment_ring, width), f32), "segment_valid": ((1, segment_ring), f32),
        }
        self.output_specs = {
            "mask_logits": ((1, 1, h, w), f32), "frame_text": ((1, width), f32),
            "segment_text": ((1, width), f32), "concept_logits": ((1, k), f32),
        }
        self.sidecar = {"model": {"name": "null"}, "concepts": list(concepts),
                        "config": {"name": "null", "image_size": [h, w], "width": width}}
        self.delay_s = delay_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0  # uniform extra delay: lets tests make workers overtake each other
        self.rng = np.random.default_rng(seed)
        self._out = {name: np.zeros(shape, dt) for name, (shape, dt) in self.output_specs.items()}
        self._out["mask_logits"] -= 1.0

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.delay_s or self.jitter_s:
            time.sleep(self.delay_s + self.jitter_s * self.rng.random())
        # frame text = mean audio level, so context tests can see state flowing through the ring
        out = dict(self._out)
        out["frame_text"] = np.full_like(self._out["frame_text"], float(np.abs(inputs["audio"]).mean()))
        return out

    def info(self) -> dict[str, Any]:
        return {"backend": "null", "device": "none", "model": "null", "delay_ms": self.delay_s * 1000}

    def close(self) -> None:
        pass


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
    """Sizes the stream needs, read from the backend's input specs (they are what the graph takes)."""
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
            "audio_samples": int(specs["audio"][0][1])}


def warm_up(backend, geometry: dict[str, Any]) -> float:
    """One inference on zeros (first calls allocate and JIT); returns its ms."""
    inputs = {name: np.zeros(shape, dt) for name, (shape, dt) in backend.input_specs.items()}
    t0 = time.perf_counter()
    backend.infer(inputs)
    return (time.perf_counter() - t0) * 1e3


def state_inputs(state: ContextState) -> dict[str, np.ndarray]:
    return state.as_inputs()


def export_cached(weights: str | None = None, model: str | None = None, cache_dir: str = "out/engine") -> Path:
    """An ONNX export of a checkpoint (or a registry model) made once through ``icf-engine export``
    and reused while the checkpoint is unchanged (the cache key is the checkpoint's sha256). Run as
    a subprocess so the stream's own processes never import torch or model/."""
    if bool(weights) == bool(model):
        raise ValueError("give exactly one of weights / model")
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} not found")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        out = Path(cache_dir) / f"{path.stem}-{digest}"
        args = ["--weights", str(path)]
    else:
        out = Path(cache_dir) / f"{model}-seed0"
        args = ["--model", str(model)]
    found = sorted(out.glob("*.onnx")) if out.is_dir() else []
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    print(f"icf-stream: exporting {weights or model} to ONNX under {out} (once; cached)", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "engine", "export", *args, "--out", str(out)],
                          capture_output=True, text=True, env=env)
    found = sorted(out.glob("*.onnx"))
    if proc.returncode != 0 or not found:
        shutil.rmtree(out, ignore_errors=True)  # no half-made cache entry (e.g. an unknown model name)
        raise RuntimeError(f"icf-engine export failed for {weights or model} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return found[0]
