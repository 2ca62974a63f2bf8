"""``icf-train synth``: write SynthAVS clips to disk (AVSBench S4 / MS3 folders, or MP4 + masks).

The AVSBench layouts include the torch-saved log-mel .pkl files, computed here with the model's
own VGGish front end (model.logmel.LogMel) on the 0.96 s examples VGGish takes from a wav
(example k = samples [15360 k, 15360 k + 15600)), so the folders match the release file by file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.config import AUDIO_SAMPLES
from synthavs import SceneConfig, SceneGenerator
from synthavs.writers import write_avsbench, write_mp4

EXAMPLE_HOP = 15_360
EXAMPLE_LEN = AUDIO_SAMPLES  # one VGGish example, the model's audio window


def logmel_examples(audio: np.ndarray, segments: int = 5) -> torch.Tensor:
    """[segments, 1, 96, 64] VGGish log-mel examples of a 16 kHz clip (short clips: last one repeated)."""
    from model.logmel import LogMel

    n = max(1 + (len(audio) - EXAMPLE_LEN) // EXAMPLE_HOP, 1)
    starts = [min(k, n - 1) * EXAMPLE_HOP for k in range(segments)]
    padded = np.concatenate([audio, np.zeros(EXAMPLE_LEN, np.float32)])
    windows = torch.from_numpy(np.stack([padded[s : s + EXAMPLE_LEN] for s in starts]).astype(np.float32))
    with torch.no_grad():
        return LogMel()(windows)


def save_logmel(path: Path, audio: np.ndarray) -> None:
    torch.save(logmel_examples(audio), path)


def run_synth(
    out: str,
    *,
    fmt: str,
    mode: str,
    seed: int,
    count: int,
    bias: float = 0.5,
    width: int = 224,
    height: int = 224,
    fps: int = 30,
    seconds: int = 5,
    split: str | None = None,
    start: int = 0,
    progress: bool = False,
) -> Path:
    """Writes ``count`` clips into ``out``; ``progress`` draws a bar of clips written (stderr)."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc=f"synth {fmt}", unit="clip", dynamic_ncols=True, mininterval=0.5)
    try:
        return _write(out, fmt=fmt, mode=mode, seed=seed, count=count, bias=bias, width=width, height=height, fps=fps,
                      seconds=seconds, split=split, start=start, on_clip=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _write(out: str, *, fmt: str, mode: str, seed: int, count: int, bias: float, width: int, height: int, fps: int,
           seconds: int, split: str | None, start: int, on_clip) -> Path:
    if fmt in ("avsbench-s4", "avsbench-ms3"):
        gen = SceneGenerator(SceneConfig(width=224, height=224, fps=fps, mode=mode, bias=bias, seed=seed))
        layout = fmt.split("-")[1]
        return write_avsbench(gen, out, layout=layout, count=count, start=start, split=split, logmel_writer=save_logmel,
                              on_clip=on_clip)
    if fmt == "mp4":
        gen = SceneGenerator(SceneConfig(width=width, height=height, fps=fps, mode=mode, bias=bias, seed=seed))
        return write_mp4(gen, out, count=count, start=start, seconds=seconds, on_clip=on_clip)
    raise ValueError(f"unknown format '{fmt}'; use avsbench-s4, avsbench-ms3 or mp4")
