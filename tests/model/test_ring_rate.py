"""The frame ring sampled in time (ICFConfig.frame_ring_rate): which frames push, clip == steps
with those pushes, a clip at the ring rate unchanged bit for bit, and old checkpoints mean 1."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import model
from model import AUDIO_SAMPLES, ICFConfig, clip_pushes, ring_pushes, segment_closes


def tiny(**overrides) -> model.ICFNet:
    torch.manual_seed(0)
    return model.build_model("icf-tiny", image_size=(64, 64), frame_ring=4, **overrides).eval()


def clip_inputs(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, 64, 64, generator=g), 0.3 * torch.randn(b, t, AUDIO_SAMPLES, generator=g)


def test_ring_pushes_follow_the_slot_clock():
    two_fps = [0.4, 0.9, 1.4, 1.9]
    assert ring_pushes(two_fps, 2) == [True] * 4  # a clip at the ring rate pushes every frame
    assert ring_pushes(two_fps, 1) == segment_closes(two_fps) == [False, True, False, True]
    thirty = [i / 30 for i in range(60)]
    assert [i for i, p in enumerate(ring_pushes(thirty, 2)) if p] == [14, 29, 44, 59]  # last frame of each half second
    assert [i for i, p in enumerate(ring_pushes(thirty, 1)) if p] == [29, 59]
    assert ring_pushes([0, 1, 2], 1) == [True] * 3 and ring_pushes([], 3) == []
    # a segment close is always a push, whatever the rate
    for rate in (1, 2, 3, 5):
        assert all(p for p, c in zip(ring_pushes(thirty, rate), segment_closes(thirty)) if c)
    assert clip_pushes(6, 2, 2) == [True] * 6 and clip_pushes(6, 2, 1) == [False, True] * 3
    assert clip_pushes(6, 6, 2) == ring_pushes([i / 6 for i in range(6)], 2) == [False, False, True, False, False, True]
    with pytest.raises(ValueError, match="frame ring rate"):
        ring_pushes(two_fps, 0)


def test_clip_with_pushes_equals_t_steps_with_the_same_flags():
    """A 6 fps clip at ring rate 2: frames 2 and 5 push (slot ends), 5 closes; clip == 6 steps."""
    net = tiny(frame_ring_rate=2)
    images, audio = clip_inputs(2, 6)
    times = [(i + 1) / 6 - 1e-3 for i in range(6)]
    closes, pushes = segment_closes(times), ring_pushes(times, 2)
    assert pushes == [False, False, True, False, False, True] and closes == [False] * 5 + [True]
    with torch.no_grad():
        clip = net.clip(images, audio, closes=closes, pushes=pushes)
        every = net.clip(images, audio, closes=closes)
        state = net.initial_state(2)
        for t in range(6):
            mask, tau_f, tau_s, concepts = net.step(images[:, t], audio[:, t], *state.as_inputs())
            assert (mask - clip.mask_logits[:, t]).abs().max() <= 1e-5
            assert (tau_s - clip.segment_text.view(2, 6, -1)[:, t]).abs().max() <= 1e-5
            state = model.advance(state, tau_f, tau_s, close_segment=closes[t], push_frame=pushes[t])
    # sampling changes what frame 1 sees (frame 0 did not push), so the flags are not ignored
    seg, seg_every = clip.segment_text.view(2, 6, -1), every.segment_text.view(2, 6, -1)
    assert (seg[:, 0] - seg_every[:, 0]).abs().max() == 0 and (seg[:, 1] - seg_every[:, 1]).abs().max() > 1e-4


def test_a_clip_at_the_ring_rate_is_unchanged_bit_for_bit():
    """Training at k fps records frame_ring_rate = k: its pushes are all True, the old rule."""
    net = tiny(frame_ring_rate=2)
    images, audio = clip_inputs(1, 4, seed=1)
    times = [0.4, 0.9, 1.4, 1.9]
    with torch.no_grad():
        a = net.clip(images, audio, closes=segment_closes(times), pushes=ring_pushes(times, net.config.frame_ring_rate))
        b = net.clip(images, audio, closes=segment_closes(times))
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.segment_text, b.segment_text)


def test_old_checkpoints_mean_rate_one(tmp_path):
    stored = ICFConfig().to_dict()
    del stored["frame_ring_rate"]
    assert ICFConfig.from_dict(stored).frame_ring_rate == 1
    net = tiny(frame_ring_rate=3)
    again = model.read_checkpoint_config(model.save_checkpoint(net, tmp_path / "r3.safetensors"))
    assert again.frame_ring_rate == 3  # the field travels in the checkpoint
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="frame_ring_rate"):
            ICFConfig(frame_ring_rate=bad)


def test_checkpoints_saved_before_the_field_take_their_training_data_rate(tmp_path):
    """A checkpoint trained on 2 fps clips (segment_frames=2, every frame pushed) before the field
    existed reads as rate 2 from its training config; one trained on plain specs as 1."""
    net = tiny()
    for data, rate in (("synthavs:biased,segment_frames=2", 2), ("synthavs:mixed", 1), ("avsbench-s4:/data", 1)):
        path = model.save_checkpoint(net, tmp_path / f"{rate}.safetensors", extra={"train_config": {"train_data": data}})
        stored = net.config.to_dict()
        del stored["frame_ring_rate"]
        save_file(load_file(str(path)), str(path), metadata={"icf_config": json.dumps(stored)})  # as an old save wrote it
        assert model.read_checkpoint_config(path).frame_ring_rate == rate, data
        assert model.load_checkpoint(path).config.frame_ring_rate == rate
