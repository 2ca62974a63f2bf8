"""A model with the aisfx audio arm (model/audio_pretrained.py) exports to one static ONNX file whose
ONNX Runtime outputs equal torch's: its 16 kHz log-mel front end stays inside the graph, the step contract
(15,600 samples per frame) is unchanged."""

from __future__ import annotations

import numpy as np
import torch

from engine import spec
from engine.inputs import random_inputs


def test_aisfx_arm_exports_with_parity(tmp_path):
    import onnxruntime as ort

    import model
    from engine.export import export_onnx

    torch.manual_seed(0)  # random init: the graph is what is tested, not the published weights
    net = model.build_model("icf-tiny", image_size=(64, 64), audio_encoder="aisfx", audio_frozen=True, audio_peak_floor=0.01)
    ckpt = model.save_checkpoint(net, tmp_path / "aisfx-weights.safetensors")
    path = export_onnx(net, tmp_path, checkpoint=ckpt, stem="icf-tiny-aisfx")
    doc = spec.read_sidecar(path)
    assert doc["parity"]["max_abs_logit_diff"] <= 1e-4
    assert doc["model"]["config"]["audio_encoder"] == "aisfx"
    specs = spec.specs_from(doc["inputs"])
    assert specs["audio"][0] == (1, model.AUDIO_SAMPLES)
    again = model.load_checkpoint(spec.resolve_checkpoint(doc, path))  # no aisfx files needed to reload
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = random_inputs(specs, np.random.default_rng(7))
    got = dict(zip(spec.OUTPUT_NAMES, sess.run(None, inputs)))
    with torch.inference_mode():
        ref = again(*(torch.from_numpy(inputs[n]) for n in spec.INPUT_NAMES))
    for name, value in zip(spec.OUTPUT_NAMES, ref):
        assert np.max(np.abs(got[name] - value.numpy())) <= 1e-4, name


def test_sidecar_written_before_the_audio_arm_fields_still_loads(tiny_copy):
    """An export cached before audio_encoder & co. existed means the vggish defaults: no 're-export' error."""
    import json

    from engine.torch_backend import load_reference_net

    side = spec.sidecar_path(tiny_copy)
    doc = json.loads(side.read_text())
    for key in ("audio_encoder", "audio_pretrained", "audio_frozen", "audio_peak_floor"):
        doc["model"]["config"].pop(key)
    doc[spec.DIGEST_KEY] = spec.sidecar_digest({k: v for k, v in doc.items() if k != spec.DIGEST_KEY})  # as export wrote it then
    side.write_text(json.dumps(doc, indent=2) + "\n")
    net, _, _ = load_reference_net(tiny_copy)
    assert net.config.audio_encoder == "vggish"
