"""The TensorRT build / load path against a strict fake ``tensorrt`` (TensorRT 10 and 11 API surface), on the CPU.

No TensorRT or GPU is needed: tests/engine/fake_tensorrt.py stands in for the library and records the calls.
What the real library does with a GPU is checked by the ``trt``-marked tests in test_engine_trt.py.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fake_tensorrt import make_fake_tensorrt

from engine import spec

GPU = {"gpu_name": "Fake GPU", "compute_capability": "9.0"}


def install_trt(monkeypatch, major: int = 10):
    fake = make_fake_tensorrt(major)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "modelopt", None)  # not installed unless a test installs a fake
    for module in ("engine.trt_build", "engine.trt_backend", "engine.trt_common"):
        monkeypatch.setattr(f"{module}.gpu_identity", lambda index=0: dict(GPU))
    return fake


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def trt(request, monkeypatch):
    return install_trt(monkeypatch, request.param)


@pytest.fixture
def trt10(monkeypatch):
    return install_trt(monkeypatch, 10)


def build(onnx, out, **kw):
    from engine.trt_build import build_engine

    return build_engine(onnx, out, workspace_gb=1, **kw)


def names(calls):
    return [c[0] for c in calls]


def arg(calls, name):
    """First argument of the last recorded call ``name``."""
    return [c for c in calls if c[0] == name][-1][1]


def test_fake_is_strict(trt):
    """Removed API is an AttributeError, as on a real install; TensorRT 11 lacks the precision flags."""
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        builder.build_engine(None, config)  # removed in TensorRT 10: build_serialized_network
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 30
    with pytest.raises(TypeError):
        config.set_timing_cache(config.create_timing_cache(b""))  # TensorRT 10 takes (cache, ignore_mismatch)
    engine = trt.Runtime(None).deserialize_cuda_engine(b"FAKEPLAN" + json.dumps({"io": []}).encode())
    for removed in ("get_binding_shape", "get_binding_index", "num_bindings"):
        assert not hasattr(engine, removed)
    assert not hasattr(engine.create_execution_context(), "execute_async_v2")
    assert config.get_flag(trt.BuilderFlag.TF32)  # on by default, like TensorRT
    assert hasattr(trt.BuilderFlag, "FP16") == (trt.__version__.startswith("10."))
    assert hasattr(trt, "IInt8EntropyCalibrator2") == (trt.__version__.startswith("10."))


def test_fp32_build_order_and_tf32_cleared(trt, exports, tmp_path):
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32", timing_cache=tmp_path / "timing.cache")
    order = names(trt.calls)
    steps = ["parse_from_file", "set_memory_pool_limit", "set_timing_cache", "clear_flag", "build_serialized_network"]
    assert [order.index(s) for s in steps] == sorted(order.index(s) for s in steps), order
    assert ("clear_flag", "TF32") in trt.calls and "set_flag" not in order
    built_flags = arg(trt.calls, "build_serialized_network")
    assert "TF32" not in built_flags
    doc = spec.read_sidecar(out)
    assert doc["tensorrt"]["tf32"] is False and doc["tensorrt"]["plan_sha256"] == spec.file_sha256(out)
    assert doc["tensorrt"]["tensorrt_version"] == trt.__version__
    assert [e["name"] for e in doc["tensorrt"]["engine_io"]] == [*spec.INPUT_NAMES, *spec.OUTPUT_NAMES]
    assert (tmp_path / "timing.cache").read_bytes()  # written after a successful build


def test_fp16_weak_typing_sets_flag_on_trt10(trt10, exports, tmp_path):
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp16")
    assert ("set_flag", "FP16") in trt10.calls and "clear_flag" not in names(trt10.calls)
    assert spec.read_sidecar(out)["tensorrt"]["typing"].startswith("weak")


def test_fp16_on_trt11_needs_modelopt_and_leaves_nothing(monkeypatch, exports, tmp_path):
    from engine.trt_common import TensorRTUnavailable

    install_trt(monkeypatch, 11)
    with pytest.raises(TensorRTUnavailable, match="nvidia-modelopt"):
        build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp16")
    assert list(tmp_path.iterdir()) == []


def test_fp16_on_trt11_builds_the_modelopt_typed_onnx(monkeypatch, exports, tmp_path):
    import types

    import onnx

    trt = install_trt(monkeypatch, 11)
    seen = {}

    def convert_to_mixed_precision(onnx_path, low_precision_type="fp16", keep_io_types=False, **kw):
        seen.update(onnx_path=onnx_path, low_precision_type=low_precision_type, keep_io_types=keep_io_types)
        return onnx.load(onnx_path)

    autocast = types.SimpleNamespace(convert_to_mixed_precision=convert_to_mixed_precision)
    monkeypatch.setitem(sys.modules, "modelopt", types.ModuleType("modelopt"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx", types.ModuleType("modelopt.onnx"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", autocast)
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp16")
    assert seen["low_precision_type"] == "fp16" and seen["keep_io_types"] is True
    parsed = arg(trt.calls, "parse_from_file")
    assert parsed.endswith("icf-tiny.fp16.onnx") and parsed != str(exports["icf-tiny"])
    assert "set_flag" not in names(trt.calls)
    assert spec.read_sidecar(out)["tensorrt"]["typing"].startswith("strong")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.plan"]


def test_none_from_builder_is_a_build_error_and_no_plan(trt, exports, tmp_path):
    from engine.trt_build import BuildError

    trt.knobs.build_returns_none = True
    with pytest.raises(BuildError, match="failed to build"):
        build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32", timing_cache=tmp_path / "timing.cache")
    assert list(tmp_path.iterdir()) == []


def test_parser_errors_are_reported(trt, exports, tmp_path):
    from engine.trt_build import BuildError

    trt.knobs.parse_errors = [(7, "Resize", "unsupported coordinate_transformation_mode")]
    with pytest.raises(BuildError, match=r"node 7 \(Resize\): unsupported coordinate_transformation_mode"):
        build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32")
    assert list(tmp_path.iterdir()) == []


def test_engine_io_mismatch_leaves_no_orphan_plan(trt, exports, tmp_path):
    """The I/O check reads the BUILT engine and runs before anything is written."""
    from engine.trt_build import BuildError

    trt.knobs.engine_shapes = {"mask_logits": [1, 1, 112, 112]}
    with pytest.raises(BuildError, match="mask_logits"):
        build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32")
    assert list(tmp_path.iterdir()) == []


def test_unknown_network_dims_are_judged_on_the_built_engine(trt, exports, tmp_path):
    trt.knobs.network_batch_unknown = True  # the network definition may say -1 before building
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32")
    assert spec.read_sidecar(out)["tensorrt"]["engine_io"][0]["shape"][0] == 1


def test_stale_timing_cache_is_replaced_not_ignored(trt, exports, tmp_path):
    from engine.trt_build import BuildError

    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"cache from another GPU")
    trt.knobs.timing_cache_refuses = {b"cache from another GPU"}
    build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp32", timing_cache=timing)
    attempts = [c for c in trt.calls if c[0] == "set_timing_cache"]
    assert [ok for _, _, ok in attempts] == [False, True] and all(not ignore for _, ignore, _ in attempts)
    assert timing.read_bytes() != b"cache from another GPU"

    trt.knobs.timing_cache_refuses = {b"cache from another GPU", b""}  # even a fresh cache refused: stop
    timing.write_bytes(b"cache from another GPU")
    with pytest.raises(BuildError, match="timing cache"):
        build(exports["icf-tiny"], tmp_path / "other.plan", precision="fp32", timing_cache=timing)
    assert not (tmp_path / "other.plan").exists()


@pytest.fixture
def cpu_calibration(monkeypatch):
    """The calibrator's device copies become host tensors (their pointers are still real, non-zero addresses)."""
    import torch

    monkeypatch.setattr("engine.trt_build._to_cuda", lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    monkeypatch.setattr("engine.trt_build._cuda_synchronize", lambda: None)


def test_int8_calibrator_gives_pointers_then_none(trt10, cpu_calibration, exports, tmp_path):
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="int8", calib_data="random", calib_frames=3)
    assert len(trt10.calibration["pointers"]) == 3 and trt10.calibration["ended_with_none"]
    assert all(len(p) == len(spec.INPUT_NAMES) for p in trt10.calibration["pointers"])
    assert {"INT8", "FP16"} <= set(arg(trt10.calls, "build_serialized_network"))
    calibration = spec.read_sidecar(out)["tensorrt"]["calibration"]
    onnx_sha = spec.read_sidecar(exports["icf-tiny"])["onnx"]["sha256"]
    assert onnx_sha[:16] in calibration["cache"]
    assert (tmp_path / calibration["cache"].rsplit("/", 1)[-1]).read_bytes() == b"fake-calibration-table"


