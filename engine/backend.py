"""The Backend interface every implementation follows (kept apart from runtime.py to avoid cycles).

A Backend runs ``step`` on host NumPy arrays:
    infer({"image": [1,3,H,W], "audio": [1,15600], "frame_ring": [1,Nf,D], "frame_valid": [1,Nf],
           "segment_ring": [1,Ns,D], "segment_valid": [1,Ns]})
      -> {"mask_logits": [1,C,H,W], "frame_text": [1,D], "segment_text": [1,D], "concept_logits": [1,K]}
All arrays float32. The caller owns the ring state (engine.state.advance is the rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .spec import INPUT_NAMES, OUTPUT_NAMES, Specs, specs_from, zeros


class Backend:
    """Base class: input checking, info(), specs; subclasses implement ``_run``."""

    name = "base"

    def __init__(self, *, artifact: str | Path, sidecar: dict[str, Any], device: str, precision: str, reason: str) -> None:
        self.artifact = Path(artifact)
        self.sidecar = sidecar
        self.input_specs: Specs = specs_from(sidecar["inputs"])
        self.output_specs: Specs = specs_from(sidecar["outputs"])
        self.device = device
        self.precision = precision
        self.reason = reason

    # ---- the API the stream and bench use ----
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One step. Inputs are checked (names, shapes, dtype, C-contiguous layout); nothing is copied."""
        return self._run(self._checked(inputs))

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "artifact": str(self.artifact),
            "model": self.sidecar["model"]["name"],
            "reason": self.reason,
            **self._extra_info(),
        }

    def blank_inputs(self) -> dict[str, np.ndarray]:
        """Zero inputs of the right shapes: empty rings, the state at stream start."""
        return zeros(self.input_specs)

    def close(self) -> None:
        """Releases sessions / device memory; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info()}>"

    # ---- for subclasses ----
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _extra_info(self) -> dict[str, Any]:
        return {}

    def _checked(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(inputs) != set(INPUT_NAMES):
            missing = [n for n in INPUT_NAMES if n not in inputs]
            extra = sorted(set(inputs) - set(INPUT_NAMES))
            raise KeyError(f"step inputs must be exactly {list(INPUT_NAMES)}; missing {missing}, unexpected {extra}")
        out = {}
        for name in INPUT_NAMES:
            shape, dtype = self.input_specs[name]
            x = inputs[name]
            if tuple(x.shape) != shape:
                raise ValueError(f"input '{name}' has shape {tuple(x.shape)}; this {self.sidecar['model']['name']} artifact takes {shape}")
            if x.dtype != dtype or not x.flags.c_contiguous:
                # never copied here: a silent copy in the hot path is time nobody sees (it was counted as model time)
                layout = "C-contiguous" if x.flags.c_contiguous else "not C-contiguous"
                raise ValueError(f"input '{name}' is {x.dtype} {layout}; backends take C-contiguous {dtype} arrays as they are "
                                 f"(write into one with np.empty + out=, or np.ascontiguousarray(x, dtype=np.{dtype}) once)")
            out[name] = x
        return out

    @staticmethod
    def _as_outputs(values: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(OUTPUT_NAMES, values)}
