"""Shared TensorRT helpers: lazy import with install advice, GPU identity, engine compatibility.

TensorRT is optional (``pip install -e '.[trt]'`` on a CUDA machine); nothing here imports it at
module import time, so the rest of the engine works without it.
"""

from __future__ import annotations

import re
from typing import Any

from .spec import ArtifactError

INSTALL_HELP = (
    "TensorRT is not installed in this environment. On a Linux machine with an NVIDIA GPU and a CUDA driver, "
    "install the optional extra: pip install -e '.[trt]' (TensorRT 10 or 11 and torch-tensorrt 2.13, the release for "
    "torch 2.13; add '.[trt-modelopt]' for fp16/bf16/int8 .plan builds on TensorRT 11). "
    "Without it, use --backend onnxruntime (any machine) or --backend torch (mode cudagraph on a GPU)."
)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or torch-tensorrt / ModelOpt) is missing, or there is no CUDA GPU to run it on."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(INSTALL_HELP) from exc
    return trt


def import_torch_tensorrt():
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(INSTALL_HELP.replace("TensorRT is", "torch-tensorrt is")) from exc
    return torch_tensorrt


def tensorrt_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("tensorrt") is not None


def gpu_identity(index: int = 0) -> dict[str, str]:
    """{"gpu_name", "compute_capability"} of the CUDA device TensorRT will build for / run on."""
    try:
        import torch
    except ImportError as exc:
        raise TensorRTUnavailable("the TensorRT path uses torch for CUDA buffers; install torch with CUDA") from exc
    if not torch.cuda.is_available():
        raise TensorRTUnavailable(
            f"TensorRT needs a CUDA GPU and torch {torch.__version__} sees none (torch.cuda.is_available() is False); "
            "build and run engines on the GPU machine that will use them"
        )
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu_name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def check_engine_compatible(doc: dict[str, Any], section: str, artifact: str, trt_version: str, gpu: dict[str, str]) -> None:
    """TensorRT engines are tied to one TensorRT version and one GPU model; say so before deserialising."""
    built = doc[section]
    problems = []
    if built.get("tensorrt_version") != trt_version:
        problems.append(f"TensorRT {built.get('tensorrt_version')} (this machine: {trt_version})")
    if built.get("gpu_name") != gpu["gpu_name"]:
        problems.append(f"GPU {built.get('gpu_name')} (this machine: {gpu['gpu_name']})")
    elif built.get("compute_capability") != gpu["compute_capability"]:
        problems.append(f"compute capability {built.get('compute_capability')} (this machine: {gpu['compute_capability']})")
    if problems:
        onnx_file = built.get("onnx_file", "<model>.onnx")
        raise ArtifactError(
            f"{artifact} was built for {' and '.join(problems)}. TensorRT engines only run on the TensorRT version and "
            f"GPU model they were built with: rebuild it here with `icf-engine build --onnx {onnx_file} "
            f"--precision {built.get('precision', 'fp16')} --out {artifact}` (or let engine.cache.get_or_build do it)."
        )


def engine_io(trt, engine) -> list[dict[str, Any]]:
    """The built engine's I/O tensors: [{"name", "shape", "dtype", "mode": "input"|"output"}] in engine order.

    Read from the ICudaEngine (not the network definition, whose dims can still be -1 before building).
    """
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        out.append({
            "name": name,
            "shape": [int(d) for d in engine.get_tensor_shape(name)],
            "dtype": str(engine.get_tensor_dtype(name)).removeprefix("DataType.").lower(),
            "mode": "input" if mode == trt.TensorIOMode.INPUT else "output",
        })
    return out


def trt_dtype_to_torch(trt, dtype):
    import torch

    table = {
        "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
        "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool,
    }
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return torch_dtype
    raise ArtifactError(f"engine tensor dtype {dtype} has no torch equivalent here")
