"""Issue 21: every ICF switch changes the network's gradient (or is refused), SC's pool is one draw per
clip, the training seed cannot be a val / test generator's, clipping keeps the heads apart, and the
audio window ends at the frame's capture time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import TrainConfig, load_config
from training.data import build_dataset, collate, prepare_batch
from training.data.synth import window_ends
from training.losses import SemanticCounterfactual
from training.trainer import clip_gradients, setup

TINY = ["--model=icf-tiny", "--image_size=[64,64]", "--device=cpu", "--batch_size=2", "--frames=4", "--workers=0",
        "--val_clips=1", "--steps=2", "--text_encoder=false", "--val_data=", "--train_data=synthavs:biased,segment_frames=2"]


def _batch(num_concepts: int) -> dict:
    # single-source clips, so every clip has a sounding object in view and the classes differ (CDCL has negatives)
    ds = build_dataset("synthavs:single,segment_frames=2", split="train", size=(64, 64), frames=4, length=6, bias=0.0)
    return prepare_batch(collate([ds[i] for i in range(6)]), torch.device("cpu"), num_concepts)


def _network_grad(tmp_path, *switches: str) -> dict[str, torch.Tensor]:
    """The network's gradient (per parameter name) of one training forward on a fixed batch, from the
    same initial weights and the same random draws."""
    run = setup(load_config("synthavs", [f"--out_dir={tmp_path}", *TINY, *switches]), resume=False, quiet=True)
    run.log.close()
    run.dist.close()
    batch = _batch(run.net.config.num_concepts)
    torch.manual_seed(7)
    loss, _ = run.module(batch, 1.0)
    loss.backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in run.net.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "base, switch",
    [
        ([], "--sc=false"),  # full ICF vs full - SC
        (["--sc=false"], "--cdcl=false"),  # full - SC vs MIT alone
        (["--cdcl_distance=feature"], "--sc=false"),  # frame-level CDCL uses the pool too
        (["--sc=false", "--cdcl=false"], "--frame_text=false"),  # one MIT granularity
        (["--sc=false"], "--cdcl_distance=prototype"),
        (["--sc=false", "--cdcl=false"], "--w_text_diversity=0.5"),  # the MIT mend
    ],
)
def test_each_switch_changes_the_network_gradient(tmp_path, base, switch):
    a = _network_grad(tmp_path / "a", *base)
    b = _network_grad(tmp_path / "b", *base, switch)
    shared = [n for n in a if n in b and a[n].shape == b[n].shape]
    assert "head.out.weight" in shared or len(shared) > 0.9 * len(a)
    assert not all(torch.equal(a[n], b[n]) for n in shared)  # the parameters both networks have learn differently


def test_switches_that_would_do_nothing_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sc=true needs cdcl"):
        TrainConfig(sc=True, cdcl=False)
    with pytest.raises(ValueError, match="sc=true needs cdcl"):
        TrainConfig(sc=True, cdcl=True, cdcl_weights={"va": 1.0, "vt": 0.0, "at": 0.0})
    with pytest.raises(ValueError, match="unknown training config key"):
        load_config("synthavs", ["--counterfactual_space=none"])  # was sc=false by another name
    off = ["--frame_text=false", "--segment_text=false", "--video_text=false", "--text_bridge=false"]
    with pytest.raises(ValueError, match="sc=true needs MIT"):
        setup(load_config("synthavs", [f"--out_dir={tmp_path}", *TINY, *off]), resume=False, quiet=True)


def test_sc_pool_shares_its_draw_across_a_clips_frames():
    torch.manual_seed(0)
    sc = SemanticCounterfactual(width=16, samples=6, topk=3)
    z = torch.randn(2, 1, 16).expand(2, 5, 16)  # a clip whose factual text is steady over its 5 frames
    cond = torch.randn(2, 1, 16).expand(2, 5, 16)
    cf = sc.counterfactuals(z, cond)
    assert cf.pool.shape == (2, 3, 5, 16)
    torch.testing.assert_close(cf.pool, cf.pool[:, :, :1].expand_as(cf.pool))  # each counterfactual as steady as z
    assert not torch.allclose(cf.pool[0, 0], cf.pool[0, 1])  # the samples differ from each other


@pytest.mark.parametrize("seed", [1000, 2000, 2500])
def test_training_refuses_a_validation_or_test_generator_seed(seed):
    with pytest.raises(ValueError, match="could equal another split"):
        build_dataset("synthavs:biased", split="train", size=(64, 64), frames=2, length=2, seed=seed)
    with pytest.raises(ValueError, match="could equal another split"):
        build_dataset("synthavs:biased", split="test", size=(64, 64), frames=2, length=2, seed=-1000)
    assert build_dataset("synthavs:biased", split="train", size=(64, 64), frames=2, length=2, seed=999).scene.seed == 999


def test_fit_refuses_the_test_seed_with_exit_2(tmp_path, capsys):
    from training.__main__ import main

    assert main(["fit", "--config", "synthavs", f"--out_dir={tmp_path}", *TINY, "--seed=2000"]) == 2
    assert "could equal another split" in capsys.readouterr().err


def test_clipping_keeps_the_network_apart_from_the_auxiliary_heads(tmp_path):
    run = setup(load_config("synthavs", [f"--out_dir={tmp_path}", *TINY]), resume=False, quiet=True)
    run.log.close()
    run.dist.close()
    net_params = list(run.net.parameters())
    for p in net_params:
        p.grad = torch.full_like(p, 1e-4)
    ids = {id(p) for p in net_params}
    aux = [p for p in run.module.parameters() if id(p) not in ids]
    assert aux  # SC's denoiser and CDCL's heads
    for p in aux:
        p.grad = torch.full_like(p, 100.0)  # a huge auxiliary gradient
    before = [p.grad.clone() for p in net_params]
    norm = clip_gradients(run.module, 1.0)
    assert float(norm) < 1.0  # the network's own norm, not the heads'
    assert all(torch.equal(p.grad, g) for p, g in zip(net_params, before))  # untouched by the heads' size
    assert float(torch.cat([p.grad.flatten() for p in aux]).norm()) == pytest.approx(1.0, rel=1e-4)


def test_audio_window_ends_at_the_frames_capture_time():
    assert window_ends([9, 19], 10).tolist() == [14400, 30400]
    ds = build_dataset("synthavs:single,split=test,snr=clean", split="test", size=(64, 64), frames=2, length=1)
    s = ds[0]
    fps = ds.scene.fps
    frame_idx = np.round(s["frame_times"] * fps).astype(int)
    from synthavs import SceneGenerator, audio_window

    clip = SceneGenerator(ds.scene).clip(0, seconds=2, frame_indices=frame_idx.tolist())
    for j, e in enumerate(window_ends(frame_idx, fps)):
        assert e == round(float(s["frame_times"][j]) * 16000)
        np.testing.assert_array_equal(s["audio"][j], audio_window(clip.audio, int(e), s["audio"].shape[1]))


@pytest.mark.slow
def test_text_diversity_spreads_the_visual_text_across_clips(tmp_path):
    from training.losses import text_diversity

    run = setup(load_config("synthavs", [f"--out_dir={tmp_path}", *TINY, "--sc=false", "--cdcl=false", "--w_text_diversity=1.0"]),
                resume=False, quiet=True)
    run.log.close()
    run.dist.close()
    batch = _batch(run.net.config.num_concepts)
    clip_of = torch.arange(6).repeat_interleave(4)

    def collapse() -> float:
        with torch.no_grad():
            return float(text_diversity(run.net.clip(batch["images"], batch["audio"]).texts.l_v, clip_of))

    before = collapse()
    opt = torch.optim.Adam(run.module.parameters(), lr=1e-3)
    for _ in range(10):
        loss, parts = run.module(batch, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "text_diversity" in parts
    assert collapse() < 0.8 * before
