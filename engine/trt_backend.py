"""TensorRT runtime backend (.plan): native runtime, preallocated device buffers, optional CUDA graph.

Buffers are torch CUDA tensors (torch is already a dependency, so no pycuda / cuda-python): each
I/O tensor gets one fixed device allocation bound with ``set_tensor_address`` once, inputs are
copied in and outputs out through pinned host memory, and ``execute_async_v3`` runs on a torch
stream. With ``cuda_graph=True`` that one enqueue is captured into a CUDA graph after a warm-up
call (TensorRT defers some work to the first enqueue) and replayed per frame.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend
from .device_io import DeviceIO
from .spec import INPUT_NAMES, OUTPUT_NAMES, ArtifactError, open_artifact
from .trt_common import check_engine_compatible, engine_io, gpu_identity, import_tensorrt, trt_dtype_to_torch

log = logging.getLogger("icf.engine")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, artifact: str | Path, *, cuda_graph: bool = True, reason: str = "requested backend=tensorrt") -> None:
        trt = import_tensorrt()
        import torch

        artifact = Path(artifact)
        doc = open_artifact(artifact, "tensorrt-plan", self.name)
        gpu = gpu_identity()
        check_engine_compatible(doc, "tensorrt", str(artifact), trt.__version__, gpu)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(artifact.read_bytes())
        if engine is None:
            raise ArtifactError(
                f"TensorRT {trt.__version__} could not deserialise {artifact} (see its log above); rebuild it on this machine "
                f"with `icf-engine build --onnx {doc['tensorrt'].get('onnx_file')} --precision {doc['tensorrt']['precision']} --out {artifact}`"
            )
        self._engine = engine
        tensors = {e["name"]: e for e in engine_io(trt, engine)}
        missing = [n for n in (*INPUT_NAMES, *OUTPUT_NAMES) if n not in tensors]
        extra = sorted(set(tensors) - set(INPUT_NAMES) - set(OUTPUT_NAMES))
        if missing or extra:
            raise ArtifactError(f"{artifact}: engine tensors {sorted(tensors)} lack {missing} / add {extra} against the step "
                                "contract; rebuild it from a current export")
        self._context = engine.create_execution_context()
        if self._context is None:  # TensorRT returns None (and logs why) e.g. when device memory runs out
            raise RuntimeError(f"TensorRT could not create an execution context for {artifact} (out of GPU memory?); see the TensorRT log")
        super().__init__(artifact=artifact, sidecar=doc, device="cuda", precision=doc["tensorrt"]["precision"], reason=reason)
        buffers: dict[str, Any] = {}
        for name, entry in tensors.items():
            shape = tuple(entry["shape"])
            declared = (self.input_specs | self.output_specs)[name]
            if declared[0] != shape:
                raise ArtifactError(f"{artifact}: engine tensor '{name}' {shape} does not match the sidecar {declared[0]}; rebuild")
            if (entry["mode"] == "input") != (name in INPUT_NAMES):
                raise ArtifactError(f"{artifact}: engine tensor '{name}' has the wrong direction; rebuild from a current export")
            buffers[name] = self._allocate(shape, trt_dtype_to_torch(trt, engine.get_tensor_dtype(name)))
            if not self._context.set_tensor_address(name, buffers[name].data_ptr()):
                raise RuntimeError(f"TensorRT refused the device address for tensor '{name}' of {artifact}; see the TensorRT log")
        self._io = DeviceIO({n: buffers[n] for n in INPUT_NAMES}, {n: buffers[n] for n in OUTPUT_NAMES})
        self._stream = torch.cuda.Stream(torch.device("cuda"))
        self._torch = torch
        self._graph = None
        t0 = time.perf_counter()
        self._io.upload(self.blank_inputs(), self._stream)
        self._enqueue()  # first enqueue does TensorRT's deferred setup; it must not be inside a capture
        self._stream.synchronize()
        if cuda_graph:
            self._graph = self._capture()
        self.setup_seconds = time.perf_counter() - t0

    @staticmethod
    def _allocate(shape: tuple[int, ...], dtype):
        """One fixed device buffer per I/O tensor (bound once with set_tensor_address)."""
        import torch

        return torch.empty(shape, dtype=dtype, device="cuda")

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.artifact}; see the TensorRT log")

    def _capture(self):
        torch = self._torch
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream):
                self._enqueue()
        except RuntimeError as exc:  # some engines (e.g. with data-dependent shapes) cannot be captured
            log.warning("TensorRT enqueue could not be captured into a CUDA graph (%s); running without", exc)
            return None
        return graph

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._io.upload(inputs, self._stream)
        self._launch()
        return self._io.download(self._stream)

    def _launch(self) -> None:
        if self._graph is not None:
            with self._torch.cuda.stream(self._stream):  # replay() launches on the current stream
                self._graph.replay()
        else:
            self._enqueue()

    def infer_device(self, tensors: dict) -> dict:
        """Device-resident step (CUDA tensors in, the engine's output buffers out; clone to keep)."""
        current = self._torch.cuda.current_stream()
        self._stream.wait_stream(current)
        self._io.load_device(tensors, self._stream)
        self._launch()
        current.wait_stream(self._stream)
        return self._io.outputs

    def _extra_info(self) -> dict[str, Any]:
        built = self.sidecar["tensorrt"]
        return {
            "tensorrt_version": built["tensorrt_version"], "gpu": built["gpu_name"], "cuda_graph": self._graph is not None,
            "setup_seconds": round(self.setup_seconds, 2),
        }

    def close(self) -> None:
        self._graph = self._context = self._engine = self._io = None


class TorchTensorRTBackend(Backend):
    """Runs a torch-tensorrt exported program (.ep from ``icf-engine build --via torch-tensorrt``)."""

    name = "torch-tensorrt"

    def __init__(self, artifact: str | Path, *, reason: str = "requested backend=torch-tensorrt") -> None:
        from .trt_common import import_torch_tensorrt

        torch_tensorrt = import_torch_tensorrt()  # registers the TensorRT ops the program calls
        trt = import_tensorrt()
        import torch

        artifact = Path(artifact)
        doc = open_artifact(artifact, "torch-tensorrt", self.name)
        check_engine_compatible(doc, "torch_tensorrt", str(artifact), trt.__version__, gpu_identity())
        super().__init__(artifact=artifact, sidecar=doc, device="cuda", precision=doc["torch_tensorrt"]["precision"], reason=reason)
        loaded = torch_tensorrt.load(str(artifact))
        self._module = loaded.module() if hasattr(loaded, "module") else loaded
        self._torch = torch

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(inputs[n]).cuda() for n in INPUT_NAMES]
        with torch.inference_mode():
            outs = self._module(*args)
        return {n: o.float().cpu().numpy() for n, o in zip(OUTPUT_NAMES, outs)}
