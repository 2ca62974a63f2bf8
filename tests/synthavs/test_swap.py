"""Swap augmentation (synthavs.swap): same frames, another in-view object's sound, masks that follow it;
off = byte-identical; ineligible clips left alone and counted; the rate is p over eligible clips."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from synthavs import SAMPLE_RATE, SceneConfig, SceneGenerator
from synthavs.sounds import class_sound, gate
from synthavs.swap import STATUSES, choose_swap, solo, swap_counts
from training.data import build_dataset

SMALL = dict(width=64, height=64, fps=2, mode="biased", bias=0.9, seed=7)
SECONDS = 3
FIELDS = ("frames", "audio", "masks", "semantic", "objects", "sounding", "active", "spliced", "offscreen")


def _same(a, b, fields=FIELDS) -> None:
    for key in fields:
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_swap_zero_is_byte_identical_to_no_option():
    plain, zero = SceneGenerator(SceneConfig(**SMALL)), SceneGenerator(SceneConfig(**SMALL, swap=0.0))
    for i in range(6):
        _same(plain.clip(i, SECONDS), zero.clip(i, SECONDS))
        assert zero.plan(i, SECONDS).swap is None
    a = build_dataset("synthavs:biased,segment_frames=2", split="train", size=(64, 64), frames=6, length=4)
    b = build_dataset("synthavs:biased,segment_frames=2,swap=0", split="train", size=(64, 64), frames=6, length=4)
    for i in range(4):
        for key, value in a[i].items():
            assert np.array_equal(value, b[i][key]), key


def test_swap_one_resounds_every_eligible_clip_as_the_chosen_object():
    cfg = SceneConfig(**SMALL, snr_db=(20.0, 20.0))
    plain, swapped = SceneGenerator(cfg), SceneGenerator(cfg.replace(swap=1.0))
    done = 0
    for i in range(40):
        p0, p1 = plain.plan(i, SECONDS), swapped.plan(i, SECONDS)
        a, b = plain.clip(i, SECONDS), swapped.clip(i, SECONDS)
        choice = p1.swap
        assert b.swap == choice and choice.status != "kept"  # p = 1: every eligible clip is swapped
        if choice.status != "swapped":
            _same(a, b)  # left as generated
            continue
        done += 1
        src, dst = choice.source, choice.target
        assert dst != src and p0.instances[dst].visible and p0.active[src].any()
        assert np.flatnonzero(p0.active.any(axis=1)).tolist() == [src]  # the clip had one source
        assert np.array_equal(b.frames, a.frames) and np.array_equal(b.objects, a.objects)  # same picture
        on = p0.active[src][np.minimum(a.frame_times.astype(int), SECONDS - 1)]  # same timing
        want = (a.objects == dst + 1) & on[:, None, None]
        assert np.array_equal(b.masks, want.astype(np.uint8))  # ground truth follows the audio
        assert np.array_equal(b.semantic, want * np.uint8(p0.instances[dst].cls + 1))
        assert b.sounding[:, p0.instances[dst].cls].tolist() == p0.active[src].tolist()
        # the audio is the chosen object's, rendered by the one owner, at the same SNR (dB)
        assert np.array_equal(
            b.audio, swapped.plan_audio(replace(solo(p0, dst, p0.active[src]), noise_rms=p1.noise_rms), 0, SECONDS * SAMPLE_RATE)
        )
        assert p1.noise_rms / swapped._signal_rms(p1) == pytest.approx(p0.noise_rms / plain._signal_rms(p0), rel=1e-9)
        assert np.abs(b.audio - a.audio).max() > 0.05
    assert done >= 10


def test_swapped_clean_audio_is_the_target_sound_alone():
    """Independent of plan_audio: with snr=clean the swapped soundtrack is the target's class sound,
    with its own pitch, offset and gain, gated by the old source's segments."""
    gen = SceneGenerator(SceneConfig(**SMALL, snr_db=(np.inf, np.inf), swap=1.0))
    checked = 0
    for i in range(30):
        plan = gen.plan(i, SECONDS)
        if plan.swap.status != "swapped":
            continue
        inst, dst = plan.instances[plan.swap.target], plan.swap.target
        n = SECONDS * SAMPLE_RATE
        t = np.arange(n) / SAMPLE_RATE
        g = gate(plan.active[dst].astype(np.float64), n, SAMPLE_RATE)
        seed = plan.noise_seed + 7919 * (dst + 1)
        want = np.clip(inst.gain * g * class_sound(inst.cls, t, pitch=inst.pitch, offset=inst.offset, seed=seed), -1, 1)
        assert np.allclose(gen.clip(i, SECONDS, frame_indices=[0]).audio, want, atol=1e-6)
        checked += 1
    assert checked >= 5


