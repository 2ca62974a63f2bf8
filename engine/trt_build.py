"""Build a TensorRT engine (.plan + sidecar) from an exported ONNX file.

Written against the TensorRT 10 and 11 Python APIs (explicit batch only; named I/O tensors):
Builder -> create_network(0) -> OnnxParser.parse_from_file -> builder config (workspace pool limit,
timing cache, precision) -> build_serialized_network -> deserialise once to check the built engine's
I/O against the ONNX contract -> plan + sidecar written under temporary names, renamed last.

Precision differs between major versions:
- fp32: TF32 is cleared (TensorRT enables it by default; it breaks the 1e-4 fp32 parity rule).
- TensorRT 10 ("weak typing"): BuilderFlag.FP16 / BF16 / INT8 let TensorRT pick lower-precision
  kernels; INT8 scales come from an IInt8EntropyCalibrator2 fed with step inputs (implicit
  quantization: deprecated since 10.1, still working through 10.x). Its cache is keyed by the ONNX
  sha256 and the calibration data, so a new export never reuses a stale table.
- TensorRT 11 removed those flags and the calibrators (strong typing only): the ONNX itself must carry
  the types, so fp16/bf16 are converted with NVIDIA ModelOpt AutoCast and int8 is quantised to
  explicit Q/DQ with ModelOpt's ONNX PTQ (entropy calibration on the same inputs), then built as is.
Neither path can run on a CPU-only machine: tests/engine/test_trt_api_fake.py drives this module
against a strict fake of both APIs, and the @pytest.mark.trt tests run it on a real GPU.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
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
from .trt_common import PRECISIONS, TensorRTUnavailable, engine_io, gpu_identity, import_tensorrt

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


def _to_cuda(array: np.ndarray):
    """A host array as a CUDA tensor (the calibrator hands TensorRT its device pointer)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).cuda()


def _cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


