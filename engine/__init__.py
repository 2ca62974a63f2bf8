"""Inference engines for ICF networks: export, TensorRT builds, and one runtime over every backend.

- ``engine.export``: ``step`` -> one static-shape ONNX file + sidecar JSON (verified against torch);
- ``engine.runtime.load(artifact, backend="auto", **options) -> Backend`` with ``infer`` / ``info``;
- ``engine.cache.resolve(artifact, "onnx" | "plan")``: the one place a checkpoint becomes an ONNX and an
  ONNX a TensorRT plan (built once per GPU + version), locked and checked against sidecars;
- ``engine.spec``: the step contract (tensor names, shapes, sidecar); ``engine.state``: the NumPy ring rule;
- ``engine.check``: any backend against the torch fp32 reference; ``python -m engine`` is the CLI.
Importing this package is cheap: submodules import torch / onnxruntime / tensorrt only when used.
"""

from __future__ import annotations

from .spec import INPUT_NAMES, OUTPUT_NAMES, ArtifactError

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "ArtifactError", "load"]


def load(artifact, backend: str = "auto", **options):
    """Shortcut for ``engine.runtime.load`` (see there)."""
    from .runtime import load as _load

    return _load(artifact, backend, **options)
