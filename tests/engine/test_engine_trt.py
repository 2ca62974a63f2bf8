"""TensorRT paths: run only where tensorrt (and a CUDA GPU) are installed: `pytest -m trt`."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def trt():
    trt = pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but there is no CUDA GPU")
    return trt


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_run_plan(trt, exports, tmp_path, precision):
    from engine import runtime, spec
    from engine.check import check
    from engine.trt_build import build_engine

    plan = build_engine(exports["icf-tiny"], tmp_path / f"tiny-{precision}.plan", precision=precision, workspace_gb=1)
    doc = spec.read_sidecar(plan)
    assert doc["kind"] == "tensorrt-plan" and doc["tensorrt"]["tensorrt_version"] == trt.__version__
    assert doc["tensorrt"]["onnx_sha256"] == spec.file_sha256(exports["icf-tiny"])
    assert doc["tensorrt"]["tf32"] is (precision != "fp32")  # TF32 would break the 1e-4 fp32 rule
    b = runtime.load(plan)
    assert b.info()["backend"] == "tensorrt" and b.info()["cuda_graph"]
    out = b.infer(b.blank_inputs())
    assert out["mask_logits"].shape == (1, 1, 224, 224) and np.isfinite(out["mask_logits"]).all()
    report = check(plan, "tensorrt")
    assert report["passed"], report


def test_int8_calibration_builds(trt, exports, tmp_path):
    from engine import runtime
    from engine.trt_build import build_engine

    plan = build_engine(exports["icf-tiny"], tmp_path / "tiny-int8.plan", precision="int8", calib_data="synthetic", calib_frames=16)
    assert runtime.load(plan).info()["precision"] == "int8"


def test_cache_builds_once(trt, exports):
    from engine import cache

    first = cache.get_or_build(exports["icf-tiny"], "fp16")
    mtime = first.stat().st_mtime_ns
    assert cache.get_or_build(exports["icf-tiny"], "fp16") == first and first.stat().st_mtime_ns == mtime


def test_auto_picks_tensorrt(trt, exports):
    from engine import runtime

    b = runtime.load(exports["icf-tiny"])
    assert b.info()["backend"] == "tensorrt" and "TensorRT" in b.info()["reason"]


def test_torch_tensorrt_program(trt, exports, tmp_path):
    pytest.importorskip("torch_tensorrt")
    from engine import runtime, spec
    from engine.trt_torch import compile_torch_tensorrt

    ep = compile_torch_tensorrt(exports["icf-tiny"], tmp_path / "tiny.ep", precision="fp16")  # BuildError if it fails check's rule
    assert spec.read_sidecar(ep)["torch_tensorrt"]["parity"]["passed"]
    b = runtime.load(ep)
    assert b.info()["backend"] == "torch-tensorrt"
    assert np.isfinite(b.infer(b.blank_inputs())["mask_logits"]).all()
