"""AOTInductor runtime backend (.pt2 from ``icf-engine build --via aotinductor``).

Loading needs torch only (``torch._inductor.aoti_load_package``): no model/, no Python model code,
no compilation. Before the package is opened its sidecar is read, its sha256 checked, the
torch / CUDA / GPU / CPU-ISA it was built for compared with this machine (see engine.aoti_common),
and its sha256 looked up among the packages this machine built (engine.aoti_trust): a package from
elsewhere is refused with the command that rebuilds it (or the explicit --trust-package).

The package's I/O is the float32 step contract whatever precision it computes in (the casts are
compiled into it). On CUDA, ``infer_device`` runs on device tensors without host copies.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .aoti_common import KIND, SECTION, check_package_compatible, ieee_fp32
from .aoti_trust import require_built_here
from .backend import Backend
from .spec import INPUT_NAMES, OUTPUT_NAMES, ArtifactError, open_artifact


def verify_package(artifact: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Sidecar + sha256 + build-target checks (no torch import for the first two), then: built on
    this machine (engine.aoti_trust), unless ``trust``; returns the sidecar."""
    artifact = Path(artifact)
    doc = open_artifact(artifact, KIND, "aotinductor")
    check_package_compatible(doc, str(artifact))
    require_built_here(artifact, trust=trust)
    return doc


class AOTIBackend(Backend):
    """``threads``: torch intra-op threads for CPU packages (process-wide in torch)."""

    name = "aotinductor"

    def __init__(self, artifact: str | Path, *, threads: int | None = None, device: str | None = None,
                 precision: str | None = None, reason: str = "requested backend=aotinductor", verify: bool = True,
                 trust_package: bool = False) -> None:
        """``device`` / ``precision`` are fixed when the package is built; given here, they must match it.
        ``trust_package``: load a package this machine did not build (it runs native code: engine.aoti_trust)."""
        import torch

        artifact = Path(artifact)
        if artifact.suffix != ".pt2":
            raise ArtifactError(f"the aotinductor backend runs .pt2 packages, not {artifact.name}; build one with "
                                f"`icf-engine build --via aotinductor --weights CKPT --out DIR`")
        # where the package comes from is checked below, after the cheaper mistakes are named
        doc = verify_package(artifact, trust=True) if verify else open_artifact(artifact, KIND, self.name, verify=False)
        built = doc[SECTION]
        for key, want in (("device", device), ("precision", precision)):
            if want and want != built[key]:
                raise ArtifactError(f"{artifact} was built for {key} {built[key]!r}, not {want!r}; a package's {key} is fixed "
                                    f"at build time: build another with `icf-engine build --via aotinductor ... --{key} {want}`")
        require_built_here(artifact, trust=trust_package)  # even with verify=False: nothing of it is opened before this
        if threads:
            torch.set_num_threads(int(threads))
        t0 = time.perf_counter()
        try:
            self._model = torch._inductor.aoti_load_package(str(artifact))
        except Exception as exc:  # a corrupt archive or a library that will not dlopen: say what to do
            raise ArtifactError(f"torch {torch.__version__} could not load AOTInductor package {artifact} "
                                f"({type(exc).__name__}: {exc}); rebuild it on this machine") from exc
        super().__init__(artifact=artifact, sidecar=doc, device=built["device"], precision=built["precision"], reason=reason)
        self._torch = torch
        self._device = torch.device(built["device"])
        self.threads = torch.get_num_threads() if self._device.type == "cpu" else None
        self._run(self.blank_inputs())  # first call does lazy setup (constant loading, CUDA module load)
        self.setup_seconds = time.perf_counter() - t0

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(inputs[n]).to(self._device, non_blocking=True) for n in INPUT_NAMES]
        with torch.inference_mode(), ieee_fp32(self.device, self.precision):
            outs = self._model(*args)
        return {n: o.cpu().numpy() for n, o in zip(OUTPUT_NAMES, outs)}

    def infer_device(self, tensors: dict) -> dict:
        """Device-resident step: float32 tensors on the package's device -> output tensors there."""
        with self._torch.inference_mode(), ieee_fp32(self.device, self.precision):
            outs = self._model(*(tensors[n] for n in INPUT_NAMES))
        return dict(zip(OUTPUT_NAMES, outs))

    def _extra_info(self) -> dict[str, Any]:
        built = self.sidecar[SECTION]
        keys = ("torch_version", "cuda_version", "gpu_name", "cpu_vec_isa", "compile_seconds")
        return {**{k: built[k] for k in keys if k in built}, "threads": self.threads,
                "setup_seconds": round(self.setup_seconds, 3) if hasattr(self, "setup_seconds") else None}

    def close(self) -> None:
        self._model = None
