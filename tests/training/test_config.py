"""Training configs: committed files parse, overrides are checked, ablations switch what they say."""

from __future__ import annotations

import pytest

from training.config import CONFIG_DIR, TrainConfig, load_config, parse_overrides


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_committed_configs_load(path):
    cfg = load_config(path)
    assert cfg.model == "icf-lite" and tuple(cfg.image_size) == (224, 224)


def test_ablation_switches():
    full = load_config("synthavs")
    assert full.sc and full.cdcl and full.frame_text and full.text_bridge and full.synth_bias == 0.8
    base = load_config("synthavs-baseline")
    assert not (base.sc or base.cdcl or base.frame_text or base.segment_text or base.video_text or base.text_bridge)
    assert not load_config("synthavs-no-sc").sc and load_config("synthavs-no-sc").cdcl
    assert not load_config("synthavs-no-cdcl").cdcl and load_config("synthavs-no-cdcl").sc
    no_mit = load_config("synthavs-no-mit")
    assert no_mit.sc and no_mit.cdcl and not (no_mit.frame_text or no_mit.text_bridge)
    # everything else equal to the full run, so the comparison is fair
    for name in ("synthavs-baseline", "synthavs-no-mit", "synthavs-no-sc", "synthavs-no-cdcl"):
        other = load_config(name)
        for f in ("steps", "lr", "batch_size", "train_data", "synth_bias", "model", "w_bce", "w_dice", "w_concept"):
            assert getattr(other, f) == getattr(full, f), (name, f)


def test_overrides_parse_and_check():
    cfg = load_config(
        "synthavs", ["--lr=1e-3", "--sc=false", "--image_size=[128,128]", "--name", "x1", "--train_data=synthavs:single"]
    )
    assert cfg.lr == 1e-3 and cfg.sc is False and cfg.image_size == (128, 128) and cfg.name == "x1"
    assert cfg.train_data == "synthavs:single"
    assert load_config("synthavs", ["--name=123"]).name == "123"
    assert load_config("synthavs", ["--lr=1"]).lr == 1.0


def test_unknown_and_mistyped_overrides_fail_clearly():
    with pytest.raises(ValueError, match=r"unknown training config key\(s\) \['learning_rate'\]"):
        parse_overrides(["--learning_rate=1"])
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
        TrainConfig(cdcl_weights={"xx": 1.0})
    assert TrainConfig(train_size=(128, 128)).effective_train_size == (128, 128)
    assert TrainConfig().effective_train_size == (224, 224)
