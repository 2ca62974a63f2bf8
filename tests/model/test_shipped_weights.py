"""The shipped weights load and give the outputs they gave before legacy MIT was removed; a
checkpoint of the retired legacy network is refused with one line naming it and the fix.

tests/model/data/shipped_outputs.npz was written by this file's ``__main__`` at commit af48884
(the last commit that still ran legacy MIT), so these tests hold the paper-MIT path unchanged
across the removal: ``PYTHONPATH=. python tests/model/test_shipped_weights.py`` rewrites it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import model
from model import AUDIO_SAMPLES
from model.weights import CONFIG_KEY

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("icf-lite-stamps", "icf-lite-synthavs")
REFERENCE = Path(__file__).resolve().parent / "data" / "shipped_outputs.npz"
FRAMES = 3  # the rings fill over these, so the segment and video levels take part
MASK_STRIDE = 8  # mask logits are kept every 8th pixel (keeps the reference file small)


def _inputs(net: model.ICFNet, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame t's image [1, 3, H, W] and audio [1, S] from closed forms (no RNG: the same on every machine)."""
    h, w = net.config.image_size
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    image = torch.stack([0.5 + 0.4 * torch.sin(6 * x + 4 * y * (c + 1) + t) for c in range(3)])[None]
    n = torch.arange(AUDIO_SAMPLES, dtype=torch.float32) / 16_000
    audio = 0.3 * torch.sin(2 * math.pi * (220 * (t + 1)) * n) * torch.sin(2 * math.pi * 3 * n)
    return image, audio[None]


def shipped_outputs(name: str) -> dict[str, np.ndarray]:
    """FRAMES steps of the shipped weights, the rings advanced as the stream does (one segment per 2 frames)."""
    net = model.load_checkpoint(ROOT / "weights" / f"{name}.safetensors")
    state = net.initial_state(1)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for t in range(FRAMES):
            mask, frame_text, segment_text, concepts = net.step(*_inputs(net, t), *state.as_inputs())
            state = model.advance(state, frame_text, segment_text, close_segment=t % 2 == 1)
            out[f"{name}/{t}/mask"] = mask[..., ::MASK_STRIDE, ::MASK_STRIDE].numpy()
            out[f"{name}/{t}/frame_text"] = frame_text.numpy()
            out[f"{name}/{t}/segment_text"] = segment_text.numpy()
            out[f"{name}/{t}/concepts"] = concepts.numpy()
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_give_their_recorded_outputs(name):
    reference = np.load(REFERENCE)
    got = shipped_outputs(name)
    assert sorted(got) == sorted(k for k in reference.files if k.startswith(f"{name}/"))
    for key, value in got.items():
        want = reference[key]
        scale = max(1.0, float(np.abs(want).max()))  # logits reach ~10: compare relative to their range
        assert np.abs(value - want).max() <= 1e-4 * scale, (key, float(np.abs(value - want).max()))


def _old_style_checkpoint(tmp_path: Path, **stored_fields) -> Path:
    """A small checkpoint whose stored config is written the way the legacy network's was."""
    net = model.build_model("icf-tiny", image_size=(64, 64), frame_ring=4)
    path = model.save_checkpoint(net, tmp_path / "old.safetensors")
    from safetensors.torch import load_file, save_file

    stored = {k: v for k, v in net.config.to_dict().items() if k != "mit_mode"}
    stored.update(stored_fields)
    save_file(load_file(str(path)), str(path), metadata={CONFIG_KEY: json.dumps(stored)})
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["config"] = stored
    path.with_suffix(".json").write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "stored_fields",
    [{}, {"mit_mode": "legacy", "learned_prompts": 4}, {"learned_prompts": 4}],
    ids=["no-mit_mode", "mit_mode-legacy", "prompts-only"],
)
def test_legacy_mit_checkpoint_is_refused_with_the_fix(tmp_path, stored_fields):
    path = _old_style_checkpoint(tmp_path, **stored_fields)
    for load in (model.load_checkpoint, model.read_checkpoint_config):
        with pytest.raises(ValueError) as caught:
            load(path)
        message = str(caught.value)
        assert "\n" not in message and "legacy MIT" in message
        assert "retrain" in message and "af48884" in message


def test_paper_configs_with_the_retired_prompt_count_still_read():
    """The shipped weights' stored configs carry learned_prompts = 0 (the field is gone): that still reads."""
    stored = model.ICFConfig().to_dict()
    assert "learned_prompts" not in stored and stored["mit_mode"] == "paper"
    assert model.ICFConfig.from_dict({**stored, "learned_prompts": 0}) == model.ICFConfig()
    with pytest.raises(ValueError, match="mit_mode"):
        model.ICFConfig(mit_mode="clip")


if __name__ == "__main__":
    arrays: dict[str, np.ndarray] = {}
    for shipped in SHIPPED:
        arrays.update(shipped_outputs(shipped))
    np.savez_compressed(REFERENCE, **arrays)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes, {len(arrays)} arrays)")
