"""CUDA-graph torch backend on a GPU: `pytest -m gpu` (skipped without CUDA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return torch


def test_cudagraph_matches_eager(cuda, exports):
    from engine import runtime, spec
    from engine.inputs import synthetic_sequence

    eager = runtime.load(exports["icf-tiny"], "torch", mode="eager", device="cuda")
    graph = runtime.load(exports["icf-tiny"], "torch", mode="cudagraph", device="cuda")
    for x in synthetic_sequence(eager.input_specs, 4, np.random.default_rng(0), step=eager.infer):
        a, b = eager.infer(x), graph.infer(x)
        assert max(float(np.max(np.abs(a[n] - b[n]))) for n in spec.OUTPUT_NAMES) <= 1e-4
    dev = {n: cuda.from_numpy(v).cuda() for n, v in x.items()}
    out = graph.infer_device(dev)
    assert out["mask_logits"].is_cuda


def test_auto_on_gpu_without_tensorrt_uses_cudagraph(cuda, exports):
    from engine import runtime
    from engine.trt_common import tensorrt_installed

    if tensorrt_installed():
        pytest.skip("TensorRT installed: auto picks tensorrt (tested in the trt tests)")
    b = runtime.load(exports["icf-tiny"])
    assert b.info()["backend"] == "torch" and b.info()["mode"] == "cudagraph" and "TensorRT is not installed" in b.info()["reason"]


def test_gpu_check_script(cuda, tmp_path):
    from bench.gpu_check import main

    rc = main(["--out", str(tmp_path / "g.json"), "--models", "icf-tiny", "--iters", "20", "--warmup", "5"])
    doc = json.loads((tmp_path / "g.json").read_text())
    assert len(doc["rows"]) == 6 and rc in (0, 1)
    assert {r["mode"] for r in doc["rows"]} == {"eager", "cudagraph", "cudagraph+channels_last"}
    assert all(r["passed"] for r in doc["rows"] if r["precision"] == "fp32")


@pytest.mark.parametrize("mode", ["eager", "cudagraph"])
def test_cuda_fp32_matches_cpu_reference(cuda, exports, mode):
    """fp32 on CUDA is IEEE fp32 (TF32 off), so the 1e-4 rule holds against the CPU reference."""
    from engine.check import check

    report = check(exports["icf-lite"], "torch", mode=mode, device="cuda", precision="fp32", random_frames=1, synthetic_frames=3)
    assert report["passed"], report
