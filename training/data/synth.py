"""SynthAVS and the real-media scenes on the fly: every clip is generated in the DataLoader worker that asks for it.

Clip i of a split is SceneGenerator(seed = base seed + split offset).clip(i): train / val / test
never share a clip (a training seed must stay below 1000: ``_check_seed``). Each of the T frames is
the last video frame of its 1 s segment, and its audio window ends at the frame's capture time, as
live (``window_ends``; it reaches 1 / fps s back into the previous segment, as a live window does).
``stamps`` scenes (real photos + their recordings, synthavs.stamps) take the same options plus
``objects=seen|heldout``; their val / test splits use held-out background photos, and the train split
refuses the held-out objects.
"""

from __future__ import annotations

import numpy as np
import torch.utils.data

from synthavs import CLASS_NAMES, SceneConfig, SceneGenerator

from .common import AUDIO_SAMPLES, SAMPLE_RATE, hflip

SPLIT_SEED = {"train": 0, "val": 1000, "test": 2000}


def window_ends(frame_indices, fps: int) -> np.ndarray:
    """Audio-window end samples of frames at these stream indices: each window ends at its frame's
    capture time (index / fps), as a live stream's does (the one rule for training, eval and listening)."""
    return np.asarray(frame_indices, np.int64) * SAMPLE_RATE // fps


def _check_seed(seed: int, split: str) -> None:
    """The splits' generator seeds are base + SPLIT_SEED (0 / 1000 / 2000): a training seed of 1000 or
    more could be some validation or test generator's seed (and a negative val / test seed a training one)."""
    if seed < 0 or (split == "train" and seed >= SPLIT_SEED["val"]):
        raise ValueError(
            f"synthavs seed {seed} for split '{split}' could equal another split's generator seed "
            f"(splits are seed + {SPLIT_SEED}); use a seed in 0..{SPLIT_SEED['val'] - 1}"
        )


class SynthDataset(torch.utils.data.Dataset):
    generated = True  # every clip is made on demand: the trainer never repeats an index

    def __init__(self, scene: SceneConfig, *, frames: int, length: int, flip: float = 0.0, split: str = "train") -> None:
        self.scene = scene
        self.frames = frames
        self.length = length
        self.flip = flip
        self.split = split
        self.classes = class_names(scene)
        self._gen: SceneGenerator | None = None  # built lazily in each worker
        self.segment_frames = 1  # frames per 1 s segment (set_segment_frames)

    def set_segment_frames(self, k: int) -> SynthDataset:
        """k frames per second instead of one: frame j is the end of the j-th 1/k s slice, so the
        model's segments hold k frames, as a live stream's do (spec option ``segment_frames``)."""
        if k < 1 or self.scene.fps % k:
            raise ValueError(f"segment_frames={k} must be >= 1 and divide the clip fps ({self.scene.fps}); try 1, 2 or 5")
        self.segment_frames = k
        return self

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if self._gen is None:
            self._gen = SceneGenerator(self.scene)
        fps, k = self.scene.fps, self.segment_frames
        idx = [(j + 1) * (fps // k) - 1 for j in range(self.frames)]  # the last frame of each 1/k s slice
        seconds = -(-self.frames // k)
        clip = self._gen.clip(int(index), seconds=seconds, frame_indices=idx)
        ends = window_ends(idx, fps)
        padded = np.concatenate([np.zeros(AUDIO_SAMPLES, np.float32), clip.audio])  # silence before the start
        audio = np.stack([padded[e : e + AUDIO_SAMPLES] for e in ends])
        sounding = clip.sounding[np.asarray(idx) // fps]
        sample = {
            "name": f"synth{self.scene.seed}_{index:06d}",
            "images": clip.frames,
            "audio": audio.astype(np.float32),
            "masks": clip.masks,
            "semantic": clip.semantic,
            "gt_valid": np.ones(self.frames, bool),
            "labels": sounding.astype(np.float32),
            "label_valid": np.ones(self.frames, bool),
            "frame_times": (np.asarray(idx) / fps).astype(np.float32),  # seconds: the model's segment rule reads them
        }
        if self.flip > 0 and np.random.default_rng([self.scene.seed, int(index), 17]).random() < self.flip:
            sample = hflip(sample)
        return sample


def class_names(scene: SceneConfig) -> list[str]:
    """The scene's class names without loading any media (the stamps catalogue is a fixed list)."""
    if scene.media == "stamps":
        from synthavs.stamps import object_names

        return object_names(scene.objects)
    return CLASS_NAMES[: scene.num_classes]


def synth_dataset(
    options: dict,
    *,
    split: str,
    size: tuple[int, int],
    frames: int,
    length: int,
    bias: float,
    flip: float,
    seed: int,
    media: str = "synth",
):
    """Builds a SynthDataset from spec options (mode, bias, seed, split, clips, fps, snr, objects,
    priors, companion, offscreen, mix, swap). ``snr=clean`` (or inf) means no added noise; ``swap=P`` is the
    audio-swap augmentation (synthavs.swap), P in [0, 1]."""
    split = options.pop("split", split)
    if split not in SPLIT_SEED:
        raise ValueError(f"{'stamps' if media == 'stamps' else 'synthavs'} split '{split}' must be one of {list(SPLIT_SEED)}")
    extra = {}
    if media == "stamps":
        from synthavs.stamps import check_installed

        check_installed()  # one line naming the Debian package, before any worker starts
        objects = options.pop("objects", "seen")
        if objects not in ("seen", "heldout"):
            raise ValueError(f"stamps option objects={objects!r} must be seen or heldout")
        if split == "train" and objects == "heldout":
            raise ValueError("stamps: the held-out objects are never trained on; use objects=heldout with split=val or test")
        extra = {"media": "stamps", "objects": objects, "backgrounds": "train" if split == "train" else "heldout"}
    snr = options.pop("snr", None)
    if snr is not None:
        snr = float("inf") if str(snr).lower() in ("clean", "inf") else _float("snr", snr)
    scene = SceneConfig(
        width=size[1],
        height=size[0],
        fps=int(options.pop("fps", 10)),  # only the segment-end frames are rendered; fps sets their time
        mode=options.pop("mode", "mixed"),
        bias=float(options.pop("bias", bias)),
        conflict=_bool(options.pop("conflict", False)),
        snr_db=(float(snr), float(snr)) if snr is not None else (10.0, 30.0),
        max_objects=int(options.pop("max_objects", 3)),
        min_objects=int(options.pop("min_objects", 1)),
        priors=_bool(options.pop("priors", False)),
        companion_prob=_float("companion", options.pop("companion", 0.7)),
        offscreen=_bool(options.pop("offscreen", True)),
        mix=_float("mix", options.pop("mix", 0.0)),
        swap=_float("swap", options.pop("swap", 0.0)),
        seed=_seed(int(options.pop("seed", seed)), split) + SPLIT_SEED[split],
        **extra,
    )
    length = int(options.pop("clips", length))
    if options:
        raise ValueError(
            f"unknown {'stamps' if media == 'stamps' else 'synthavs'} spec option(s) {sorted(options)}; "
            "known: mode, bias, conflict, seed, split, clips, fps, snr, "
            "max_objects, min_objects, priors, companion, offscreen, mix, swap, segment_frames"
            + (", objects" if media == "stamps" else "")
        )
    return SynthDataset(scene, frames=frames, length=length, flip=flip if split == "train" else 0.0, split=split)


def _seed(seed: int, split: str) -> int:
    _check_seed(seed, split)
    return seed


def _float(key: str, v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"synthavs spec option {key}={v!r} wants a number, e.g. {key}=0.25") from None


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