def make_entropy_calibrator(trt, batches: Iterable[dict[str, np.ndarray]], cache_path: Path | None):
    """An IInt8EntropyCalibrator2 (TensorRT 10 only; deprecated since 10.1, removed in 11) fed with step inputs.

    get_batch returns one device pointer per requested input name, in TensorRT's order, and None
    once the batches run out; the tensors behind the pointers stay alive until the next call.
    """

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
                self._held = {}
                return None  # tells TensorRT calibration is done
            missing = [n for n in names if n not in batch]
            if missing:
                raise KeyError(f"calibration batch lacks input(s) {missing}; it has {sorted(batch)}")
            self._held = {n: _to_cuda(batch[n]) for n in names}
            _cuda_synchronize()
            self.frames += 1
            return [int(self._held[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                log.info("INT8: reusing calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path is not None:
                _write_atomically(cache_path, bytes(cache))

    return EntropyCalibrator()


def default_calib_cache(out: Path, onnx_sha256: str, calib_data: str, frames: int) -> Path:
    """Calibration cache beside the plan, keyed by the ONNX bytes and the calibration data: a new export or
    other frames never reuse a stale scale table."""
    data_key = hashlib.sha256(f"{calib_data}|{frames}".encode()).hexdigest()[:8]
    return out.with_name(f"{out.stem}.onnx-{onnx_sha256[:16]}.data-{data_key}.calib")


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
            "needs the ONNX converted first with NVIDIA ModelOpt: pip install -e '.[trt-modelopt]' (nvidia-modelopt[onnx]). "
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
    """Builds ``out`` (.plan) + ``out.json`` from an exported, verified ONNX file. Returns the plan path.

    Nothing is written at ``out`` unless the build succeeded and the built engine keeps the ONNX I/O
    contract: plan and sidecar go to temporary files first and are renamed into place last.
    """
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
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10 has the precision flags; 11 removed them
    calibration: dict[str, Any] | None = None
    batches = None
    if precision == "int8":
        batches = list(calibration_inputs(calib_data, specs, calib_frames, step=_ort_step(onnx_path)))
        calibration = {"data": calib_data, "frames": len(batches), "method": "entropy"}
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as work:
        source = onnx_path
        if not weak_typing and precision != "fp32":
            source = _modelopt_convert(onnx_path, precision, batches, Path(work))
            if calibration is not None:
                calibration["method"] = "entropy, ModelOpt ONNX PTQ (explicit Q/DQ)"
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the default (and only) mode since TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BuildError(f"TensorRT could not parse {source}:\n  " + "\n  ".join(errors or ["(no parser errors reported)"]))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        timing_path = Path(timing_cache) if timing_cache else None
        _set_timing_cache(config, timing_path)
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            # TF32 is on by default; it moves fp32 logits by ~5e-4, above the 1e-4 fp32 rule of engine.check
            config.clear_flag(trt.BuilderFlag.TF32)
        elif weak_typing and precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif weak_typing and precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        elif weak_typing and precision == "int8":
            log.info("INT8 on TensorRT %s: implicit quantization with an entropy calibrator "
                     "(deprecated since TensorRT 10.1, removed in 11, where ModelOpt Q/DQ is used instead)", trt.__version__)
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)  # layers without INT8 kernels fall back to fp16, not fp32
            cache = Path(calib_cache) if calib_cache else default_calib_cache(out, doc["onnx"]["sha256"], calib_data, len(batches))
            config.int8_calibrator = make_entropy_calibrator(trt, batches, cache)
            calibration["cache"] = str(cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"TensorRT failed to build {onnx_path} at {precision}; the TensorRT log above says why")
        plan = bytes(serialized)
        built = _built_engine_io(trt, logger, plan, onnx_path)
        inputs = _checked_io([e for e in built if e["mode"] == "input"], doc["inputs"], "input")
        outputs = _checked_io([e for e in built if e["mode"] == "output"], doc["outputs"], "output")
        timing_blob = bytes(config.get_timing_cache().serialize()) if timing_path is not None else None
    seconds = time.perf_counter() - t0

    # The network description (model, config, concepts, I/O, pixel normalisation) carries over from the ONNX sidecar.
    sidecar = {k: v for k, v in doc.items() if k not in ("onnx", "parity", "created")}
    sidecar.update(kind="tensorrt-plan", tools=spec.tool_versions())
    sidecar["tensorrt"] = {
        "tensorrt_version": trt.__version__,
        **gpu,
        "precision": precision,
        "typing": "weak (builder precision flags)" if weak_typing else "strong (ModelOpt-converted ONNX)",
        "tf32": precision != "fp32",  # TensorRT's default; cleared for fp32 plans
        "workspace_gb": workspace_gb,
        "onnx_file": str(onnx_path),
        "onnx_sha256": doc["onnx"]["sha256"],
        "plan_sha256": hashlib.sha256(plan).hexdigest(),
        "plan_bytes": len(plan),
        "build_seconds": round(seconds, 1),
        "calibration": calibration,
        # host I/O stays the float32 contract above; these are the built engine's own tensors
        "engine_io": inputs + outputs,
    }
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    _publish(out, plan, sidecar)
    if timing_blob is not None:
        _write_atomically(timing_path, timing_blob)
    log.info("built %s (%s, TensorRT %s, %s) in %.0f s", out, precision, trt.__version__, gpu["gpu_name"], seconds)
    return out


def _set_timing_cache(config, path: Path | None) -> None:
    """Loads the timing cache (a fresh one if the file is from another TensorRT / GPU); TensorRT's bool is checked."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    if config.set_timing_cache(config.create_timing_cache(blob), False):  # False: refuse a cache from another device
        return
    if blob:
        log.warning("timing cache %s does not fit this TensorRT / GPU; building with a fresh one (it is replaced after the build)", path)
        if config.set_timing_cache(config.create_timing_cache(b""), False):
            return
    raise BuildError("TensorRT refused an empty timing cache (IBuilderConfig.set_timing_cache returned False); see the TensorRT log")


def _built_engine_io(trt, logger, plan: bytes, onnx_path: Path) -> list[dict[str, Any]]:
    """Deserialises the fresh plan once to read the I/O of the engine as built (static dims resolved)."""
    runtime = trt.Runtime(logger)  # must outlive the engine it deserialises
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise BuildError(f"TensorRT built {onnx_path} but cannot deserialise the result; the TensorRT log above says why")
    try:
        return engine_io(trt, engine)
    finally:
        del engine  # engine before runtime


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _publish(out: Path, plan: bytes, sidecar: dict[str, Any]) -> None:
    """Plan then sidecar, each fully written under a temporary name before it is renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    tmp_plan = Path(tmp)
    tmp_side = spec.sidecar_path(tmp_plan)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(plan)
        os.chmod(tmp_plan, 0o644)
        spec.write_sidecar(tmp_plan, sidecar)
        os.replace(tmp_plan, out)
        os.replace(tmp_side, spec.sidecar_path(out))
    finally:
        tmp_plan.unlink(missing_ok=True)
        tmp_side.unlink(missing_ok=True)


def _parser_error(err) -> str:
    """IParserError -> 'node N (op): description' (its accessors are methods, not fields)."""
    try:
        return f"node {err.node()} ({err.node_operator()}): {err.desc()}"
    except AttributeError:
        return str(err)


def _checked_io(got: list[dict], want: list[dict], side: str) -> list[dict]:
    """The built engine must keep the ONNX contract (names and static shapes; order may differ)."""
    have = {e["name"]: list(e["shape"]) for e in got}
    need = {e["name"]: list(e["shape"]) for e in want}
    if have != need:
        raise BuildError(f"TensorRT engine {side}s {have} differ from the ONNX contract {need}; the plan was not written")
    return got
