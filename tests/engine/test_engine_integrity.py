"""Tampered or mismatched artifacts are refused with a message that names the problem and the fix."""

from __future__ import annotations

import json

import pytest

from engine import runtime, spec
from engine.spec import ArtifactError
from engine.trt_common import check_engine_compatible


def _edit_sidecar(onnx_path, fn):
    """An edited sidecar, re-signed (its content digest recomputed), so the checks behind the
    digest are what is tested; an unsigned edit is refused first (test_engine_faults.py)."""
    side = spec.sidecar_path(onnx_path)
    doc = json.loads(side.read_text())
    fn(doc)
    spec.write_sidecar(onnx_path, doc)


def test_tampered_onnx_refused(tiny_copy):
    data = bytearray(tiny_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside the weights
    tiny_copy.write_bytes(bytes(data))
    for backend in ("onnxruntime", "auto", "torch"):
        with pytest.raises(ArtifactError, match=r"does not match its sidecar: sha256 .*Re-export"):
            runtime.load(tiny_copy, backend)


def test_missing_sidecar_refused(tiny_copy):
    spec.sidecar_path(tiny_copy).unlink()
    with pytest.raises(ArtifactError, match=r"has no sidecar icf-tiny\.json.*icf-engine export"):
        runtime.load(tiny_copy, "onnxruntime")


@pytest.mark.parametrize("key", ["inputs", "pixel_normalisation", "onnx", "concepts"])
def test_sidecar_missing_key_refused(tiny_copy, key):
    _edit_sidecar(tiny_copy, lambda d: d.pop(key))
    with pytest.raises(ArtifactError, match=rf"missing required key\(s\) \['{key}'\]"):
        runtime.load(tiny_copy, "onnxruntime")


def test_sidecar_shape_disagreeing_with_graph_refused(tiny_copy):
    def widen(doc):
        doc["inputs"][2]["shape"] = [1, 31, 32]  # frame_ring: the graph says Nf = 30

    _edit_sidecar(tiny_copy, widen)
    with pytest.raises(ArtifactError, match=r"input 'frame_ring' is \[1, 30, 32\].*in the graph but \[1, 31, 32\].*in the sidecar"):
        runtime.load(tiny_copy, "onnxruntime")


def test_sidecar_of_another_export_refused(exports, tiny_copy):
    lite_side = spec.sidecar_path(exports["icf-lite"]).read_text()
    spec.sidecar_path(tiny_copy).write_text(lite_side)
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        runtime.load(tiny_copy, "onnxruntime")


def test_wrong_tensor_names_refused(tiny_copy):
    _edit_sidecar(tiny_copy, lambda d: d["inputs"][0].update(name="pixels"))
    with pytest.raises(ArtifactError, match="the step contract is"):
        runtime.load(tiny_copy, "onnxruntime")


def test_torch_backend_refuses_onnx_without_checkpoint(tiny_copy):
    _edit_sidecar(tiny_copy, lambda d: d.update(checkpoint=None))
    with pytest.raises(ArtifactError, match=r"records no checkpoint.*--weights CKPT.*onnxruntime"):
        runtime.load(tiny_copy, "torch")


def test_torch_backend_refuses_other_weights(exports, tiny_copy):
    other = exports["icf-lite"].parent / "icf-lite-weights.safetensors"
    with pytest.raises(ArtifactError, match="is not the checkpoint icf-tiny.onnx was exported from"):
        runtime.load(tiny_copy, "torch", weights=other)


def test_moved_export_folder_still_finds_its_checkpoint(tiny_copy, tmp_path):
    moved = tmp_path / "moved"
    tiny_copy.parent.rename(moved)
    backend = runtime.load(moved / "icf-tiny.onnx", "torch")
    assert backend.info()["checkpoint"] == str(moved / "icf-tiny-weights.safetensors")


def test_engine_for_other_gpu_or_tensorrt_says_rebuild():
    doc = {"tensorrt": {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA A100", "compute_capability": "8.0",
                        "precision": "fp16", "onnx_file": "m.onnx"}}
    here = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    with pytest.raises(ArtifactError, match=r"built for TensorRT 10\.3\.0 .* and GPU NVIDIA A100 "
                                            r".*rebuild it here with `icf-engine build --onnx m\.onnx --precision fp16"):
        check_engine_compatible(doc, "tensorrt", "m.plan", "10.8.0", here)
    check_engine_compatible(doc, "tensorrt", "m.plan", "10.3.0", {"gpu_name": "NVIDIA A100", "compute_capability": "8.0"})
