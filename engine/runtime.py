"""One entry point for every backend: ``load(artifact, backend="auto", **options) -> Backend``.

Artifacts: ``.onnx`` (+ sidecar), ``.plan`` (+ sidecar), ``.ep`` (torch-tensorrt, + sidecar), or a
``.safetensors`` checkpoint (torch backend directly; other backends export it to the cache first).

Backends and their options:
- ``onnxruntime``: device=cpu|cuda|tensorrt, threads=N (intra-op), precision (fp16 only via the TRT EP)
- ``torch``: mode=eager|compile|cudagraph, device, precision=fp32|fp16|bf16, threads, weights, channels_last
- ``tensorrt``: cuda_graph=True|False (a .plan; an .onnx/.safetensors is built through engine.cache)
- ``torch-tensorrt``: an .ep from ``icf-engine build --via torch-tensorrt``
- ``aotinductor``: a .pt2 from ``icf-engine build --via aotinductor`` (an .onnx/.safetensors is compiled
  through engine.cache); threads=N on the CPU. ``auto`` runs a .pt2 on it (the only backend that can).
``auto`` picks tensorrt (installed + CUDA + a plan that builds and loads), else torch cudagraph on a
GPU, else onnxruntime on the CPU, and says why in ``info()["reason"]`` and a log line.

Reading an .onnx/.plan needs neither model/ nor training/: everything comes from the sidecar.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .backend import Backend
from .spec import ArtifactError, read_sidecar

log = logging.getLogger("icf.engine")

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt", "torch-tensorrt", "aotinductor")
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch", "aoti": "aotinductor"}
KINDS = {".onnx": "onnx", ".plan": "plan", ".engine": "plan", ".ep": "torch-tensorrt", ".safetensors": "checkpoint",
         ".pt2": "aotinductor"}

__all__ = ["Backend", "load", "choose", "cuda_available", "BACKENDS"]


def artifact_kind(path: Path) -> str:
    if path.suffix not in KINDS:
        raise ArtifactError(f"{path}: unknown artifact type '{path.suffix}'; expected one of {sorted(KINDS)}")
    if not path.is_file():
        raise FileNotFoundError(f"artifact {path} does not exist")
    return KINDS[path.suffix]


# A CUDA (or ROCm) GPU needs its kernel driver's device files: without them torch cannot see one, and
# importing torch only to ask costs seconds of a CPU service's start (runtime.load on the CPU never needs it)
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def cuda_available() -> tuple[bool, str]:
    """(available, description) without importing torch when it is not installed or no GPU driver is there."""
    if find_spec("torch") is None:
        return False, "torch is not installed"
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return False, f"no GPU driver here (none of {', '.join(GPU_DEVICE_FILES)})"
    import torch

    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA GPU"
    return True, torch.cuda.get_device_name(0)


def choose(artifact: Path, options: dict[str, Any], *, tensorrt_failed: str = "") -> tuple[str, Path, str, dict[str, Any]]:
    """(backend, artifact to load, reason, default options) for backend='auto'.

    ``tensorrt_failed``: why a TensorRT engine that auto chose could not be opened; TensorRT is then skipped."""
    from .trt_common import tensorrt_installed

    kind = artifact_kind(artifact)
    if kind == "plan":
        return "tensorrt", artifact, "a TensorRT plan runs only on the tensorrt backend", {}
    if kind == "torch-tensorrt":
        return "torch-tensorrt", artifact, "a torch-tensorrt program runs only on the torch-tensorrt backend", {}
    if kind == "aotinductor":
        from .aoti_common import AUTO_RULE

        return "aotinductor", artifact, f"an AOTInductor package runs only on the aotinductor backend ({AUTO_RULE})", {}
    cuda, gpu = cuda_available()
    precision = options.get("precision") or ("fp16" if cuda else "fp32")
    if cuda and tensorrt_installed() and not tensorrt_failed:
        from . import cache

        try:
            plan = cache.resolve(artifact, "plan", precision=precision)
            import tensorrt

            return "tensorrt", plan, f"TensorRT {tensorrt.__version__} and a CUDA GPU ({gpu}) are present; {precision} engine {plan}", {}
        except Exception as exc:  # a failed build must not stop the stream: fall back, and say why
            log.warning("auto: TensorRT engine unavailable (%s); falling back", exc)
            trt_note = f"TensorRT engine build/load failed ({type(exc).__name__}: {exc}); "
    else:
        trt_note = tensorrt_failed or ("" if not cuda else "TensorRT is not installed (pip install -e '.[trt]'); ")
    if cuda:
        has_weights = kind == "checkpoint" or bool(read_sidecar(artifact).get("checkpoint"))
        if has_weights:
            reason = f"{trt_note}CUDA GPU {gpu}: torch CUDA-graph replay ({precision}) is the fastest remaining path"
            return "torch", artifact, reason, {"mode": "cudagraph", "precision": precision}
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            reason = f"{trt_note}CUDA GPU {gpu}, but {artifact.name} records no checkpoint for torch: ONNX Runtime CUDA EP (fp32)"
            return "onnxruntime", artifact, reason, {"device": "cuda", "precision": "fp32"}
        reason = f"{trt_note}CUDA GPU {gpu}, but no checkpoint for torch and no ONNX Runtime CUDA EP: ONNX Runtime CPU (fp32)"
        return "onnxruntime", artifact, reason, {"device": "cpu", "precision": "fp32"}
    from . import cache

    onnx = cache.resolve(artifact, "onnx")
    int8 = cache.int8_for(onnx) if options.get("precision") in (None, "int8") else None
    if int8 is not None:
        par = read_sidecar(int8)["int8"]["parity"]
        reason = (f"no CUDA GPU ({gpu}): ONNX Runtime CPU EP, int8 graph {int8.name} (built with `icf-engine build --via onnxruntime "
                  f"--precision int8`; parity passed: pooled mask IoU {par['pooled_mask_iou']} vs fp32, {par['rule']})")
        return "onnxruntime", int8, reason, {"device": "cpu", "precision": "int8"}
    reason = (f"no CUDA GPU ({gpu}): ONNX Runtime CPU EP (fp32), the faster CPU path (it beats eager torch and "
              f"AOTInductor packages at batch 1 on CPU; build a .pt2 and pass it to run AOTInductor)")
    return "onnxruntime", onnx, reason, {"device": "cpu", "precision": "fp32"}


def load(artifact: str | Path, backend: str = "auto", **options: Any) -> Backend:
    """Opens ``artifact`` on ``backend``; see the module docstring for options. Logs what it chose."""
    path = Path(artifact)
    backend = ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    kind = artifact_kind(path)
    if backend == "auto":
        chosen_backend, chosen_path, reason, chosen = choose(path, options)
        # What auto decided (mode, device, precision) wins over generic hints it already used.
        hints = {k: v for k, v in options.items() if v is not None}
        try:
            return _open(chosen_backend, chosen_path, reason, {**hints, **chosen})
        except Exception as exc:  # deserialise error, out of memory, no context, ...: fall back like a failed build
            if chosen_backend != "tensorrt" or kind == "plan":  # a .plan has nothing to fall back to
                raise
            log.warning("auto: TensorRT engine %s failed to load (%s); falling back", chosen_path, exc)
            note = f"TensorRT engine {chosen_path.name} failed to load ({type(exc).__name__}: {exc}); "
            chosen_backend, chosen_path, reason, chosen = choose(path, options, tensorrt_failed=note)
            return _open(chosen_backend, chosen_path, reason, {**hints, **chosen})
    reason = f"requested backend={backend}"
    path = _artifact_for(backend, path, kind, options)
    return _open(backend, path, reason, options)


def _open(backend: str, path: Path, reason: str, options: dict[str, Any]) -> Backend:
    cls = _backend_class(backend)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "artifact"}
    ignored = sorted(set(options) - accepted)
    if ignored and reason.startswith("requested"):
        raise TypeError(f"backend {backend!r} does not take option(s) {ignored}; it takes {sorted(accepted - {'reason'})}")
    if ignored:
        log.info("auto chose %s, which ignores option(s) %s", backend, ignored)
    instance = cls(path, reason=reason, **{k: v for k, v in options.items() if k in accepted})
    log.info("engine: %s on %s (%s) for %s: %s", instance.name, instance.device, instance.precision, path.name, reason)
    return instance


def _artifact_for(backend: str, path: Path, kind: str, options: dict[str, Any]) -> Path:
    """What an explicitly chosen backend actually loads (exported / built through engine.cache.resolve)."""
    from . import cache

    if backend == "onnxruntime":
        if kind not in ("onnx", "checkpoint"):
            raise ArtifactError(f"onnxruntime runs .onnx (or exports a .safetensors); {path.name} is a {kind}")
        return cache.resolve(path, "onnx")
    if backend == "tensorrt" and kind in ("onnx", "checkpoint"):
        return cache.resolve(path, "plan", precision=options.pop("precision", None) or "fp16")
    if backend == "aotinductor" and kind in ("onnx", "checkpoint"):
        return cache.resolve(path, "package", device=options.pop("device", None) or "cpu",
                             precision=options.pop("precision", None) or "fp32")
    if backend == "aotinductor" and kind != "aotinductor":
        raise ArtifactError(f"the aotinductor backend runs .pt2 packages (or compiles an .onnx/.safetensors); {path.name} is a {kind}")
    if backend == "torch" and kind not in ("onnx", "checkpoint", "plan", "torch-tensorrt", "aotinductor"):
        raise ArtifactError(f"the torch backend needs a checkpoint or an artifact that records one; {path.name} is a {kind}")
    return path


def _backend_class(backend: str) -> type[Backend]:
    if backend == "onnxruntime":
        from .ort_backend import OrtBackend

        return OrtBackend
    if backend == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend
    if backend == "tensorrt":
        from .trt_backend import TensorRTBackend

        return TensorRTBackend
    if backend == "aotinductor":
        from .aoti_backend import AOTIBackend

        return AOTIBackend
    from .trt_backend import TorchTensorRTBackend

    return TorchTensorRTBackend
