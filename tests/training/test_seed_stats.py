"""Issue 21: recipe comparisons are paired by training seed and their interval is across seeds."""

from __future__ import annotations

import math

import pytest
import torch

import model
from training.__main__ import main
from training.evaluate import pair_by_seed
from training.stats import decide, seed_paired, t975


def test_seed_paired_t_interval_hand_case():
    st = seed_paired([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2 df) = 4.303
    assert st["n"] == 3 and st["mean"] == pytest.approx(2.0) and st["sd"] == pytest.approx(1.0)
    half = 4.303 / math.sqrt(3)
    assert (st["t_lo"], st["t_hi"]) == pytest.approx((2 - half, 2 + half))
    assert 1.0 <= st["boot_lo"] <= st["boot_hi"] <= 3.0
    one = seed_paired([5.0])
    assert one["t_lo"] == -math.inf and one["t_hi"] == math.inf  # one pair says nothing about the recipe


def test_t_quantile_table():
    assert t975(15) == pytest.approx(2.131)
    assert t975(17) == pytest.approx(2.110)
    assert t975(35) == pytest.approx(2.042)  # between rows: the smaller df's (wider) quantile, never a narrower one
    assert t975(99) == pytest.approx(1.984)
    assert t975(500) == pytest.approx(1.980)
    with pytest.raises(ValueError):
        t975(0)


@pytest.mark.parametrize(
    "diffs, verdict",
    [
        ([4.0, 5.0, 6.0, 5.0], "helps"),  # excludes 0, mean 5 >= 3
        ([2.0, 3.5, 2.5, 3.0], "undecided"),  # excludes 0, mean 2.75 under the margin, interval [1.7, 3.8] not inside +-3
        ([0.5, -0.5, 0.2, -0.1], "no useful effect"),  # inside (-3, +3)
        ([9.0, -7.0, 4.0], "undecided"),  # wide
        ([-5.0, -6.0, -4.0, -5.0], "undecided"),  # harmful: the rule's only verdicts are these three
    ],
)
def test_the_pre_registered_rule(diffs, verdict):
    assert decide(seed_paired(diffs), margin=3.0) == verdict


def _checkpoints(tmp_path, arm: str, seeds: list[int]) -> list[str]:
    out = []
    for s in seeds:
        torch.manual_seed(100 * s + (arm == "b"))
        net = model.build_model("icf-tiny", image_size=(64, 64)).eval()
        out.append(str(model.save_checkpoint(net, tmp_path / f"{arm}{s}.safetensors", extra={"train_config": {"seed": s}})))
    return out


def test_pairs_by_seed_whatever_the_order(tmp_path):
    a = _checkpoints(tmp_path, "a", [0, 1])
    b = _checkpoints(tmp_path, "b", [0, 1])
    assert pair_by_seed(a, b[::-1]) == [(0, a[0], b[0]), (1, a[1], b[1])]
    with pytest.raises(ValueError, match="share their seeds"):
        pair_by_seed(a, b[:1])
    with pytest.raises(ValueError, match="two weights of seed 0"):
        pair_by_seed([a[0], a[0]], b)


def test_eval_compare_several_seeds_prints_the_seed_level_interval(tmp_path, capsys):
    a = _checkpoints(tmp_path, "a", [0, 1])
    b = _checkpoints(tmp_path, "b", [0, 1])
    common = ["--clips", "2", "--workers", "0", "--device", "cpu", "--quiet"]
    spec = "synthavs:prior-conflict,split=test,segment_frames=2"
    assert main(["eval", "--data", spec, "--compare", ",".join(a), ",".join(b), *common]) == 0
    out = capsys.readouterr().out
    assert "95% paired t (seeds)" in out and "| mIoU | 2 |" in out and "clip bootstrap" in out
    assert main(["eval", "--data", spec, "--compare", ",".join(a), b[0], *common]) == 2  # seeds 0, 1 vs seed 0 only
    assert "share their seeds" in capsys.readouterr().err