def test_calibration_cache_is_keyed_by_the_onnx(monkeypatch, cpu_calibration, exports, tmp_path):
    """A new ONNX built to the same plan path must calibrate afresh, not reuse the old scale table."""
    out = tmp_path / "model.plan"
    first = install_trt(monkeypatch, 10)
    build(exports["icf-tiny"], out, precision="int8", calib_data="random", calib_frames=2)
    assert not first.calibration["cache_hit"]
    second = install_trt(monkeypatch, 10)
    build(exports["icf-lite"], out, precision="int8", calib_data="random", calib_frames=2)
    assert not second.calibration["cache_hit"] and len(second.calibration["pointers"]) == 2
    third = install_trt(monkeypatch, 10)
    build(exports["icf-tiny"], out, precision="int8", calib_data="random", calib_frames=2)
    assert third.calibration["cache_hit"]  # same ONNX and data: the table is reused


def test_int8_on_trt11_quantizes_with_modelopt(monkeypatch, exports, tmp_path):
    import shutil
    import types

    trt = install_trt(monkeypatch, 11)
    seen = {}

    def quantize(onnx_path, quantize_mode="int8", calibration_data=None, calibration_method="entropy", output_path=None,
                 high_precision_dtype="fp16", **kw):
        seen.update(mode=quantize_mode, method=calibration_method, frames=calibration_data["image"].shape[0])
        shutil.copy(onnx_path, output_path)

    monkeypatch.setitem(sys.modules, "modelopt", types.ModuleType("modelopt"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx", types.ModuleType("modelopt.onnx"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", types.SimpleNamespace(quantize=quantize))
    out = build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="int8", calib_data="random", calib_frames=3)
    assert seen == {"mode": "int8", "method": "entropy", "frames": 3}
    assert "set_flag" not in names(trt.calls)
    assert "Q/DQ" in spec.read_sidecar(out)["tensorrt"]["calibration"]["method"]


