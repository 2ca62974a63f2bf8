"""Build a TensorRT engine (.plan + sidecar) from an exported ONNX file.

Written against the TensorRT 10 Python API (explicit batch is the only mode; named I/O tensors):
Builder -> create_network(0) -> OnnxParser.parse_from_file -> builder config (workspace pool limit,
timing cache, precision) -> build_serialized_network.

Precision differs between major versions:
- TensorRT 10 ("weak typing"): BuilderFlag.FP16 / BF16 / INT8 let TensorRT pick lower-precision
  kernels; INT8 scales come from an IInt8EntropyCalibrator2 fed with step inputs.
- TensorRT 11 removed those flags (strong typing only): the ONNX itself must carry the types, so
  fp16/bf16 are converted with NVIDIA ModelOpt AutoCast and int8 is quantised to explicit Q/DQ
  with ModelOpt's ONNX PTQ (entropy calibration on the same inputs), then built as is.
Neither path can run on this CPU-only machine; both are exercised by the @pytest.mark.trt tests.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import spec
from .inputs import calibration_inputs
from .trt_common import PRECISIONS, TensorRTUnavailable, gpu_identity, import_tensorrt

log = logging.getLogger("icf.engine")


class BuildError(RuntimeError):
    """TensorRT could not parse or build the network."""


def _ort_step(onnx_path: Path):
    """fp32 ONNX Runtime step on CPU, used to roll realistic ring states for calibration."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(spec.OUTPUT_NAMES, sess.run(list(spec.OUTPUT_NAMES), inputs)))

    return step


