"""The real-media scenes (synthavs.stamps): exact ground truth, determinism, held-out objects kept out of training.

Tests that read the media skip on a bare machine (Debian tuxpaint-stamps-default + opencv-doc missing);
.ci/run installs both after the bare-machine run and runs them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthavs import SceneConfig, SceneGenerator
from synthavs import stamps as stamps_mod
from synthavs.stamps import CATALOGUE, HELDOUT_OBJECTS, LOUD_COMPANIONS, seen_names, seen_prompts, stamp_name

needs_media = pytest.mark.skipif(
    not stamps_mod.stamps_available(),
    reason="needs Debian tuxpaint-stamps-default and opencv-doc (apt-get install tuxpaint-stamps-default opencv-doc)",
)


def test_catalogue_split_is_fixed_and_disjoint():
    names = [stamp_name(p) for p in CATALOGUE]
    assert len(set(names)) == len(names)
    assert set(HELDOUT_OBJECTS) <= set(names)
    assert 0.15 <= len(HELDOUT_OBJECTS) / len(names) <= 0.25  # "a fixed ~20%"
    assert not set(HELDOUT_OBJECTS) & set(seen_names())
    pairs = set(LOUD_COMPANIONS) | set(LOUD_COMPANIONS.values())
    assert pairs <= set(seen_names()), "the class priors must live on training stamps"


def test_committed_bank_matches_the_catalogue():
    from model.text_bank import load_bank

    concepts, emb = load_bank("stamps")
    assert list(concepts) == seen_prompts()
    assert emb.shape == (len(seen_names()), 384)


def test_missing_package_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setattr(stamps_mod, "STAMPS_DIR", tmp_path)
    with pytest.raises(stamps_mod.StampsMissing, match="apt-get install tuxpaint-stamps-default"):
        stamps_mod.check_installed()
    from training.data import build_dataset

    with pytest.raises(stamps_mod.StampsMissing, match="tuxpaint-stamps-default"):
        build_dataset("stamps:single", split="train", size=(64, 64))


def test_training_refuses_heldout_objects():
    from training.data import build_dataset

    if not stamps_mod.stamps_available():
        pytest.skip("needs Debian tuxpaint-stamps-default and opencv-doc")
    with pytest.raises(ValueError, match="never trained on"):
        build_dataset("stamps:single,objects=heldout", split="train", size=(64, 64))


@needs_media
def test_ground_truth_is_the_alpha_channel():
    gen = SceneGenerator(SceneConfig(media="stamps", mode="single", max_objects=1, seed=3, width=160, height=128))
    media = gen.media
    for index in range(3):
        plan = gen.plan(index, 2)
        inst = plan.instances[0]
        # the sprite's alpha is the PNG's own alpha channel, cropped to the object and fitted into the square
        path = next(p for p in CATALOGUE if stamp_name(p) == media.class_names[inst.cls])
        png = stamps_mod._read_rgba(stamps_mod.STAMPS_DIR / f"{path}.png")
        ys, xs = np.nonzero(png[..., 3] > 0)
        crop = png[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1, 3].astype(np.float32) / 255.0
        fitted = media.sprite(inst.cls, 0.0, 1.0)[..., 3]
        box = np.nonzero(fitted.max(axis=1) > 0)[0], np.nonzero(fitted.max(axis=0) > 0)[0]
        inner = fitted[box[0].min() : box[0].max() + 1, box[1].min() : box[1].max() + 1]
        ref = cv2.resize(crop, (inner.shape[1], inner.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.mean(np.abs(inner - ref)) < 0.02
        # the mask of a sounding frame is exactly where the pasted sprite's alpha is >= 0.5
        _, cx, cy, side = gen._geometry(plan, 0.0)[0]
        image, mask, _ = gen.render(plan, 0.0)
        size = max(int(round(side)), 2)
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        alpha = cv2.resize(inst.sprite, (size, size), interpolation=cv2.INTER_LINEAR)[..., 3]
        expect = np.zeros(mask.shape, bool)
        ys, xs = np.mgrid[0:size, 0:size]
        inside = (ys + y0 >= 0) & (ys + y0 < mask.shape[0]) & (xs + x0 >= 0) & (xs + x0 < mask.shape[1])
        expect[(ys + y0)[inside], (xs + x0)[inside]] = alpha[inside] >= 0.5
        sounding = plan.active[0, 0]
        assert np.array_equal(mask.astype(bool), expect & sounding)


@needs_media
def test_deterministic_in_seed_and_index():
    cfg = SceneConfig(media="stamps", mode="mixed", seed=7, width=96, height=96, fps=5)
    a = SceneGenerator(cfg).clip(4, seconds=2)
    b = SceneGenerator(cfg).clip(4, seconds=2)
    for key in ("frames", "audio", "masks", "semantic", "sounding"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    c = SceneGenerator(cfg.replace(seed=8)).clip(4, seconds=2)
    assert not np.array_equal(a.frames, c.frames)


@needs_media
def test_heldout_objects_never_appear_in_training_clips():
    from training.data import build_dataset

    train_names = set(seen_names())
    for mode in ("mixed", "biased", "multi", "offscreen"):
        ds = build_dataset(f"stamps:{mode},swap=0.5", split="train", size=(64, 64), frames=2, length=30)
        assert set(ds.classes) == train_names
        gen = SceneGenerator(ds.scene)
        assert gen.media.backgrounds is stamps_mod._backgrounds("train")
        for i in range(30):
            plan = gen.plan(i, 2)
            assert {gen.media.class_names[inst.cls] for inst in plan.instances} <= train_names
    test = build_dataset("stamps:single,split=test,objects=heldout", split="test", size=(64, 64), frames=2, length=5)
    gen = SceneGenerator(test.scene)
    assert set(gen.media.class_names) == set(HELDOUT_OBJECTS)
    assert gen.media.backgrounds is stamps_mod._backgrounds("heldout")


@needs_media
def test_sound_follows_the_sounding_segments():
    gen = SceneGenerator(SceneConfig(media="stamps", mode="mixed", seed=11, width=64, height=64, snr_db=(40.0, 40.0)))
    seen_on, seen_off = [], []
    for i in range(12):
        clip = gen.clip(i, seconds=4, frame_indices=[0])
        rms = np.sqrt(np.mean(clip.audio.reshape(4, -1) ** 2, axis=1))
        on = clip.sounding.any(axis=1)
        seen_on += list(rms[on])
        seen_off += list(rms[~on])
    assert seen_on and seen_off
    assert min(seen_on) > 5 * max(seen_off)  # real recordings sound in every segment the ground truth says they do
