"""ONNX Runtime backend: CPU EP by default; CUDA / TensorRT EPs when the installed build has them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend
from .spec import OUTPUT_NAMES, ArtifactError, check_graph_io, onnx_unreadable, open_artifact

log = logging.getLogger("icf.engine")

ORT_DTYPES = {"tensor(float)": np.dtype("float32"), "tensor(float16)": np.dtype("float16"), "tensor(int64)": np.dtype("int64"),
              "tensor(int32)": np.dtype("int32"), "tensor(uint8)": np.dtype("uint8"), "tensor(bool)": np.dtype("bool")}
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtBackend(Backend):
    """``device``: cpu | cuda | tensorrt (EP names) ; ``threads``: intra-op threads (CPU EP).

    ``precision`` fp16 is only honoured by the TensorRT EP (trt_fp16_enable); CPU/CUDA run fp32.
    """

    name = "onnxruntime"

    def __init__(
        self,
        artifact: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        precision: str | None = None,
        trt_cache_dir: str | None = None,
        reason: str = "requested backend=onnxruntime",
        verify: bool = True,
    ) -> None:
        import onnxruntime as ort

        artifact = Path(artifact)
        if artifact.suffix != ".onnx":
            raise ArtifactError(f"the onnxruntime backend runs .onnx files, not {artifact.name}; export one with `icf-engine export`")
        sidecar = open_artifact(artifact, "onnx", self.name, verify=verify, graph_io=False)  # I/O: checked on the session below
        if device not in DEVICE_PROVIDERS:
            raise ValueError(f"onnxruntime device must be one of {sorted(DEVICE_PROVIDERS)}, not {device!r}")
        graph = sidecar["onnx"].get("precision", "fp32")  # "int8": a quantised graph from engine.quantize
        if graph == "int8":
            if precision not in (None, "int8") or device != "cpu":
                raise ValueError(f"{artifact.name} is an int8 graph for the CPU EP; it runs with device='cpu' (precision int8), "
                                 f"not {device!r} / {precision!r}")
            precision = "int8"
        precision = precision or "fp32"
        if precision != "fp32" and graph != "int8" and device != "tensorrt":
            raise ValueError(f"onnxruntime runs the fp32 graph on {device}; precision {precision!r} needs device='tensorrt' or the tensorrt backend")
        available = ort.get_available_providers()
        wanted = DEVICE_PROVIDERS[device]
        if wanted[0] not in available:
            raise RuntimeError(
                f"ONNX Runtime here has no {wanted[0]} (available: {available}); install onnxruntime-gpu on a CUDA machine "
                f"for device='{device}', or use device='cpu'"
            )
        providers: list[Any] = []
        for p in wanted:
            if p not in available:
                continue
            if p == "TensorrtExecutionProvider":
                opts = {"trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": bool(trt_cache_dir)}
                if trt_cache_dir:
                    opts["trt_engine_cache_path"] = trt_cache_dir
                providers.append((p, opts))
            else:
                providers.append(p)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1  # one graph at a time; extra pools only add contention
        try:
            self._session = ort.InferenceSession(str(artifact), so, providers=providers)
        except (ort.capi.onnxruntime_pybind11_state.InvalidProtobuf, ort.capi.onnxruntime_pybind11_state.InvalidGraph) as exc:
            raise onnx_unreadable(artifact, exc) from exc  # bytes that match the sidecar but are no graph
        self._providers = self._session.get_providers()  # kept so info() still answers after close()
        self.threads = threads
        super().__init__(artifact=artifact, sidecar=sidecar, device=device, precision=precision, reason=reason)
        session_io = [{v.name: (tuple(d if isinstance(d, int) else -1 for d in v.shape), ORT_DTYPES.get(v.type, np.dtype(object)))
                       for v in vs} for vs in (self._session.get_inputs(), self._session.get_outputs())]
        check_graph_io(artifact, *session_io, sidecar)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._as_outputs(self._session.run(list(OUTPUT_NAMES), inputs))

    def _extra_info(self) -> dict[str, Any]:
        return {"providers": self._providers, "threads": self.threads}

    def close(self) -> None:
        self._session = None
