"""SynthAVS v2: class priors, companions, the bias knob in multi mode, no-off-screen streams,
the prior-conflict split, and the two stressors (SNR sweep, frame mixing)."""

from __future__ import annotations

import numpy as np
import pytest

from synthavs import SAMPLE_RATE, SceneConfig, SceneGenerator
from synthavs.priors import COMPANION, LOUD, QUIET

SMALL = dict(width=64, height=64, fps=2)


def _segments(gen: SceneGenerator, clips: int):
    for i in range(clips):
        plan = gen.plan(i, 5)
        for s in range(5):
            yield plan, plan.active[:, s]


@pytest.mark.parametrize("mode", ["biased", "prior-conflict", "multi"])
def test_v2_clips_are_deterministic(mode):
    cfg = SceneConfig(mode=mode, seed=3, mix=0.4, snr_db=(20.0, 20.0), **SMALL)
    a, b = SceneGenerator(cfg).clip(2, seconds=5), SceneGenerator(cfg).clip(2, seconds=5)
    for key in ("frames", "audio", "masks", "semantic", "objects", "spliced", "active"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert a.prior == b.prior
    other = SceneGenerator(cfg.replace(seed=4)).clip(2, seconds=5)
    assert not np.array_equal(a.audio, other.audio)


def test_biased_stream_has_a_class_prior_and_no_offscreen_sound():
    gen = SceneGenerator(SceneConfig(mode="biased", bias=0.9, seed=0, **SMALL))
    prior_sounds = prior_heard = companion_sounds = companions = 0
    for plan, seg in _segments(gen, 200):
        assert all(inst.visible for inst in plan.instances)  # no off-screen source at all
        if plan.prior < 0:
            assert not any(inst.cls in LOUD for inst in plan.instances)
            continue
        assert sum(inst.cls in LOUD for inst in plan.instances) == 1  # exactly one LOUD class, the prior
        assert plan.instances[plan.prior].cls in LOUD
        if seg.any():
            prior_heard += 1
            prior_sounds += seg[plan.prior]
        comp = [i for i, inst in enumerate(plan.instances) if inst.cls == COMPANION[plan.instances[plan.prior].cls]]
        if comp:
            companions += 1
            companion_sounds += seg[comp[0]]
    assert prior_sounds / prior_heard > 0.85  # the prior object is what sounds when something does
    assert companions > 100 and companion_sounds / companions < 0.1  # the companion is there and silent
    salient_prior = np.mean(
        [gen.plan(i, 5).prior == 0 for i in range(200) if gen.plan(i, 5).prior >= 0 and len(gen.plan(i, 5).instances) > 1]
    )
    assert 0.2 < salient_prior < 0.8  # salience is class-blind: the shortcut is the class, not the size


def test_offscreen_option_removes_offscreen_sources_from_mixed():
    on = SceneGenerator(SceneConfig(mode="mixed", seed=1, **SMALL))
    off = SceneGenerator(SceneConfig(mode="mixed", offscreen=False, seed=1, **SMALL))
    assert any(not inst.visible for i in range(100) for inst in on.plan(i, 5).instances)
    assert all(inst.visible for i in range(100) for inst in off.plan(i, 5).instances)


def test_bias_knob_holds_in_multi_mode():
    def others_sound(bias):
        gen = SceneGenerator(SceneConfig(mode="multi", bias=bias, min_objects=3, seed=5, **SMALL))
        return np.mean([seg[1:].any() for _, seg in _segments(gen, 60)])

    assert others_sound(1.0) == 0.0  # v1 let every other object sound with p = 0.5 whatever the knob said
    assert others_sound(0.5) > 0.5
    gen = SceneGenerator(SceneConfig(mode="multi", bias=1.0, priors=True, seed=5, **SMALL))
    for plan, seg in _segments(gen, 60):
        if plan.prior >= 0:
            assert seg[plan.prior] and seg.sum() == 1  # priors at bias 1: LOUD always, QUIET never


def test_prior_conflict_split_silences_the_prior_object():
    gen = SceneGenerator(SceneConfig(mode="prior-conflict", seed=2, **SMALL))
    salient = 0
    for i in range(30):
        clip = gen.clip(i, seconds=5)
        p = clip.prior
        assert p >= 0 and clip.object_classes[p] in LOUD and not clip.active[p].any()
        assert COMPANION[clip.object_classes[p]] in clip.object_classes and len(clip.classes_in_view) >= 3
        assert clip.active.any(axis=0).all()  # another object sounds in every segment
        assert all(c in QUIET for j, c in enumerate(clip.object_classes) if clip.active[j].any())
        salient += p == 0
    assert 0 < salient < 30


@pytest.mark.parametrize("snr", [10.0, 20.0, 40.0])
def test_snr_is_measured_on_the_generated_audio(snr):
    gen = SceneGenerator(SceneConfig(mode="multi", snr_db=(snr, snr), seed=7, **SMALL))
    for i in range(3):
        clip = gen.clip(i, seconds=5)
        clean = gen.plan_audio(gen.plan(i, 5), 0, 5 * SAMPLE_RATE, noise=False).astype(np.float64)
        noise = clip.audio.astype(np.float64) - clean
        on = np.repeat(clip.active.any(axis=0), SAMPLE_RATE)
        measured = 10 * np.log10(np.mean(clean[on] ** 2) / np.mean(noise[on] ** 2))
        assert abs(measured - snr) < 0.5, (i, measured)


def test_clean_spec_has_no_noise_and_snr_spec_reaches_the_generator():
    from training.data import build_dataset

    clean = build_dataset("synthavs:multi,snr=clean", split="test", size=(64, 64), length=2)
    assert clean.scene.snr_db == (float("inf"), float("inf"))
    gen = SceneGenerator(clean.scene)
    clip = gen.clip(0, seconds=5, frame_indices=[9])
    assert np.array_equal(clip.audio, gen.plan_audio(gen.plan(0, 5), 0, 5 * SAMPLE_RATE, noise=False))
    assert build_dataset("synthavs:multi,snr=20", split="test", size=(64, 64), length=2).scene.snr_db == (20.0, 20.0)
    with pytest.raises(ValueError, match="snr"):
        build_dataset("synthavs:multi,snr=loud", split="test", size=(64, 64), length=2)


@pytest.mark.parametrize(("mix", "frames", "clips", "want"), [(0.25, 5, 4, 5), (0.3, 10, 10, 30), (0.5, 5, 2, 5)])
def test_frame_mixing_ratio_is_exact(mix, frames, clips, want):
    gen = SceneGenerator(SceneConfig(mode="multi", mix=mix, seed=1, width=64, height=64, fps=1))
    total = sum(int(gen.spliced_frames(i, frames).sum()) for i in range(clips))
    assert total == want
    clip = gen.clip(0, seconds=frames)
    assert clip.spliced.sum() == gen.spliced_frames(0, frames).sum()


def test_spliced_frames_come_from_another_clip_with_consistent_masks():
    cfg = SceneConfig(mode="multi", seed=1, width=64, height=64, fps=1)
    host = SceneGenerator(cfg).clip(0, seconds=4)
    mixed = SceneGenerator(cfg.replace(mix=0.5)).clip(0, seconds=4)
    assert mixed.spliced.sum() == 2
    np.testing.assert_array_equal(mixed.audio, host.audio)  # the soundtrack stays the host's
    for t in range(4):
        if mixed.spliced[t]:
            assert not np.array_equal(mixed.frames[t], host.frames[t]) and not mixed.objects[t].any()
            heard = np.flatnonzero(host.sounding[t]) + 1
            assert set(np.unique(mixed.semantic[t])) <= {0, *heard.tolist()}  # only classes the audio plays
        else:
            np.testing.assert_array_equal(mixed.frames[t], host.frames[t])
            np.testing.assert_array_equal(mixed.masks[t], host.masks[t])


def test_v2_spec_options_and_errors():
    from training.data import build_dataset

    ds = build_dataset("synthavs:biased,mix=0.25,companion=0.5", split="train", size=(64, 64), length=2)
    assert ds.scene.priors_on and not ds.scene.offscreen_on and ds.scene.mix == 0.25 and ds.scene.companion_prob == 0.5
    sample = ds[0]
    assert sample["images"].shape == (5, 64, 64, 3)
    with pytest.raises(ValueError, match="mix"):
        SceneConfig(mix=1.0)
    with pytest.raises(ValueError, match="priors"):
        SceneConfig(priors=True, num_classes=4, max_objects=3)
