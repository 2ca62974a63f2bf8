"""Your own videos: a folder of video files with mask PNGs beside them.

Layout (ROOT is what the spec ``folder:ROOT`` names):
    ROOT/videos/NAME.mp4            any container / codec PyAV reads, with an audio track
    ROOT/masks/NAME/{s}.png         optional: binary mask (any non-zero = sounding) of the frame
                                    that closes segment s (s = 1, 2, ... one per second)
    ROOT/labels.csv                 optional: lines "NAME,class" (the class heard in NAME); the
                                    class list is the sorted set of classes named there
Each video becomes clips of ``frames`` consecutive 1 s segments; for segment s the frame is the
last one before s seconds and the audio window ends at s seconds (as for AVSBench). Segments
without a mask file carry no ground truth (gt_valid False), so unannotated videos still serve
for evaluation-by-eye or semi-supervised use. Needs PyAV (installed with the project).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch.utils.data

from .common import SAMPLE_RATE, DataError, empty_sample, hflip, read_binary_mask, segment_windows

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")


def decode_video(path: Path) -> tuple[list[tuple[float, np.ndarray]], np.ndarray]:
    """(list of (time s, RGB frame)), mono 16 kHz float32 audio) of a video file."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise DataError("reading videos needs PyAV (pip install av)") from exc
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DataError(f"video {path} has no video stream")
            frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise DataError(f"video {path} has no audio track; AVS needs the sound")
            # FFmpeg's resampler does format, channel mix-down and rate in one go
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = [o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in resampler.resample(f)]
            chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise DataError(f"video {path} could not be decoded ({exc})") from exc
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return frames, audio


class FolderDataset(torch.utils.data.Dataset):
    generated = False  # files on disk

    def __init__(self, root: str | Path, *, size: tuple[int, int], frames: int = 5, flip: float = 0.0) -> None:
        self.root = Path(root)
        vids = self.root / "videos"
        if not vids.is_dir():
            raise DataError(f"folder dataset {self.root} has no videos/ subfolder (see training.data.folder for the layout)")
        self.videos = sorted(p for p in vids.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.videos:
            raise DataError(f"{vids} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
        self.labels: dict[str, str] = {}
        label_file = self.root / "labels.csv"
        if label_file.is_file():
            with open(label_file, newline="") as f:
                for i, row in enumerate(csv.reader(f), start=1):
                    if len(row) < 2:
                        raise DataError(f"{label_file} line {i}: expected 'NAME,class'")
                    self.labels[row[0]] = row[1]
        self.classes = sorted(set(self.labels.values())) or None
        self.size, self.frames, self.flip = tuple(size), frames, flip
        self._cache: dict[Path, tuple] = {}
        self.items = []  # (video, first segment) for every clip of `frames` segments
        for v in self.videos:
            seconds = self._decoded(v)[2]
            self.items += [(v, s) for s in range(0, max(seconds - frames + 1, 1), frames)]

    def _decoded(self, path: Path):
        if path not in self._cache:
            frames, audio = decode_video(path)
            seconds = max(int(len(audio) // SAMPLE_RATE), 1)
            self._cache = {path: (frames, audio, seconds)}  # one video at a time keeps memory flat
        return self._cache[path]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, first = self.items[index]
        frames, audio, seconds = self._decoded(path)
        name = path.stem
        k = len(self.classes) if self.classes else 0
        s = empty_sample(f"{name}@{first}", self.frames, self.size, k)
        times = np.array([t for t, _ in frames])
        windows = segment_windows(audio, first + self.frames)[first:]
        for j in range(self.frames):
            seg = first + j + 1  # segment number, 1-based like AVSBench file names
            if seg > seconds:
                break
            i = max(int(np.searchsorted(times, seg, side="left")) - 1, 0)  # last frame before seg seconds
            s["images"][j] = cv2.resize(frames[i][1], (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
            s["audio"][j] = windows[j]
            mask = self.root / "masks" / name / f"{seg}.png"
            if mask.is_file():
                s["masks"][j] = read_binary_mask(mask, self.size)
                s["gt_valid"][j] = True
        if self.classes and name in self.labels:
            s["labels"][:, self.classes.index(self.labels[name])] = 1.0
            s["label_valid"][:] = True
        s["semantic"] = s["masks"] * np.uint8(1)
        if self.flip and np.random.random() < self.flip:
            s = hflip(s)
        return s