def make_entropy_calibrator(trt, batches: Iterable[dict[str, np.ndarray]], cache_path: Path | None):
    """An IInt8EntropyCalibrator2 (TensorRT 10) that feeds input dicts through CUDA tensors."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 base must be initialised explicitly
            self._batches = iter(batches)
            self._held: dict[str, Any] = {}  # keeps device memory alive until TensorRT asks again
            self.frames = 0

        def get_batch_size(self) -> int:
            return 1  # the graph has a static batch of 1; each batch is one frame

        def get_batch(self, names, *_):
            try:
                batch = next(self._batches)
            except StopIteration:
                return None  # tells TensorRT calibration is done
            self._held = {n: torch.from_numpy(np.ascontiguousarray(batch[n])).cuda() for n in names}
            torch.cuda.synchronize()
            self.frames += 1
            return [int(self._held[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                log.info("INT8: reusing calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _modelopt_convert(onnx_path: Path, precision: str, batches: list[dict] | None, work: Path) -> Path:
    """TensorRT 11: make the ONNX strongly typed for ``precision`` with NVIDIA ModelOpt."""
    import onnx

    try:
        if precision == "int8":
            from modelopt.onnx.quantization import quantize
        else:
            from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT {import_tensorrt().__version__} has no precision builder flags (strong typing only), so {precision} "
            "needs the ONNX converted first with NVIDIA ModelOpt: pip install 'nvidia-modelopt[onnx]'. "
            "Or build fp32, or use TensorRT 10."
        ) from exc
    out = work / f"{onnx_path.stem}.{precision}.onnx"
    if precision == "int8":
        data = {n: np.concatenate([b[n] for b in batches], axis=0) for n in spec.INPUT_NAMES}  # frames on axis 0
        quantize(str(onnx_path), quantize_mode="int8", calibration_data=data, calibration_method="entropy",
                 output_path=str(out), high_precision_dtype="fp16")
    else:
        converted = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type=precision, keep_io_types=True)
        onnx.save(converted, str(out))
    return out


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    *,
    precision: str = "fp16",
    workspace_gb: float = 4.0,
    calib_data: str = "auto",
    calib_frames: int = 256,
    calib_cache: str | Path | None = None,
    timing_cache: str | Path | None = None,
) -> Path:
    """Builds ``out`` (.plan) + ``out.json`` from an exported, verified ONNX file. Returns the plan path."""
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    onnx_path, out = Path(onnx_path), Path(out)
    doc = spec.read_sidecar(onnx_path)
    if doc["kind"] != "onnx":
        raise spec.ArtifactError(f"{onnx_path} is a {doc['kind']} artifact; build takes an exported .onnx")
    spec.verify_onnx(onnx_path, doc)
    gpu = gpu_identity()
    specs = spec.specs_from(doc["inputs"])
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10 has the flags; 11 removed them
    calibration: dict[str, Any] | None = None
    batches = None
    if precision == "int8":
        batches = list(calibration_inputs(calib_data, specs, calib_frames, step=_ort_step(onnx_path)))
        calibration = {"data": calib_data, "frames": len(batches), "method": "entropy"}
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        source = onnx_path
        if not weak_typing and precision != "fp32":
            source = _modelopt_convert(onnx_path, precision, batches, Path(work))
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the default (and only) mode since TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BuildError(f"TensorRT could not parse {source}:\n  " + "\n  ".join(errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        timing_path = Path(timing_cache) if timing_cache else None
        blob = timing_path.read_bytes() if timing_path and timing_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)  # False: refuse a cache from another device
        if weak_typing and precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif weak_typing and precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        elif weak_typing and precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers without INT8 kernels fall back to fp16, not fp32
            cache = Path(calib_cache) if calib_cache else out.with_suffix(".calib")
            config.int8_calibrator = make_entropy_calibrator(trt, batches, cache)
            calibration["cache"] = str(cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"TensorRT failed to build {onnx_path} at {precision}; the TensorRT log above says why")
        fd, tmp = tempfile.mkstemp(suffix=".plan", dir=out.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(serialized)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        if timing_path is not None:
            timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        inputs = [_tensor_entry(network.get_input(i)) for i in range(network.num_inputs)]
        outputs = [_tensor_entry(network.get_output(i)) for i in range(network.num_outputs)]
    seconds = time.perf_counter() - t0

    # The network description (model, config, concepts, I/O, pixel normalisation) carries over from the ONNX sidecar.
    sidecar = {k: v for k, v in doc.items() if k not in ("onnx", "parity", "created")}
    sidecar.update(kind="tensorrt-plan", tools=spec.tool_versions())
    _checked_io(inputs, doc["inputs"], "input")
    _checked_io(outputs, doc["outputs"], "output")
    sidecar["tensorrt"] = {
        "tensorrt_version": trt.__version__,
        **gpu,
        "precision": precision,
        "typing": "weak (builder precision flags)" if weak_typing else "strong (ModelOpt-converted ONNX)",
        "workspace_gb": workspace_gb,
        "onnx_file": str(onnx_path),
        "onnx_sha256": doc["onnx"]["sha256"],
        "plan_sha256": spec.file_sha256(out),
        "plan_bytes": out.stat().st_size,
        "build_seconds": round(seconds, 1),
        "calibration": calibration,
        # host I/O stays the float32 contract above; these are the engine's own tensor types
        "engine_io": inputs + outputs,
    }
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    spec.write_sidecar(out, sidecar)
    log.info("built %s (%s, TensorRT %s, %s) in %.0f s", out, precision, trt.__version__, gpu["gpu_name"], seconds)
    return out


def _parser_error(err) -> str:
    """IParserError -> 'node N (op): description' (its accessors are methods, not fields)."""
    try:
        return f"node {err.node()} ({err.node_operator()}): {err.desc()}"
    except AttributeError:
        return str(err)


def _tensor_entry(tensor) -> dict[str, Any]:
    return {"name": tensor.name, "shape": [int(d) for d in tensor.shape], "dtype": str(tensor.dtype).removeprefix("DataType.").lower()}


def _checked_io(got: list[dict], want: list[dict], side: str) -> list[dict]:
    """The engine must keep the ONNX contract (names, static shapes, float32 host I/O)."""
    if [(e["name"], e["shape"]) for e in got] != [(e["name"], list(e["shape"])) for e in want]:
        raise BuildError(f"TensorRT network {side}s {got} differ from the ONNX contract {want}")
    return got
