"""Runners: one network x backend x precision, opened and ready to time on pre-staged input sets.

ICF variants run through ``engine.runtime.load`` (the same code the stream uses): torch eager /
compile / cudagraph from a checkpoint, ONNX Runtime and TensorRT from the engine's verified ONNX
export, AOTInductor from a package compiled from the checkpoint (its compile is not in the row's
setup time, which is the cold start of a built package: load + first call). On a GPU the torch and TensorRT
backends are timed through ``infer_device`` (inputs already on the device), so the number is the step itself; host-side backends (ONNX Runtime on
the CPU) through ``infer``. The reference network of `icf-bench baseline` runs eager, directly.

Imports only torch, NumPy, model/ and engine/ (lazily), never pyzmq or PyAV: bench/gpu.py uses it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.spec import INPUT_NAMES

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class RunSpec:
    """What to run. ``backend``: torch | onnxruntime | tensorrt | aotinductor | baseline (reference net, eager)."""

    backend: str
    mode: str = "eager"  # torch: eager | compile | cudagraph
    precision: str = "fp32"
    channels_last: bool = False
    compile_mode: str | None = None  # torch.compile mode (None: the engine's default for the device)
    freezing: bool = False  # Inductor freezing: weights become constants, BN folds into convs

    @property
    def label(self) -> str:
        name = f"torch-{self.mode}" if self.backend == "torch" else self.backend
        if self.backend == "baseline":
            name = f"baseline-{self.mode}"
        extras = [x for x in (self.compile_mode, "freeze" if self.freezing else "", "cl" if self.channels_last else "") if x]
        return f"{name}{'[' + ','.join(extras) + ']' if extras else ''} {self.precision}"


@dataclass
class Runner:
    spec: RunSpec
    device: str
    via: str
    setup_s: float
    call: Callable[[int], Any]  # run on input set i (what is timed)
    mask: Callable[[int], np.ndarray]  # mask logits for input set i, float32 host array (for diffs)
    info: dict = field(default_factory=dict)
    close: Callable[[], None] = lambda: None

    @property
    def timer(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "host"


def skip_reason(spec: RunSpec, device: str, *, allow_cpu_half: bool = False) -> str | None:
    """Why this combination cannot run here (None when it can): reported as a skipped row.

    ``allow_cpu_half``: smoke runs take fp16 on the CPU anyway, to check the dtype paths."""
    from importlib.util import find_spec

    cuda = device.startswith("cuda")
    if spec.mode == "cudagraph" and not cuda:
        return "CUDA graphs need a CUDA GPU"
    if spec.backend == "tensorrt" and (find_spec("tensorrt") is None or not cuda):
        return "TensorRT is not installed" if find_spec("tensorrt") is None else "TensorRT needs a CUDA GPU"
    if spec.backend == "onnxruntime":
        if find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if spec.precision != "fp32":
            return "ONNX Runtime runs the fp32 graph (fp16 only through its TensorRT EP)"
    if spec.backend == "aotinductor" and spec.precision == "fp16" and not cuda and not allow_cpu_half:
        return "fp16 on the CPU: Inductor's CPU fp16 kernels are slow reference paths (bf16 is the CPU half type)"
    if spec.precision != "fp32" and not cuda and spec.backend in ("torch", "baseline") and not allow_cpu_half:
        return "half precision is a GPU mode (CPU kernels for fp16 are slow reference paths)"
    return None


class Artifacts:
    """Checkpoint and verified ONNX export of one registry model at one resolution (made once)."""

    def __init__(self, name: str, image_size: tuple[int, int], folder: Path, seed: int = 0) -> None:
        self.name, self.image_size, self.folder, self.seed = name, tuple(image_size), Path(folder), seed
        self._ckpt: Path | None = None
        self._onnx: Path | None = None
        self._packages: dict[tuple[str, str], Path] = {}
        self.stem = f"{name}-{image_size[0]}x{image_size[1]}"

    def net(self):
        import torch

        import model

        torch.manual_seed(self.seed)  # seeded init: reruns export the same weights
        return model.build_model(self.name, image_size=self.image_size)

    def checkpoint(self) -> Path:
        if self._ckpt is None:
            import model

            self._ckpt = model.save_checkpoint(self.net(), self.folder / f"{self.stem}-weights.safetensors")
        return self._ckpt

    def onnx(self) -> Path:
        if self._onnx is None:
            from engine.export import export_checkpoint

            self._onnx = export_checkpoint(self.checkpoint(), self.folder, stem=self.stem)
        return self._onnx

    def package(self, device: str, precision: str) -> Path:
        """A verified AOTInductor package of the checkpoint (compiled once per device x precision)."""
        key = (device.split(":")[0], precision)
        if key not in self._packages:
            from engine.aoti_build import build_package

            out = self.folder / f"{self.stem}-aoti-{key[0]}-{precision}.pt2"
            self._packages[key] = build_package(self.checkpoint(), out, device=key[0], precision=precision)
        return self._packages[key]


def _stage(sets: list[dict[str, np.ndarray]], device: str, dtype: str) -> list[dict]:
    import torch

    dt = getattr(torch, dtype)
    return [{k: torch.from_numpy(v).to(device=device, dtype=dt) for k, v in s.items()} for s in sets]


def open_engine_runner(spec: RunSpec, artifacts: Artifacts, sets: list[dict[str, np.ndarray]], device: str, threads: int | None) -> Runner:
    """An ICF model on an engine backend."""
    import torch

    from engine import runtime

    ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if spec.backend == "torch":
        artifact = artifacts.checkpoint()
        opts: dict[str, Any] = {"mode": spec.mode, "device": device, "precision": spec.precision, "channels_last": spec.channels_last}
        if spec.mode == "compile" and spec.compile_mode:
            opts["compile_mode"] = spec.compile_mode
        if threads and not device.startswith("cuda"):
            opts["threads"] = threads
        if spec.mode == "compile":
            # Fresh Dynamo caches per compiled net: every ICFNet shares one code object, and after
            # cache_size_limit recompiles Dynamo would silently fall back to eager.
            torch._dynamo.reset()
        if spec.freezing:
            import torch._inductor.config as inductor_config

            # The engine compiles inside load() (first call on blank inputs): patch around it.
            ctx = inductor_config.patch(freezing=True)
    elif spec.backend == "onnxruntime":
        artifact, opts = artifacts.onnx(), {"device": "cpu", "threads": threads}
    elif spec.backend == "tensorrt":
        artifact, opts = artifacts.onnx(), {"precision": spec.precision}
    elif spec.backend == "aotinductor":
        artifact = artifacts.package(device, spec.precision)
        opts = {"threads": threads} if threads and not device.startswith("cuda") else {}
    else:
        raise ValueError(f"unknown engine backend {spec.backend!r}")
    t0 = time.perf_counter()
    with ctx:
        backend = runtime.load(artifact, backend=spec.backend, **opts)
    setup = time.perf_counter() - t0
    on_gpu = device.startswith("cuda") and hasattr(backend, "infer_device")
    if on_gpu:
        # Stage in the backend's own dtype so no cast kernels are timed (TensorRT I/O is fp32).
        staged = _stage(sets, device, DTYPES[spec.precision] if spec.backend == "torch" else "float32")

        def call(i: int) -> Any:
            return backend.infer_device(staged[i])

        def mask(i: int) -> np.ndarray:
            out = backend.infer_device(staged[i])["mask_logits"]
            torch.cuda.synchronize()
            return out.float().cpu().numpy()
    else:

        def call(i: int) -> Any:
            return backend.infer(sets[i])

        def mask(i: int) -> np.ndarray:
            return backend.infer(sets[i])["mask_logits"]

    return Runner(spec, device, "engine.runtime" + (".infer_device" if on_gpu else ".infer"), setup, call, mask, backend.info(), backend.close)


def open_baseline_runner(spec: RunSpec, sets: list[dict[str, np.ndarray]], device: str) -> Runner:
    """The AVSBench-style reference network, eager, on the same image + audio as the ICF runs."""
    import torch

    from .baseline_net import build_baseline

    t0 = time.perf_counter()
    torch.manual_seed(0)
    dtype = getattr(torch, DTYPES[spec.precision])
    net = build_baseline().to(device=device, dtype=dtype)
    if spec.channels_last:
        net = net.to(memory_format=torch.channels_last)
    staged = _stage([{"image": s["image"], "audio": s["audio"]} for s in sets], device, DTYPES[spec.precision])

    def call(i: int) -> Any:
        with torch.inference_mode():
            return net(staged[i]["image"], staged[i]["audio"])

    def mask(i: int) -> np.ndarray:
        return call(i).float().cpu().numpy()

    setup = time.perf_counter() - t0
    return Runner(spec, device, "bench.baseline_net (eager)", setup, call, mask, {"network": "AVSBench-style ResNet-50 + TPAVI x4 + FPN"})


def open_runner(spec: RunSpec, *, artifacts: Artifacts | None, sets: list[dict[str, np.ndarray]], device: str, threads: int | None = None) -> Runner:
    if spec.backend == "baseline":
        return open_baseline_runner(spec, sets, device)
    if artifacts is None:
        raise ValueError("ICF runners need the model's Artifacts")
    return open_engine_runner(spec, artifacts, sets, device, threads)


def input_tuple(s: dict[str, np.ndarray]) -> tuple:
    import torch

    return tuple(torch.from_numpy(s[n]) for n in INPUT_NAMES)
