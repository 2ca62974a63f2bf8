"""Training configs: committed files parse, overrides are checked, ablations switch what they say."""

from __future__ import annotations

import pytest

import model
from training.config import CONFIG_DIR, TrainConfig, load_config, parse_overrides


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_committed_configs_load(path):
    cfg = load_config(path)
    assert cfg.model in model.list_models() and all(s % 32 == 0 for s in cfg.image_size)


@pytest.mark.parametrize("name", ["s4", "ms3", "avss"])
def test_avsbench_recipes_follow_the_paper(name):
    cfg = load_config(name)  # ICF paper Sec. 4 (R50): 224x224, AdamW, batch 8, lr 1e-4, 60 epochs
    assert (cfg.model, tuple(cfg.image_size), cfg.batch_size, cfg.lr) == ("icf-r50", (224, 224), 8, 1e-4)
    assert cfg.sc and cfg.cdcl and cfg.frame_text and cfg.w_focal > 0
    train_videos = {"s4": 3452, "ms3": 296, "avss": 8498}[name]
    assert cfg.steps == 60 * -(-train_videos // 8)


def test_ablation_switches():
    full = load_config("synthavs")
    assert full.sc and full.cdcl and full.frame_text and full.text_bridge and full.synth_bias == 0.8
    assert full.w_focal > 0 and full.w_concept == 0 and "segment_frames=2" in full.train_data
    base = load_config("synthavs-baseline")
    assert not (base.sc or base.cdcl or base.frame_text or base.segment_text or base.video_text or base.text_bridge)
    assert base.w_concept == 0 and base.w_focal == full.w_focal
    concept = load_config("synthavs-baseline-concept")
    assert concept.w_concept > 0 and not (concept.sc or concept.cdcl or concept.frame_text)
    assert load_config("synthavs-cdcl-feature").cdcl_distance == "feature"
    assert load_config("synthavs-cdcl-prototype").cdcl_distance == "prototype"
    assert load_config("synthavs-no-ortho").w_ortho == 0
    frame_only = load_config("synthavs-frame-only")
    assert frame_only.frame_text and not (frame_only.segment_text or frame_only.video_text)
    assert not load_config("synthavs-no-sc").sc and load_config("synthavs-no-sc").cdcl
    no_cdcl = load_config("synthavs-no-cdcl")  # MIT alone: SC without CDCL would train the same network (refused)
    assert not (no_cdcl.cdcl or no_cdcl.sc) and no_cdcl.frame_text
    no_mit = load_config("synthavs-no-mit")  # SC needs MIT's z: off
    assert not no_mit.sc and no_mit.cdcl and not (no_mit.frame_text or no_mit.text_bridge)
    # everything else equal to the full run, so the comparison is fair
    skip = ("synthavs", "synthavs-cpu", "synthavs-v2-baseline", "synthavs-v2-swap")  # v2 arms: see the swap test below
    arms = [p.stem for p in CONFIG_DIR.glob("synthavs*.json") if p.stem not in skip]
    assert len(arms) >= 9
    for name in arms:
        other = load_config(name)
        fields = ("steps", "lr", "batch_size", "frames", "train_data", "val_data", "synth_bias", "model", "w_bce", "w_dice", "w_focal")
        for f in fields + (() if name == "synthavs-baseline-concept" else ("w_concept",)):
            assert getattr(other, f) == getattr(full, f), (name, f)


def test_swap_arm_is_the_v2_baseline_plus_the_swap_option():
    base, swap = load_config("synthavs-v2-baseline"), load_config("synthavs-v2-swap")
    assert swap.train_data == "synthavs:biased,segment_frames=2,swap=0.5"
    differ = {f for f in TrainConfig.__dataclass_fields__ if getattr(base, f) != getattr(swap, f)}
    assert differ == {"name", "out_dir", "train_data"}


def test_overrides_parse_and_check():
    cfg = load_config(
        "synthavs", ["--lr=1e-3", "--sc=false", "--image_size=[128,128]", "--name", "x1", "--train_data=synthavs:single"]
    )
    assert cfg.lr == 1e-3 and cfg.sc is False and cfg.image_size == (128, 128) and cfg.name == "x1"
    assert cfg.train_data == "synthavs:single"
    assert load_config("synthavs", ["--name=123"]).name == "123"
    assert load_config("synthavs", ["--lr=1"]).lr == 1.0


def test_unknown_and_mistyped_overrides_fail_clearly():
    with pytest.raises(ValueError, match=r"unknown training config key\(s\): learning_rate; `icf-train fit --help`"):
        parse_overrides(["--learning_rate=1"])
    with pytest.raises(ValueError, match=r"stesp \(did you mean steps"):
        parse_overrides(["--stesp=1"])
    with pytest.raises(ValueError, match="'sc' wants true/false"):
        parse_overrides(["--sc=maybe"])
    with pytest.raises(ValueError, match="'steps' wants int"):
        load_config("synthavs", ["--steps=1.5"])
    with pytest.raises(ValueError, match="has no value"):
        parse_overrides(["--lr"])
    with pytest.raises(FileNotFoundError, match="committed configs"):
        load_config("nonexistent")


def test_config_validation():
    with pytest.raises(ValueError, match="multiples of 32"):
        TrainConfig(train_size=(100, 100))
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="int8")
    with pytest.raises(ValueError, match="unknown pair"):
        TrainConfig(cdcl_weights={"fc": 1.0})
    with pytest.raises(ValueError, match="cdcl_distance"):
        TrainConfig(cdcl_distance="cosine")
    with pytest.raises(ValueError, match="sc=true needs cdcl"):
        TrainConfig(cdcl=False)
    with pytest.raises(ValueError, match="sc_topk"):
        TrainConfig(sc_samples=4, sc_topk=8)
    assert TrainConfig(train_size=(128, 128)).effective_train_size == (128, 128)
    assert TrainConfig().effective_train_size == (224, 224)


# Training-config fields the shipped runs recorded that were removed since, with the value today's code always has.
RETIRED_TRAIN_FIELDS = {"counterfactual_space": "continuous"}  # d6db677: the other space was sc=false


@pytest.mark.parametrize("weights", ["icf-lite-stamps", "icf-lite-synthavs"])
def test_shipped_weights_recipe_is_its_config_without_overrides(weights):
    """The sidecar's recipe is ``icf-train fit --config NAME`` alone, and NAME resolves to the training config the
    shipped run recorded (its out_dir aside; a field added since must sit at its default, the behaviour before it)."""
    import dataclasses
    import json

    from weights import HERE

    doc = json.loads((HERE / f"{weights}.json").read_text())
    prefix = "icf-train fit --config "
    assert doc["recipe"].startswith(prefix) and " " not in doc["recipe"][len(prefix):], doc["recipe"]
    ours = load_config(doc["recipe"][len(prefix):]).to_dict()
    ran = doc["train_config"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    for key in sorted(set(ours) | set(ran)):
        if key == "out_dir":
            continue
        if key not in ours:
            assert RETIRED_TRAIN_FIELDS.get(key) == ran[key], (weights, key, ran[key])
            continue
        want = ran[key] if key in ran else defaults[key]
        got = list(ours[key]) if isinstance(ours[key], tuple) else ours[key]
        assert got == want, (weights, key, got, want)