# ---- loading a plan: TensorRTBackend up to its CUDA buffers ----

@pytest.fixture
def plan(trt10, exports, tmp_path):
    return build(exports["icf-tiny"], tmp_path / "tiny.plan", precision="fp16")


def test_no_execution_context_is_a_clear_error(trt10, plan):
    from engine.trt_backend import TensorRTBackend

    trt10.knobs.context_none = True
    with pytest.raises(RuntimeError, match="execution context"):
        TensorRTBackend(plan)


def test_engine_missing_a_tensor_is_an_artifact_error(trt10, plan):
    from engine.trt_backend import TensorRTBackend

    trt10.knobs.engine_drops = {"segment_valid"}
    with pytest.raises(spec.ArtifactError, match="segment_valid"):
        TensorRTBackend(plan)


def test_refused_tensor_address_is_an_error(trt10, plan, monkeypatch):
    import torch

    from engine.trt_backend import TensorRTBackend

    monkeypatch.setattr(TensorRTBackend, "_allocate", staticmethod(lambda shape, dtype: torch.empty(shape, dtype=dtype)))
    trt10.knobs.set_address_ok = False
    with pytest.raises(RuntimeError, match="refused the device address"):
        TensorRTBackend(plan)
    assert ("set_tensor_address", "image") in trt10.calls


# ---- runtime.load(auto): a plan that builds but fails to load falls back, with the reason ----

def test_auto_falls_back_when_the_engine_fails_to_load(trt10, tiny_copy, monkeypatch):
    from engine import runtime

    doc = spec.read_sidecar(tiny_copy)
    doc.pop("checkpoint", None)  # no weights for torch: the fallback is ONNX Runtime (runs here, on the CPU)
    spec.write_sidecar(tiny_copy, doc)
    monkeypatch.setattr(runtime, "cuda_available", lambda: (True, GPU["gpu_name"]))
    trt10.knobs.context_none = True  # builds fine, fails when opened (as out-of-memory would)
    with pytest.raises(RuntimeError, match="execution context"):
        runtime.load(tiny_copy, "tensorrt")  # asked for explicitly: no silent fallback
    b = runtime.load(tiny_copy)
    info = b.info()
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu"
    assert "failed to load" in info["reason"] and "execution context" in info["reason"]
    assert b.infer(b.blank_inputs())["mask_logits"].shape == (1, 1, 224, 224)
    b.close()
