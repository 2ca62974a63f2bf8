"""AVSBench-semantic (AVSS), read exactly as released.

ROOT/metadata.csv (columns vid, uid, s_min, s_sec, a_obj, split, label; label in v1s / v1m / v2),
ROOT/label2idx.json (71 classes: background + 70), and per clip ROOT/{label}/{uid}/frames/{i}.jpg,
ROOT/{label}/{uid}/audio.wav and ROOT/{label}/{uid}/labels_rgb/{i}.png (i from 0) colour masks
in the VOC palette (colour of class j = VOC colour j, class j from label2idx.json).
Clips are padded to 10 frames: v1s / v1m have 5 (frames 5..9 zero), v2 has 10. gt_valid is the
official ground-truth flag: v1s -> frame 0 only, v1m -> frames 0..4, v2 -> all 10.
classes (the model's K concepts) are label2idx's names in index order without background, so
semantic id j is class j - 1 and channel j of a K + 1 head.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import torch.utils.data

from .common import DataError, empty_sample, hflip, need, raw_audio_or_explain, read_image

FRAMES = 10
GT_FLAGS = {"v1s": 1, "v1m": 5, "v2": 10}  # frames carrying ground truth (from the start)
VIDEO_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}


def voc_palette(n: int) -> np.ndarray:
    """The VOC colour map [n, 3] (RGB): bits of the class id spread over the three channels."""
    pal = np.zeros((n, 3), np.int64)
    for j in range(n):
        lab, i = j, 0
        while lab > 0:
            for c in range(3):
                pal[j, c] |= ((lab >> c) & 1) << (7 - i)
            i += 1
            lab >>= 3
    return pal


def colour_to_ids(rgb: np.ndarray, palette: np.ndarray, path: Path) -> np.ndarray:
    """[H, W, 3] RGB palette image -> [H, W] class ids; an unknown colour is an error naming the file."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_code = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(pal_code)
    pos = np.clip(np.searchsorted(pal_code[order], code), 0, len(order) - 1)
    ids = order[pos]
    bad = pal_code[ids] != code
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise DataError(f"mask {path}: colour {tuple(rgb[y, x])} at ({y}, {x}) is not in the {len(palette)}-class VOC palette")
    return ids.astype(np.uint8)


class AVSSDataset(torch.utils.data.Dataset):
    generated = False  # files on disk

    def __init__(self, root: str | Path, *, split: str, size: tuple[int, int], flip: float = 0.0) -> None:
        self.root = Path(root)
        meta = need(self.root / "metadata.csv", "AVSS metadata.csv")
        label_file = need(self.root / "label2idx.json", "AVSS label2idx.json")
        try:
            label2idx = json.loads(label_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{label_file} is not valid JSON ({exc})") from exc
        names = sorted(label2idx, key=label2idx.get)
        if [label2idx[n] for n in names] != list(range(len(names))):
            raise DataError(f"{label_file}: indices must be 0..{len(names) - 1} (0 = background)")
        self.classes = names[1:]
        self.palette = voc_palette(len(names))
        with open(meta, newline="") as f:
            rows = list(csv.DictReader(f))
        missing = {"uid", "split", "label"} - set(rows[0] if rows else {})
        if missing:
            raise DataError(f"{meta} lacks column(s) {sorted(missing)}")
        self.items = [(r["uid"], r["label"]) for r in rows if r["split"] == split]
        if not self.items:
            raise DataError(f"{meta} lists no clips for split '{split}'")
        bad = sorted({lab for _, lab in self.items} - set(GT_FLAGS))
        if bad:
            raise DataError(f"{meta}: label(s) {bad} are not v1s / v1m / v2")
        self.split, self.size, self.flip = split, tuple(size), flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        uid, label = self.items[index]
        clip = self.root / label / uid
        s = empty_sample(uid, FRAMES, self.size, len(self.classes))
        n = VIDEO_FRAMES[label]
        s["images"][:n] = np.stack([read_image(clip / "frames" / f"{i}.jpg", self.size) for i in range(n)])
        s["audio"][:n] = raw_audio_or_explain(clip / "audio.wav", None, n)
        for i in range(GT_FLAGS[label]):
            path = need(clip / "labels_rgb" / f"{i}.png", "AVSS colour mask")
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"mask {path} is not a readable image")
            ids = colour_to_ids(bgr[..., ::-1], self.palette, path)
            if ids.shape != self.size:
                ids = cv2.resize(ids, (self.size[1], self.size[0]), interpolation=cv2.INTER_NEAREST)
            s["semantic"][i] = ids
            s["masks"][i] = ids > 0
            present = np.unique(ids)
            s["labels"][i, present[present > 0] - 1] = 1.0
            s["gt_valid"][i] = s["label_valid"][i] = True
        if self.flip and np.random.random() < self.flip:
            s = hflip(s)
        return s
