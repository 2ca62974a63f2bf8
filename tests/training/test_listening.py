"""Listening metrics: the swap test on a hand-built two-object clip with an oracle that listens and
one that looks, reference rows, paired bootstrap, and icf-train eval / --compare end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import model
from synthavs import SceneConfig, SceneGenerator
from synthavs.looks import background
from synthavs.scene import Instance, ScenePlan
from training.__main__ import main
from training.listening import ClipCase, listening_report
from training.stats import paired_bootstrap

H = W = 64
GUITAR, DOG = 0, 1  # guitar is a LOUD class: the hand-built clip's prior object


def _instance(cls: int, x: float, side: float) -> Instance:
    from synthavs.looks import instance_sprite

    return Instance(
        cls=cls, visible=True, side=side, pos0=(x, 32.0), vel=(0.0, 0.0), wobble=(0.0, 1.0, 0.0),
        breathe=(0.0, 1.0, 0.0), sprite=instance_sprite(cls, 0.0, 1.0), pitch=1.0, offset=0.0, gain=1.0,
    )  # fmt: skip


def two_object_generator(sounding: int) -> SceneGenerator:
    """Clip 0: a big guitar (salient, prior) on the left, a small dog on the right, no motion;
    instance ``sounding`` plays in all 5 segments."""
    gen = SceneGenerator(SceneConfig(width=W, height=H, fps=1, seed=0))
    active = np.zeros((2, 5), bool)
    active[sounding] = True
    plan = ScenePlan(
        index=0, seconds=5, mode="single", conflict=False, instances=(_instance(GUITAR, 18.0, 28.0), _instance(DOG, 48.0, 16.0)),
        active=active, background=np.clip(background(np.random.default_rng(0), H, W, 0), 0, 255).astype(np.uint8),
        noise_rms=0.001, noise_seed=5, prior=0,
    )  # fmt: skip
    gen._plans[(0, 5)] = plan  # the generator serves this plan as clip 0
    return gen


class Oracle:
    """A fake network: ``listen`` paints the object whose solo audio is playing (nothing for other
    audio); ``look`` always paints the salient object."""

    def __init__(self, case: ClipCase, kind: str) -> None:
        self.case, self.kind = case, kind
        self.solo = {j: case.swap_audio(j) for j in case.visible()}
        self.config = SimpleNamespace(semantic=False)

    def clip(self, images, audio, *, frames_per_segment=1):
        b, t = images.shape[:2]
        out = torch.full((b, t, 1, H, W), -20.0)
        objects = torch.from_numpy(self.case.clip.objects)
        for i in range(b):
            if self.kind == "look":
                out[i, :, 0][objects == 1] = 20.0
                continue
            for j, solo in self.solo.items():
                if np.array_equal(audio[i].numpy(), solo):
                    out[i, :, 0][objects == j + 1] = 20.0
        return SimpleNamespace(mask_logits=out)


@pytest.mark.parametrize("kind", ["listen", "look"])
def test_swap_test_on_a_two_object_clip(kind):
    gen = two_object_generator(sounding=1)  # the small dog sounds, the salient prior guitar is silent
    case = ClipCase(gen, 0, 5)
    assert case.visible() == [0, 1] and (case.clip.objects == 1).sum() > (case.clip.objects == 2).sum()
    rep = listening_report(Oracle(case, kind), gen, clips=1, device=torch.device("cpu"), batch_size=4)
    m = rep["model"]
    assert m["follow_frames"] == 10 and m["salient_capture_frames"] == 5 and m["prior_capture_frames"] == 5
    assert "prior_capture_not_salient" not in m  # the prior guitar is the salient object here
    if kind == "listen":
        assert m["follow"] == 1.0 and m["salient_capture"] == 0.0 and m["prior_capture"] == 0.0
        assert m["mIoU"] > 0.99
        assert rep["silent"]["empty_rate"] == 1.0 and rep["shuffled"]["mIoU"] < 0.05
    else:
        assert m["follow"] == 0.5 and m["salient_capture"] == 1.0 and m["prior_capture"] == 1.0
        assert m["mIoU"] < 0.05 and rep["silent"]["empty_rate"] == 0.0
    sizes = m["iou_by_size"]
    assert sizes["large >=8%"] == 1.0  # the guitar (~19% of the frame) is followed by both oracles when it plays
    assert sizes["small <3%"] is None and sizes["medium 3-8%"] == (1.0 if kind == "listen" else 0.0)
    # reference rows come from ground truth alone and do not depend on the network
    assert rep["salient-only"]["prior_capture"] == 1.0 and rep["salient-only"]["mIoU"] < 0.05
    assert rep["all-objects"]["prior_capture"] == 1.0 and 0.1 < rep["all-objects"]["mIoU"] < 0.5
    assert len(rep["per_clip"]["mIoU"]) == 1


def test_reference_rows_without_a_network():
    gen = two_object_generator(sounding=0)  # the salient guitar sounds: salient-only is exact
    rep = listening_report(None, gen, clips=1, device=torch.device("cpu"))
    assert set(rep) == {"salient-only", "all-objects"}
    assert rep["salient-only"]["mIoU"] > 0.99 and rep["salient-only"]["follow"] == 0.5
    assert rep["salient-only"].get("prior_capture_frames", 0) == 0  # the prior sounds: no conflict frames


def test_paired_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.4, 0.9, 300)
    same = paired_bootstrap({"mean": a}, {"mean": a})
    assert same["diff"] == 0.0 and same["lo"] == 0.0 and same["hi"] == 0.0
    shifted = paired_bootstrap({"mean": a + 0.1}, {"mean": a})
    assert shifted["lo"] == pytest.approx(0.1) and shifted["hi"] == pytest.approx(0.1)
    noisy = paired_bootstrap({"mean": a + rng.normal(0.05, 0.1, 300)}, {"mean": a})
    assert noisy["lo"] < noisy["diff"] < noisy["hi"] and noisy["hi"] - noisy["lo"] < 0.05
    rates = paired_bootstrap(
        {"hits": np.array([5, 5, 5]), "total": np.array([5, 5, 5])}, {"hits": np.array([0, 1, 2]), "total": np.array([5, 5, 5])}
    )
    assert rates["diff"] == pytest.approx(0.8) and rates["lo"] <= 0.8 <= rates["hi"]
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap({"mean": a}, {"mean": a[:10]})


def test_paired_bootstrap_is_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 1, 100), rng.uniform(0, 1, 100)
    assert paired_bootstrap({"mean": a}, {"mean": b}) == paired_bootstrap({"mean": a}, {"mean": b})
    assert paired_bootstrap({"mean": a}, {"mean": b}, seed=1)["lo"] != paired_bootstrap({"mean": a}, {"mean": b})["lo"]


def test_eval_prints_listening_and_reference_rows_and_compares(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = model.build_model("icf-tiny", image_size=(64, 64))
        paths.append(model.save_checkpoint(net, tmp_path / f"w{seed}.safetensors"))
    common = ["--clips", "2", "--workers", "0", "--device", "cpu"]
    report = tmp_path / "eval.json"
    assert main(["eval", "--data", "synthavs:prior-conflict", "--weights", str(paths[0]), *common, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    for row in ("| model |", "| shuffled |", "| silent |", "| salient-only |", "| all-objects |", "prior capture", "follow"):
        assert row in out, row
    result = json.loads(report.read_text())
    assert result["data_seed"] == 2000 and result["listening"]["model"]["mIoU"] == pytest.approx(result["mIoU"], abs=1e-6)
    assert main(["eval", "--data", "synthavs:multi,snr=20,mix=0.25", "--compare", str(paths[0]), str(paths[1]), *common]) == 0
    out = capsys.readouterr().out
    assert "| synthavs:multi,snr=20,mix=0.25 | mIoU |" in out and "95% interval" in out


def test_listening_pass_gives_the_official_numbers_of_evaluate():
    """The SynthAVS listening pass feeds the official meter instead of a second pass: same clips,
    same audio windows, same numbers as training.evaluate.evaluate over the DataLoader."""
    from training.data import build_dataset
    from training.evaluate import evaluate
    from training.metrics import BinaryMeter

    torch.manual_seed(0)
    net = model.build_model("icf-tiny", image_size=(64, 64)).eval()
    ds = build_dataset("synthavs:multi,mix=0.4", split="test", size=(64, 64), length=3)
    official = evaluate(net, ds, device=torch.device("cpu"), workers=0, batch_size=2)
    meter = BinaryMeter()
    listening_report(net, SceneGenerator(ds.scene), clips=3, device=torch.device("cpu"), full=False, meter=meter)
    got = meter.result()
    for key in ("mIoU", "F", "empty_rate", "videos", "empty_frames"):
        assert got[key] == pytest.approx(official[key], abs=1e-6), key
