"""CPU int8 (engine/quantize.py): a real ONNX Runtime static quantisation, kept only with a passed
parity record, which runtime auto then runs on the CPU; without one, auto keeps the fp32 export."""

from __future__ import annotations

import numpy as np
import pytest

from engine import cache, quantize, runtime, spec


def test_auto_keeps_fp32_without_a_passed_int8(exports):
    onnx = exports["icf-tiny"]
    assert cache.int8_for(onnx) is None
    backend = runtime.load(onnx)
    assert backend.precision == "fp32" and backend.artifact == onnx


@pytest.mark.slow
def test_int8_built_checked_and_picked_by_auto(exports):
    onnx = exports["icf-tiny"]
    scope = ("image backbone", ("/backbone/",), ())
    path, record = quantize.build_int8(onnx, cache.int8_folder(onnx), calib_frames=4, heldout_frames=4, scopes=(scope,))
    doc = spec.read_sidecar(path)
    assert doc["onnx"]["precision"] == "int8" and doc["onnx"]["sha256"] == spec.file_sha256(path)
    assert record["parity"]["passed"] and record["parity"]["pooled_mask_iou"] >= quantize.INT8_IOU_MIN
    assert record["calibration"]["frames"] == 4 and record["scope"] == "image backbone"
    assert cache.int8_for(onnx) == path
    backend = runtime.load(onnx)  # auto on the CPU: the int8 graph, and it says why
    assert backend.artifact == path and backend.precision == "int8" and "parity passed" in backend.reason
    out = backend.infer(backend.blank_inputs())
    assert np.isfinite(out["mask_logits"]).all()
    assert runtime.load(onnx, precision="fp32").artifact == onnx  # asking for fp32 still gets fp32
    with pytest.raises(ValueError, match="int8 graph for the CPU EP"):
        runtime.load(path, "onnxruntime", precision="fp32")


def test_a_failing_int8_is_not_written(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "_quantize", lambda fp32, out, calib, scope: out.write_bytes(fp32.read_bytes()))
    monkeypatch.setattr(quantize, "parity", lambda *a: {"pooled_mask_iou": 0.5, "worst_frame_iou": 0.1, "max_abs_concept_logit_diff": 1.0,
                                                        "frames": 2})
    with pytest.raises(quantize.Int8Failed, match=r"fails the parity rule .*\(image backbone: 0.5\)") as info:
        quantize.build_int8(exports["icf-tiny"], tmp_path, calib_frames=2, heldout_frames=2, scopes=(("image backbone", ("/backbone/",), ()),))
    assert info.value.attempts[0]["pooled_mask_iou"] == 0.5
    assert not list(tmp_path.glob("*.onnx"))
