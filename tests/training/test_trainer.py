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
