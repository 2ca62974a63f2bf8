"""The trainer's pieces: set-up reads from the dataset (not its class name) whether clips are generated."""

from __future__ import annotations

import torch

from training.config import load_config
from training.data import build_dataset
from training.trainer import setup

TINY = ["--model=icf-tiny", "--image_size=[64,64]", "--device=cpu", "--batch_size=2", "--frames=2", "--workers=0",
        "--val_clips=1", "--steps=2"]


class Recorded(torch.utils.data.Dataset):
    """A finite dataset under a name the trainer has never heard of."""

    generated = False

    def __init__(self, clips: torch.utils.data.Dataset) -> None:
        self.clips = [clips[i] for i in range(3)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        return self.clips[i]


class Generated(Recorded):
    generated = True


def _sampler_of(tmp_path, monkeypatch, wrap) -> tuple[bool, list[list[int]]]:
    cfg = load_config("synthavs", [f"--out_dir={tmp_path}", *TINY])
    synth = build_dataset(cfg.train_data, split="train", size=cfg.effective_train_size, frames=cfg.frames, length=8, seed=0)
    assert synth.generated is True
    if wrap is not None:
        monkeypatch.setattr("training.trainer.build_datasets", lambda cfg, d: (wrap(synth), None))
    run = setup(cfg, resume=False, quiet=True)
    try:
        sampler = run.loader.batch_sampler
        return sampler.fresh, list(sampler)
    finally:
        run.log.close()
        run.dist.close()


def test_setup_takes_generated_from_the_dataset(tmp_path, monkeypatch):
    fresh, batches = _sampler_of(tmp_path / "synth", monkeypatch, None)
    assert fresh is True and batches == [[0, 1], [2, 3]]  # generated: every index once
    fresh, batches = _sampler_of(tmp_path / "generated", monkeypatch, Generated)
    assert fresh is True
    fresh, batches = _sampler_of(tmp_path / "recorded", monkeypatch, Recorded)
    assert fresh is False and all(0 <= i < 3 for b in batches for i in b)  # finite: walked in permutations


def _setup(tmp_path, *extra: str):
    run = setup(load_config("synthavs", [f"--out_dir={tmp_path}", *TINY, "--text_encoder=false", *extra]), resume=False, quiet=True)
    run.log.close()
    run.dist.close()
    return run


def test_the_model_records_the_training_data_frame_ring_rate(tmp_path):
    """segment_frames=k clips are k fps: the network (and so its checkpoint and export sidecar)
    carries frame_ring_rate = k; plain specs are 1 fps -> 1; an explicit override wins."""
    from model import read_checkpoint_config
    from training.run_setup import save_weights
    from training.trainer import data_ring_rate

    assert data_ring_rate(build_dataset("synthavs:biased,segment_frames=2", split="train", size=(64, 64), frames=2)) == 2
    assert data_ring_rate(build_dataset("synthavs:biased", split="train", size=(64, 64), frames=2)) == 1
    assert data_ring_rate(Recorded(build_dataset("synthavs:biased", split="train", size=(64, 64), frames=2))) == 1
    run = _setup(tmp_path / "two", "--train_data=synthavs:biased,segment_frames=2")
    assert run.net.config.frame_ring_rate == 2
    path = save_weights(run.net, tmp_path / "two.safetensors", (64, 64), {})
    assert read_checkpoint_config(path).frame_ring_rate == 2
    assert _setup(tmp_path / "one", "--train_data=synthavs:biased").net.config.frame_ring_rate == 1
    forced = _setup(tmp_path / "forced", "--train_data=synthavs:biased,segment_frames=2", '--model_overrides={"frame_ring_rate": 5}')
    assert forced.net.config.frame_ring_rate == 5


def test_no_weight_decay_on_token_embeddings_queries_norms_biases(tmp_path):
    """AdamW decays only linear / conv weight matrices: the textual-inversion tokens (3-D, would
    have been decayed by an ndim rule), the weight query, gammas, norms and biases are not."""
    run = _setup(tmp_path)
    names = {id(p): n for n, p in run.module.named_parameters()}
    decay = {names[id(p)] for g in run.opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    free = {names[id(p)] for g in run.opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert run.cfg.weight_decay > 0 and len(decay) + len(free) == len(names)
    for name in ("net.implicit.tokens_visual", "net.implicit.tokens_audio", "net.matcher.weight_query", "net.frame_corr.gamma"):
        assert name in free, name
    assert not any(n.endswith(".bias") for n in decay)
    assert "net.matcher.keys.0.weight" in decay and "net.backbone.stages.1.0.weight" in decay
    assert all(run.module.get_parameter(n).ndim >= 2 for n in decay)
