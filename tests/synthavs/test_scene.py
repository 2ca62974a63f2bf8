"""SynthAVS generator: API, determinism, modes, bias / conflict, stream consistency, speed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from synthavs import CLASS_NAMES, SceneConfig, SceneGenerator, audio_window
from synthavs.render import render_frame


def test_class_names_match_model_vocabulary():
    from model.text_bank import SYNTHAVS_CONCEPTS

    assert CLASS_NAMES == list(SYNTHAVS_CONCEPTS)


def test_import_does_not_pull_torch():
    code = "import sys, synthavs, synthavs.writers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clip_shapes_and_types():
    cfg = SceneConfig(width=96, height=64, fps=10, mode="multi", seed=3)
    clip = SceneGenerator(cfg).clip(0, seconds=3)
    assert clip.frames.shape == (30, 64, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (48_000,) and clip.audio.dtype == np.float32
    assert np.abs(clip.audio).max() <= 1.0
    assert clip.masks.shape == (30, 64, 96) and clip.masks.dtype == np.uint8
    assert set(np.unique(clip.masks)) <= {0, 1}
    assert np.array_equal(clip.masks, (clip.semantic > 0).astype(np.uint8))
    assert clip.sounding.shape == (3, 8) and clip.sounding.dtype == bool
    assert clip.fps == 10 and clip.sample_rate == 16_000


def test_deterministic_in_seed_and_index():
    a = SceneGenerator(SceneConfig(mode="mixed", seed=7)).clip(4, seconds=2)
    b = SceneGenerator(SceneConfig(mode="mixed", seed=7)).clip(4, seconds=2)
    c = SceneGenerator(SceneConfig(mode="mixed", seed=7)).clip(5, seconds=2)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


def test_frame_subset_equals_full_clip():
    gen = SceneGenerator(SceneConfig(mode="single", seed=1))
    full = gen.clip(2, seconds=2)
    part = gen.clip(2, seconds=2, frame_indices=[5, 59])
    assert np.array_equal(part.frames, full.frames[[5, 59]]) and np.array_equal(part.semantic, full.semantic[[5, 59]])
    with pytest.raises(ValueError, match="frame_indices"):
        gen.clip(2, seconds=2, frame_indices=[60])


@pytest.mark.parametrize("index", range(6))
def test_modes_follow_their_rules(index):
    def clip(mode, **kw):
        return SceneGenerator(SceneConfig(mode=mode, seed=11, fps=2, **kw)).clip(index, seconds=5)

    silent = clip("silence")
    assert silent.masks.sum() == 0 and not silent.sounding.any()
    off = clip("offscreen")
    assert off.masks.sum() == 0 and off.sounding.any(axis=1).all() and off.offscreen.all()
    assert not set(np.flatnonzero(off.sounding.any(0))) & set(off.classes_in_view)
    single = clip("single")
    assert (single.sounding.sum(axis=1) == 1).all()
    assert set(np.flatnonzero(single.sounding.any(0))) <= set(single.classes_in_view)
    multi = clip("multi")
    assert (multi.sounding.sum(axis=1) >= 1).all()
    sem = clip("semantic")
    for t in range(len(sem.frames)):  # semantic ids are sounding classes of that segment
        ids = set(np.unique(sem.semantic[t])) - {0}
        assert ids <= {k + 1 for k in np.flatnonzero(sem.sounding[int(sem.frame_times[t])])}


def test_bias_and_conflict():
    def salient_rate(**kw):
        gen = SceneGenerator(SceneConfig(mode="single", min_objects=2, seed=5, **kw))
        plans = [gen.plan(i, 5) for i in range(60)]
        return np.mean([p.active[0].mean() for p in plans])

    assert salient_rate(bias=1.0) == 1.0
    assert salient_rate(bias=0.0) == 0.0
    assert 0.6 < salient_rate(bias=0.8) < 0.95
    assert salient_rate(bias=1.0, conflict=True) == 0.0
    gen = SceneGenerator(SceneConfig(mode="conflict", bias=1.0, seed=2, fps=1))
    for i in range(10):
        clip = gen.clip(i, seconds=5)
        assert not clip.sounding[:, clip.classes_in_view[0]].any()  # the salient class stays silent
        assert len(clip.classes_in_view) >= 2


def test_salient_object_is_largest():
    gen = SceneGenerator(SceneConfig(max_objects=3, min_objects=3, seed=0))
    for i in range(10):
        sides = [inst.side for inst in gen.plan(i, 5).instances]
        assert sides[0] == max(sides)


def test_occlusion_masks_follow_the_front_object():
    bg = np.zeros((40, 40, 3), np.uint8)
    sprite = np.ones((8, 8, 4), np.float32) * 200
    sprite[..., 3] = 1.0
    image, owner = render_frame(bg, [(0, 15.0, 15.0, 16.0), (1, 25.0, 25.0, 16.0)], [sprite, sprite])
    assert owner[20, 20] == 1  # overlap belongs to the later (front) object
    assert owner[10, 10] == 0 and owner[35, 35] == -1 and owner[30, 30] == 1
    assert image[10, 10, 0] == 200


def test_stream_matches_clips_and_audio_is_continuous():
    cfg = SceneConfig(width=64, height=48, fps=4, mode="mixed", episode_seconds=2, seed=9)
    gen = SceneGenerator(cfg)
    frames = list(gen.stream(seconds=4))
    assert [f.index for f in frames] == list(range(16)) and frames[5].time_s == pytest.approx(1.25)
    ep1 = SceneGenerator(cfg).clip(1, seconds=2)
    assert np.array_equal(frames[8].image, ep1.frames[0]) and np.array_equal(frames[9].mask, ep1.masks[1])
    assert np.array_equal(frames[12].sounding, ep1.sounding[1])
    whole = gen.audio_between(0.0, 4.0)
    ep0 = SceneGenerator(cfg).clip(0, seconds=2)
    assert np.array_equal(whole[:32_000], ep0.audio) and np.array_equal(whole[32_000:], ep1.audio)
    assert np.array_equal(gen.audio_between(1.5, 2.5), whole[24_000:40_000])
    pre = gen.audio_between(-0.5, 0.25)
    assert pre.shape == (12_000,) and not pre[:8000].any() and np.array_equal(pre[8000:], whole[:4000])


def test_audio_window_pads_at_start():
    audio = np.arange(1, 11, dtype=np.float32)
    assert audio_window(audio, 3, 5).tolist() == [0, 0, 1, 2, 3]
    assert audio_window(audio, 10, 4).tolist() == [7, 8, 9, 10]


def test_classes_sound_different():
    """Each class has its own spectrum: the dominant frequency band differs between classes."""
    from synthavs.sounds import class_sound

    t = np.arange(16_000) / 16_000
    spectra = [np.abs(np.fft.rfft(class_sound(k, t))) for k in range(8)]
    spectra = [s / np.linalg.norm(s) for s in spectra]
    sims = np.array([[a @ b for b in spectra] for a in spectra])
    assert (sims[~np.eye(8, dtype=bool)] < 0.9).all()


def test_silent_clip_is_noise_at_the_configured_level():
    clip = SceneGenerator(SceneConfig(mode="silence", snr_db=(20, 20), fps=1)).clip(0, seconds=2)
    assert np.sqrt(np.mean(clip.audio**2)) == pytest.approx(0.01, rel=0.05)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="mode 'bogus'"):
        SceneConfig(mode="bogus")
    with pytest.raises(ValueError, match="bias"):
        SceneConfig(bias=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        SceneConfig(num_classes=9)
