"""Data specs and loaders: one function parses every spec.

    synthavs[:MODE][,key=value...]   on-the-fly SynthAVS (keys: bias, conflict, seed, split, clips, fps, snr,
                                     max_objects, min_objects, priors, companion, offscreen, mix, segment_frames,
                                     swap), e.g. synthavs:conflict,split=test,clips=200;
                                     swap=P: audio-swap augmentation (synthavs.swap), e.g.
                                     synthavs:biased,segment_frames=2,swap=0.5
    stamps[:MODE][,key=value...]     real photos + their real recordings (synthavs.stamps; Debian tuxpaint-stamps-default
                                     and opencv-doc): the synthavs modes and keys plus objects=seen|heldout, e.g.
                                     stamps:single,split=test,objects=heldout
    avsbench-s4:PATH                 AVSBench Single-source (training.data.avsbench)
    avsbench-ms3:PATH                AVSBench Multi-sources
    avss:PATH                        AVSBench-semantic (training.data.avss)
    folder:PATH                      your own videos + mask PNGs (training.data.folder)
Path specs take ``,split=NAME`` at the end to pick a split other than the caller's default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from .avsbench import MS3Dataset, S4Dataset
from .avss import AVSSDataset
from .common import DataError
from .folder import FolderDataset
from .synth import SynthDataset, synth_dataset

KINDS = ("synthavs", "stamps", "avsbench-s4", "avsbench-ms3", "avss", "folder")
GENERATED = ("synthavs", "stamps")  # kinds rendered on the fly by synthavs (the rest are paths)
_OPTION = re.compile(r"^[A-Za-z_]+=")


@dataclass(frozen=True)
class DataSpec:
    kind: str  # one of KINDS
    target: str  # mode (synthavs) or path
    options: dict = field(default_factory=dict)  # key=value extras


def parse_spec(spec: str) -> DataSpec:
    """'kind[:target][,key=value...]' -> DataSpec; unknown kinds fail with the list of known ones."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"unknown data spec '{spec}'; use one of: synthavs[:MODE], stamps[:MODE], avsbench-s4:PATH, avsbench-ms3:PATH, avss:PATH, folder:PATH"
        )
    parts = rest.split(",") if rest else []
    options: dict[str, str] = {}
    while parts and _OPTION.match(parts[-1]):  # options come last; a path may itself contain commas
        key, _, value = parts.pop().partition("=")
        options[key] = value
    if parts and _OPTION.match(parts[0]) and kind in GENERATED:  # synthavs:bias=0.8 (no mode)
        key, _, value = parts.pop(0).partition("=")
        options[key] = value
    target = ",".join(parts)
    if kind not in GENERATED and not target:
        raise ValueError(f"data spec '{spec}' needs a path: {kind}:PATH")
    return DataSpec(kind, target, dict(reversed(list(options.items()))))


def build_dataset(
    spec: str | DataSpec,
    *,
    split: str,
    size: tuple[int, int],
    frames: int = 5,
    length: int = 1000,
    bias: float = 0.5,
    flip: float = 0.0,
    seed: int = 0,
) -> torch.utils.data.Dataset:
    """A dataset with a ``classes`` attribute (names, or None when the data has no class labels)."""
    s = parse_spec(spec) if isinstance(spec, str) else spec
    options = dict(s.options)
    split = options.pop("split", split)
    if s.kind in GENERATED:
        if s.target:
            options["mode"] = s.target
        k = int(options.pop("segment_frames", 1))
        media = "stamps" if s.kind == "stamps" else "synth"
        ds = synth_dataset(
            options, split=split, size=size, frames=frames, length=length, bias=bias, flip=flip, seed=seed, media=media
        )
        return ds.set_segment_frames(k)
    if options:
        raise ValueError(f"data spec {s.kind}:{s.target} takes only ',split=NAME'; got {sorted(options)}")
    if s.kind == "avsbench-s4":
        return S4Dataset(s.target, split=split, size=size, flip=flip)
    if s.kind == "avsbench-ms3":
        return MS3Dataset(s.target, split=split, size=size, flip=flip)
    if s.kind == "avss":
        return AVSSDataset(s.target, split=split, size=size, flip=flip)
    return FolderDataset(s.target, size=size, frames=frames, flip=flip)


def collate(samples: list[dict]) -> dict:
    """Stacks numpy samples into CPU tensors (images stay uint8: 4x less to move to the GPU)."""
    out = {"name": [s["name"] for s in samples]}
    for key in ("images", "audio", "masks", "semantic", "gt_valid", "labels", "label_valid"):
        out[key] = torch.from_numpy(np.stack([s[key] for s in samples]))
    if all("frame_times" in s for s in samples):  # capture times (s): where segments close
        out["frame_times"] = torch.from_numpy(np.stack([s["frame_times"] for s in samples]))
    return out


def prepare_batch(batch: dict, device: torch.device, num_concepts: int) -> dict[str, torch.Tensor]:
    """Moves a collated batch to the device in the dtypes TrainModule / evaluation expect.
    Label widths that do not match the model's K (data without class labels) become unknown."""
    nb = device.type == "cuda"
    images = batch["images"].to(device, non_blocking=nb).permute(0, 1, 4, 2, 3).float().div_(255.0)
    labels = batch["labels"].to(device, non_blocking=nb).float()
    label_valid = batch["label_valid"].to(device, non_blocking=nb)
    if labels.shape[-1] != num_concepts:
        labels = torch.zeros(*labels.shape[:2], num_concepts, device=device)
        label_valid = torch.zeros_like(label_valid)
    extra = {"frame_times": batch["frame_times"].float()} if "frame_times" in batch else {}  # stays on the CPU
    return {
        **extra,
        "images": images,
        "audio": batch["audio"].to(device, non_blocking=nb).float(),
        "masks": batch["masks"].to(device, non_blocking=nb).float(),
        "semantic": batch["semantic"].to(device, non_blocking=nb).long(),
        "gt_valid": batch["gt_valid"].to(device, non_blocking=nb),
        "labels": labels,
        "label_valid": label_valid,
    }


__all__ = [
    "KINDS",
    "AVSSDataset",
    "DataError",
    "DataSpec",
    "FolderDataset",
    "MS3Dataset",
    "S4Dataset",
    "SynthDataset",
    "build_dataset",
    "collate",
    "parse_spec",
    "prepare_batch",
]
