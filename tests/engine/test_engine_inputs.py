"""Inputs: the NumPy ring keeper equals model.context, calibration sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import spec
from engine.inputs import calibration_inputs, random_inputs, synthetic_sequence
from engine.state import advance

SPECS = spec.specs_from(spec.io_from_config({"name": "x", "image_size": [32, 48], "width": 8, "frame_ring": 4,
                                              "segment_ring": 3, "concepts": ["a", "b"], "semantic": False})[0])


@pytest.mark.parametrize("rate", [None, 1, 2])
def test_advance_matches_model_context(rate):
    """Both copies of the ring rule, with the frame ring's push flag (None: the default, every frame
    pushes; else pushes of a 6 fps clip sampled at ``rate`` entries per second)."""
    import model
    from model.context import ContextState

    cfg = model.get_config("icf-tiny", width=8, frame_ring=4, segment_ring=3)
    state_t = model.initial_state(1, cfg)
    state_n = {k: v.numpy() for k, v in zip(("frame_ring", "frame_valid", "segment_ring", "segment_valid"), state_t.as_inputs())}
    rng = np.random.default_rng(0)
    pushes = [True] * 13 if rate is None else model.clip_pushes(13, 6, rate)
    assert sum(pushes) == (13 if rate is None else 2 * rate)  # slot ends of 13 frames at 6 fps
    for t in range(13):
        ft, st = rng.standard_normal((1, 8)).astype(np.float32), rng.standard_normal((1, 8)).astype(np.float32)
        close = (t + 1) % 6 == 0
        kw = {} if rate is None else {"push_frame": pushes[t]}
        state_t = model.advance(state_t, torch.from_numpy(ft), torch.from_numpy(st), close_segment=close, **kw)
        state_n = advance(state_n, ft, st, close_segment=close, **kw)
        assert isinstance(state_t, ContextState)
        for k, v in zip(("frame_ring", "frame_valid", "segment_ring", "segment_valid"), state_t.as_inputs()):
            np.testing.assert_array_equal(state_n[k], v.numpy())


def test_synthetic_sequence_shapes_and_rings():
    calls = []

    def step(x):
        calls.append(x)
        return {"frame_text": np.full((1, 8), len(calls), np.float32), "segment_text": np.full((1, 8), -len(calls), np.float32)}

    seq = list(synthetic_sequence(SPECS, 4, np.random.default_rng(0), step=step, frames_per_segment=2))
    assert len(seq) == 4 and len(calls) == 4
    for x in seq:
        assert {k: (v.shape, v.dtype) for k, v in x.items()} == SPECS
        assert 0.0 <= x["image"].min() and x["image"].max() <= 1.0 and np.abs(x["audio"]).max() <= 1.0
    assert seq[0]["frame_valid"].sum() == 0  # stream start: empty rings
    assert seq[1]["frame_valid"].tolist() == [[0, 0, 0, 1]] and seq[1]["frame_ring"][0, -1, 0] == 1
    assert seq[2]["frame_valid"].sum() == 0 and seq[2]["segment_valid"].tolist() == [[0, 0, 1]]  # segment closed after 2
    assert seq[2]["segment_ring"][0, -1, 0] == -2


def test_sidecar_carries_the_frame_ring_rate():
    config = {"name": "x", "image_size": [32, 48], "width": 8, "frame_ring": 4, "segment_ring": 3, "concepts": ["a"]}
    doc = spec.base_sidecar("onnx", {**config, "frame_ring_rate": 2}, [0.5] * 3, [0.25] * 3)
    assert doc["state"]["frame_ring_rate"] == 2 and spec.frame_ring_rate(doc) == 2
    assert spec.frame_ring_rate(spec.base_sidecar("onnx", config, [0.5] * 3, [0.25] * 3)) == 1  # configs before the field
    assert spec.input_specs({**config, "frame_ring_rate": 2}) == spec.input_specs(config)  # the step I/O does not change


def test_calibration_sources(tmp_path):
    for name in ("random", "synthetic", "auto"):
        frames = list(calibration_inputs(name, SPECS, 3))
        assert len(frames) == 3 and all(set(f) == set(SPECS) for f in frames)
    stacked = {k: np.stack([v] * 2)[:, 0] for k, v in random_inputs(SPECS, np.random.default_rng(0)).items()}
    np.savez(tmp_path / "rec.npz", **stacked)
    frames = list(calibration_inputs(str(tmp_path / "rec.npz"), SPECS, 5))  # cycles 2 recorded frames
    assert len(frames) == 5 and frames[0]["image"].shape == SPECS["image"][0]
    with pytest.raises(ValueError, match="unknown calibration data"):
        calibration_inputs("nonsense", SPECS, 1)
