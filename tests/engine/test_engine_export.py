"""Export: one static ONNX file per model, ONNX Runtime == torch, sidecar round trip."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from engine import spec
from engine.inputs import random_inputs, synthetic_sequence


def _torch_outputs(net, inputs):
    import torch

    with torch.inference_mode():
        outs = net(*(torch.from_numpy(inputs[n]) for n in spec.INPUT_NAMES))
    return {n: o.numpy() for n, o in zip(spec.OUTPUT_NAMES, outs)}


@pytest.mark.parametrize("name", ["icf-tiny", "icf-lite"])
def test_onnxruntime_matches_torch(exports, name):
    import onnxruntime as ort

    import model

    path = exports[name]
    doc = spec.read_sidecar(path)
    net = model.load_checkpoint(spec.resolve_checkpoint(doc, path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(spec.INPUT_NAMES)
    assert [o.name for o in sess.get_outputs()] == list(spec.OUTPUT_NAMES)
    specs = spec.specs_from(doc["inputs"])
    rng = np.random.default_rng(123)  # not the seed export used: fresh inputs
    step = lambda x: dict(zip(spec.OUTPUT_NAMES, sess.run(None, x)))  # noqa: E731
    cases = [random_inputs(specs, rng)] + list(synthetic_sequence(specs, 3, rng, step=step, frames_per_segment=1))
    for inputs in cases:
        ref, got = _torch_outputs(net, inputs), step(inputs)
        for n in spec.OUTPUT_NAMES:
            assert got[n].shape == ref[n].shape
            assert np.max(np.abs(got[n] - ref[n])) <= 1e-4, n
    # the export verified itself and says so
    assert doc["parity"]["max_abs_logit_diff"] <= 1e-4


@pytest.mark.parametrize("name", ["icf-tiny", "icf-lite"])
def test_single_static_file(exports, name):
    path = exports[name]
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    for v in list(proto.graph.input) + list(proto.graph.output):
        assert all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim), f"{v.name} has a dynamic dim"
    assert sorted(p.suffix for p in path.parent.iterdir()) == [".json", ".json", ".onnx", ".safetensors"]


def test_sidecar_round_trip(exports):
    import model

    path = exports["icf-lite"]
    doc = spec.read_sidecar(path)
    assert json.loads(spec.sidecar_path(path).read_text()) == doc
    cfg = model.ICFConfig.from_dict(doc["model"]["config"])
    net = model.load_checkpoint(spec.resolve_checkpoint(doc, path))
    assert cfg == net.config.replace(pretrained=cfg.pretrained)  # load_checkpoint clears 'pretrained' (weights come from the file)
    assert doc["model"]["name"] == "icf-lite"
    assert doc["concepts"] == list(net.config.concepts)
    pn = doc["pixel_normalisation"]
    assert pn["description"] == "RGB float32 in [0,1], NCHW, mean/std applied inside the graph"
    assert np.allclose(pn["mean"], net.pixel_mean.flatten().numpy()) and np.allclose(pn["std"], net.pixel_std.flatten().numpy())
    assert doc["onnx"]["sha256"] == spec.file_sha256(path)
    assert doc["checkpoint"]["sha256"] == spec.file_sha256(path.parent / doc["checkpoint"]["relative_path"])
    assert {"torch", "onnx", "onnxruntime", "numpy", "python"} <= set(doc["tools"])
    ins, outs = spec.onnx_graph_io(path)
    assert ins == spec.specs_from(doc["inputs"]) and outs == spec.specs_from(doc["outputs"])
    assert spec.specs_from(doc["inputs"])["frame_ring"][0] == (1, cfg.frame_ring, cfg.width)
    assert spec.specs_from(doc["outputs"])["concept_logits"][0] == (1, cfg.num_concepts)


def test_audio_constant_matches_model():
    import model

    assert spec.AUDIO_SAMPLES == model.AUDIO_SAMPLES and spec.SAMPLE_RATE == model.SAMPLE_RATE


def test_semantic_head_io():
    """The contract's channel count follows the config (K + 1 for a semantic head)."""
    import model

    cfg = model.get_config("icf-tiny", semantic=True).to_dict()
    _, outs = spec.io_from_config(cfg)
    assert outs[0]["shape"] == [1, len(cfg["concepts"]) + 1, 224, 224]


def test_opset_below_17_refused(tmp_path):
    import model
    from engine.export import export_onnx

    with pytest.raises(ValueError, match="opset >= 17"):
        export_onnx(model.build_model("icf-tiny"), tmp_path, opset=16)


@pytest.mark.slow
def test_dynamo_exporter(tmp_path):
    """The fallback exporter (torch.onnx.export(dynamo=True)) also yields a verified single file (~10 s)."""
    from engine.export import export_model

    path = export_model("icf-tiny", tmp_path, exporter="dynamo")
    doc = spec.read_sidecar(path)
    assert doc["onnx"]["exporter"] == "dynamo" and doc["onnx"]["opset"] >= 18
    assert doc["parity"]["max_abs_logit_diff"] <= 1e-4
