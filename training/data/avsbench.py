"""AVSBench S4 (Single-source) and MS3 (Multi-sources), read exactly as released.

S4  ROOT/s4_meta_data.csv (columns by position: 0 name, 1 start, 2 category, 3 split; also the
    named column ``split``), ROOT/s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png,
    audio_wav/{split}/{category}/{name}.wav, audio_log_mel/.../{name}.pkl,
    gt_masks/{split}/{category}/{name}/{name}_{k}.png. Train has only mask 1 (gt_valid = frame 1).
MS3 ROOT/ms3_meta_data.csv (column 0 name, column ``split``), ROOT/ms3_data/visual_frames/{name}/
    {name}.mp4_{1..5}.png (no split folder), audio_wav/{split}/{name}.wav, audio_log_mel/{split}/
    {name}.pkl, gt_masks/{split}/{name}/{name}_{1..5}.png (all five).
ROOT may be the folder holding the csv, or its parent holding Single-source/ or Multi-sources/.
Audio: the model takes raw samples, so the wav is required (see common.raw_audio_or_explain).
Labels: S4 labels every frame with the video's category (classes = the csv's categories,
sorted); MS3 ships no per-video class, so its labels are unknown (label_valid False).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch.utils.data

from .common import DataError, empty_sample, hflip, raw_audio_or_explain, read_binary_mask, read_image

SEGMENTS = 5


def _root(path: str | Path, csv_name: str, subfolder: str) -> Path:
    root = Path(path)
    for cand in (root, root / subfolder):
        if (cand / csv_name).is_file():
            return cand
    raise DataError(f"no {csv_name} in {root} or {root / subfolder}; point the spec at the AVSBench {subfolder} folder")


def read_meta(path: Path, need_cols: int) -> list[list[str]]:
    """Rows of an AVSBench csv as lists, with the split taken from the named ``split`` column."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "split" not in rows[0]:
        raise DataError(f"{path} has no header with a 'split' column (first row: {rows[0] if rows else 'empty file'})")
    split_col = rows[0].index("split")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < max(need_cols, split_col + 1):
            raise DataError(f"{path} line {i} has {len(row)} columns, expected at least {max(need_cols, split_col + 1)}")
        out.append([*row[:need_cols], row[split_col]])
    return out


class S4Dataset(torch.utils.data.Dataset):
    generated = False  # files on disk

    def __init__(self, root: str | Path, *, split: str, size: tuple[int, int], flip: float = 0.0) -> None:
        self.root = _root(root, "s4_meta_data.csv", "Single-source")
        rows = read_meta(self.root / "s4_meta_data.csv", 3)
        self.classes = sorted({r[2] for r in rows})
        self.items = [(r[0], r[2]) for r in rows if r[3] == split]
        if not self.items:
            raise DataError(f"{self.root / 's4_meta_data.csv'} lists no videos for split '{split}'")
        self.split, self.size, self.flip = split, tuple(size), flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        name, cat = self.items[index]
        d = self.root / "s4_data"
        s = empty_sample(name, SEGMENTS, self.size, len(self.classes))
        frame_dir = d / "visual_frames" / self.split / cat / name
        s["images"] = np.stack([read_image(frame_dir / f"{name}_{i}.png", self.size) for i in range(1, SEGMENTS + 1)])
        rel = Path(self.split) / cat / name
        s["audio"] = raw_audio_or_explain(d / "audio_wav" / f"{rel}.wav", d / "audio_log_mel" / f"{rel}.pkl", SEGMENTS)
        n_masks = 1 if self.split == "train" else SEGMENTS  # the release annotates only frame 1 in train
        for i in range(n_masks):
            s["masks"][i] = read_binary_mask(d / "gt_masks" / rel / f"{name}_{i + 1}.png", self.size)
            s["gt_valid"][i] = True
        k = self.classes.index(cat)
        s["semantic"] = s["masks"] * np.uint8(k + 1)
        s["labels"][:, k] = 1.0
        s["label_valid"][:] = True
        if self.flip and np.random.random() < self.flip:
            s = hflip(s)
        return s


class MS3Dataset(torch.utils.data.Dataset):
    generated = False  # files on disk

    def __init__(self, root: str | Path, *, split: str, size: tuple[int, int], flip: float = 0.0) -> None:
        self.root = _root(root, "ms3_meta_data.csv", "Multi-sources")
        rows = read_meta(self.root / "ms3_meta_data.csv", 1)
        self.items = [r[0] for r in rows if r[1] == split]
        if not self.items:
            raise DataError(f"{self.root / 'ms3_meta_data.csv'} lists no videos for split '{split}'")
        self.classes: list[str] | None = None  # MS3 has no per-video class labels
        self.split, self.size, self.flip = split, tuple(size), flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        name = self.items[index]
        d = self.root / "ms3_data"
        s = empty_sample(name, SEGMENTS, self.size, 0)
        frame_dir = d / "visual_frames" / name
        s["images"] = np.stack([read_image(frame_dir / f"{name}.mp4_{i}.png", self.size) for i in range(1, SEGMENTS + 1)])
        rel = Path(self.split) / name
        s["audio"] = raw_audio_or_explain(d / "audio_wav" / f"{rel}.wav", d / "audio_log_mel" / f"{rel}.pkl", SEGMENTS)
        for i in range(SEGMENTS):
            s["masks"][i] = read_binary_mask(d / "gt_masks" / rel / f"{name}_{i + 1}.png", self.size)
        s["gt_valid"][:] = True
        s["semantic"] = s["masks"].copy()
        if self.flip and np.random.random() < self.flip:
            s = hflip(s)
        return s
