"""Torch backend: the reference network, run eager, under torch.compile, or as a CUDA-graph replay.

Artifacts: a .safetensors checkpoint, or an .onnx whose sidecar records the checkpoint it came from
(path + sha256); the torch backend rebuilds the net from that checkpoint and refuses when none is
recorded, because an ONNX graph cannot be turned back into a torch module.

Modes (why each exists, numbers in shared/references/PERFORMANCE.md):
- eager: the reference; on GPU at batch 1 it is launch bound;
- compile: torch.compile (Inductor); on CUDA mode="reduce-overhead" also uses CUDA graphs;
- cudagraph: capture one step into a torch.cuda.CUDAGraph with static input/output buffers and
  replay it (CUDA only): removes per-kernel launch cost, the main cost of these nets at batch 1.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend
from .device_io import DeviceIO
from .spec import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    ArtifactError,
    DeviceUnavailable,
    base_sidecar,
    file_sha256,
    read_sidecar,
    resolve_checkpoint,
    specs_from,
    verify_onnx,
    with_batch,
)

log = logging.getLogger("icf.engine")
MODES = ("eager", "compile", "cudagraph")
PRECISIONS = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Fields load_checkpoint overrides (they only say where initial weights came from).
_SOURCE_FIELDS = ("pretrained", "backbone_weights", "audio_weights", "audio_pretrained")


def load_reference_net(artifact: str | Path, weights: str | Path | None = None) -> tuple[Any, dict[str, Any], Path]:
    """(net on CPU fp32, sidecar dict, checkpoint path) for a checkpoint or an exported artifact."""
    import model

    artifact = Path(artifact)
    if artifact.suffix == ".safetensors":
        ckpt = Path(weights) if weights else artifact
        net = model.load_checkpoint(ckpt)
        doc = base_sidecar("checkpoint", net.config.to_dict(), net.pixel_mean.flatten().tolist(), net.pixel_std.flatten().tolist())
        doc["checkpoint"] = {"path": str(ckpt.resolve()), "sha256": file_sha256(ckpt)}
        return net, doc, ckpt
    doc = read_sidecar(artifact)
    if artifact.suffix == ".onnx":
        verify_onnx(artifact, doc)
    recorded = doc.get("checkpoint")
    if weights:
        ckpt = Path(weights)
        if recorded and file_sha256(ckpt) != recorded["sha256"]:
            raise ArtifactError(
                f"--weights {ckpt} is not the checkpoint {artifact.name} was exported from "
                f"(sidecar records {recorded['path']}, sha256 {recorded['sha256'][:16]}...); a torch reference from other weights is meaningless"
            )
    else:
        ckpt = resolve_checkpoint(doc, artifact)
        if ckpt is None:
            raise ArtifactError(
                f"{artifact} records no checkpoint, so the torch backend cannot rebuild its network (an ONNX/TensorRT graph "
                f"cannot be turned back into torch). Pass the weights (weights=CKPT / --weights CKPT), or run it with "
                f"backend='onnxruntime' / 'tensorrt'."
            )
    net = model.load_checkpoint(ckpt)
    ours = {k: v for k, v in net.config.to_dict().items() if k not in _SOURCE_FIELDS}
    theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["model"]["config"].items() if k not in _SOURCE_FIELDS}
    # a field the sidecar lacks was added after it was written: it means the field's default (as ICFConfig.from_dict reads it)
    defaults = {f.name: f.default for f in dataclasses.fields(model.ICFConfig)}
    diff = sorted(k for k in ours if ours[k] != theirs.get(k, defaults.get(k)))
    if diff:
        raise ArtifactError(f"checkpoint {ckpt} builds a network that differs from {artifact.name}'s sidecar in {diff}; re-export")
    return net, doc, ckpt


class TorchBackend(Backend):
    """mode: eager | compile | cudagraph ; device: cpu | cuda[:i] (default cuda when available) ;
    precision: fp32 | tf32 | fp16 | bf16 (weights and activations; host I/O stays float32).

    On CUDA, fp32 means IEEE fp32: torch lets cuDNN convolutions use TF32 by default, which moves
    logits by ~1e-3 and breaks the 1e-4 fp32 parity rule; tf32 asks for that faster mode on purpose.
    The TF32 switches are process-wide in torch, so they are set around each call / the capture
    and restored afterwards, and backends of different precisions can share a process."""

    name = "torch"

    def __init__(
        self,
        artifact: str | Path,
        *,
        mode: str = "eager",
        device: str | None = None,
        precision: str = "fp32",
        threads: int | None = None,
        weights: str | Path | None = None,
        channels_last: bool = False,
        compile_mode: str | None = None,
        batch: int = 1,
        reason: str = "requested backend=torch",
        net: Any = None,
    ) -> None:
        """``net``: an in-memory ICFNet to wrap instead of loading ``artifact`` (then only a label),
        for benchmarks and GPU checks that should not touch the disk. ``batch``: the static first dim
        of every input and output (many streams, one model; see :meth:`for_batch`)."""
        import torch

        if mode not in MODES:
            raise ValueError(f"torch backend mode must be one of {MODES}, not {mode!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"torch backend precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailable(f"device={device!r} but torch sees no CUDA GPU (torch {torch.__version__}); use device='cpu'")
        if mode == "cudagraph" and not device.startswith("cuda"):
            raise RuntimeError(
                "mode='cudagraph' needs a CUDA GPU (CUDA-graph capture is CUDA only); "
                "use mode='eager' or 'compile' on CPU, or the onnxruntime backend"
            )
        if threads:
            torch.set_num_threads(int(threads))
        if net is None:
            net, doc, ckpt = load_reference_net(artifact, weights)
        else:
            net = copy.deepcopy(net)  # .to(device, dtype) below is in place; leave the caller's net alone
            doc = base_sidecar("checkpoint", net.config.to_dict(), net.pixel_mean.flatten().tolist(), net.pixel_std.flatten().tolist())
            ckpt = None
        super().__init__(artifact=artifact, sidecar=with_batch(doc, batch), device=device, precision=precision, reason=reason)
        self.mode, self.checkpoint = mode, ckpt
        self._torch = torch
        self._dtype = getattr(torch, PRECISIONS[precision])
        self._device = torch.device(device)
        net = net.to(self._device, self._dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.compile_mode = compile_mode or ("reduce-overhead" if self._device.type == "cuda" else "default")
        self._prepare()

    def _prepare(self) -> None:
        """Compile (mode compile) or capture (mode cudagraph) for the current input shapes."""
        self._fn = self.net
        self._graph = None
        self._io: DeviceIO | None = None
        t0 = time.perf_counter()
        if self.mode == "compile":
            self._fn = self._torch.compile(self.net, mode=self.compile_mode, dynamic=False)
            self._run(self.blank_inputs())  # compile now, not on the stream's first frame
        elif self.mode == "cudagraph":
            with self._math():
                self._capture()
        self.setup_seconds = time.perf_counter() - t0

    @property
    def batch(self) -> int:
        return int(self.input_specs["image"][0][0])

    def for_batch(self, batch: int) -> TorchBackend:
        """The same network (weights shared, not copied) behind static shapes of first dim ``batch``:
        its own compiled program (mode compile) or its own captured graph and buffers (mode cudagraph).
        Each row of a call is an independent stream (engine/batching.py)."""
        twin = copy.copy(self)
        twin.sidecar = with_batch(self.sidecar, batch)
        twin.input_specs, twin.output_specs = specs_from(twin.sidecar["inputs"]), specs_from(twin.sidecar["outputs"])
        twin._prepare()
        return twin

    @contextlib.contextmanager
    def _math(self) -> Iterator[None]:
        """TF32 on for precision tf32, off (IEEE fp32) otherwise; restored on exit. CUDA only."""
        if self._device.type != "cuda":
            yield
            return
        backends = self._torch.backends
        old = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
        tf32 = self.precision == "tf32"
        backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = tf32
        try:
            yield
        finally:
            backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = old

    # ---- CUDA graph ----
    def _capture(self) -> None:
        torch = self._torch
        static_in = {
            n: torch.zeros(shape, dtype=self._dtype, device=self._device) for n, (shape, _) in self.input_specs.items()
        }
        args = [static_in[n] for n in INPUT_NAMES]
        stream = torch.cuda.Stream(self._device)
        stream.wait_stream(torch.cuda.current_stream(self._device))
        # Warm-up on a side stream (cuDNN autotuning, lazy allocations) before capture, as torch requires.
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(3):
                self.net(*args)
        torch.cuda.current_stream(self._device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, stream=stream):
            outs = self.net(*args)
        self._graph, self._stream = graph, stream
        self._io = DeviceIO(static_in, dict(zip(OUTPUT_NAMES, outs)))

    # ---- running ----
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        if self._graph is not None:
            self._io.upload(inputs, self._stream)
            with torch.cuda.stream(self._stream):  # replay() launches on the current stream
                self._graph.replay()
            return self._io.download(self._stream)
        args = [torch.from_numpy(inputs[n]).to(self._device, self._dtype, non_blocking=True) for n in INPUT_NAMES]
        with torch.inference_mode(), self._math():
            outs = self._fn(*args)
        return {n: o.float().cpu().numpy() for n, o in zip(OUTPUT_NAMES, outs)}

    def infer_device(self, tensors: dict) -> dict:
        """Device-resident step: tensors on this backend's device -> output tensors on it.

        cudagraph mode returns its static output buffers: they are overwritten by the next call,
        so clone what you keep. Asynchronous: synchronise before timing or reading.
        """
        torch = self._torch
        if self._graph is not None:
            current = torch.cuda.current_stream(self._device)
            self._stream.wait_stream(current)  # the caller's tensors were produced on its stream
            self._io.load_device(tensors, self._stream)
            with torch.cuda.stream(self._stream):
                self._graph.replay()
            current.wait_stream(self._stream)
            return self._io.outputs
        with torch.inference_mode(), self._math():
            outs = self._fn(*(tensors[n].to(self._dtype) for n in INPUT_NAMES))
        return dict(zip(OUTPUT_NAMES, outs))

    def _extra_info(self) -> dict[str, Any]:
        extra = {"mode": self.mode, "checkpoint": str(self.checkpoint), "setup_seconds": round(self.setup_seconds, 2), "batch": self.batch}
        if self.mode == "compile":
            extra["compile_mode"] = self.compile_mode
        if self._device.type == "cuda":
            extra["gpu"] = self._torch.cuda.get_device_name(self._device)
        else:
            extra["threads"] = self._torch.get_num_threads()
        return extra

    def close(self) -> None:
        self._graph = self._io = self._fn = self.net = None