def test_swap_rate_is_p_over_eligible_clips_and_every_clip_is_counted():
    gen = SceneGenerator(SceneConfig(**SMALL, swap=0.5))
    counts = swap_counts(gen, 200, SECONDS)
    assert sum(counts.values()) == 200 and set(counts) <= set(STATUSES)
    eligible = counts["swapped"] + counts["kept"]
    assert eligible >= 60
    assert abs(counts["swapped"] - eligible / 2) <= 4 * np.sqrt(eligible / 4)  # 4 sigma of Binomial(n, 0.5)
    for i in range(200):  # each reason holds for the clip it names
        plan = gen.plan(i, SECONDS)
        visible = [j for j, inst in enumerate(plan.instances) if inst.visible]
        sources = np.flatnonzero(plan.active.any(axis=1))
        status = plan.swap.status
        if status == "one-in-view":
            assert len(visible) == 1
        elif status == "no-source":
            assert not set(sources) & set(visible)
        elif status == "several-sounding":
            assert len(sources) > 1
        else:
            assert len(sources) == 1 and len(visible) >= 2


def test_ineligible_plans_are_left_alone():
    gen = SceneGenerator(SceneConfig(**SMALL))
    plan = next(gen.plan(i, SECONDS) for i in range(50) if sum(inst.visible for inst in gen.plan(i, SECONDS).instances) >= 2)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    several = np.zeros_like(plan.active)
    several[:2] = True  # two objects sound together
    assert choose_swap(replace(plan, active=several), 1.0, rng()).status == "several-sounding"
    switch = np.zeros_like(plan.active)
    switch[0, 0], switch[1, 1:] = True, True  # the source changes between segments
    assert choose_swap(replace(plan, active=switch), 1.0, rng()).status == "several-sounding"
    assert choose_swap(replace(plan, active=np.zeros_like(plan.active)), 1.0, rng()).status == "no-source"
    alone = replace(plan, instances=plan.instances[:1], active=plan.active[:1] | True)
    assert choose_swap(alone, 1.0, rng()).status == "one-in-view"
    one = np.zeros_like(plan.active)
    one[1, 1] = True
    assert choose_swap(replace(plan, active=one), 0.0, rng()).status == "kept"
    picked = choose_swap(replace(plan, active=one), 1.0, rng())
    assert picked.status == "swapped" and picked.source == 1 and picked.target != 1


def test_target_is_drawn_uniformly_among_the_other_objects():
    gen = SceneGenerator(SceneConfig(**{**SMALL, "bias": 0.5}, min_objects=3, max_objects=3, swap=1.0))
    plan = gen.plan(0, SECONDS)
    one = np.zeros_like(plan.active)
    one[0] = True
    picks = [choose_swap(replace(plan, active=one), 1.0, np.random.default_rng([k])).target for k in range(400)]
    assert set(picks) == {1, 2} and abs(picks.count(1) - 200) <= 4 * 10  # 4 sigma


def test_swapped_dataset_samples_keep_the_pictures():
    spec = "synthavs:biased,segment_frames=2"
    a = build_dataset(spec, split="train", size=(64, 64), frames=6, length=30)
    b = build_dataset(spec + ",swap=1", split="train", size=(64, 64), frames=6, length=30)
    differ = 0
    for i in range(30):
        x, y = a[i], b[i]
        assert np.array_equal(x["images"], y["images"])
        changed = [not np.array_equal(x[k], y[k]) for k in ("masks", "audio", "labels")]
        assert changed == [b._gen.plan(i, 3).swap.status == "swapped"] * 3  # all follow the new source, or none moves
        differ += all(changed)
    assert differ >= 5


@pytest.mark.parametrize("value, match", [("1.5", r"swap 1.5 must lie in \[0, 1\]"), ("-0.1", r"swap -0.1 must lie"),
                                          ("nan", "swap nan must lie"), ("half", "swap='half' wants a number")])  # fmt: skip
def test_bad_swap_values_fail_clearly(value, match):
    with pytest.raises(ValueError, match=match):
        build_dataset(f"synthavs:biased,swap={value}", split="train", size=(64, 64), length=2)
