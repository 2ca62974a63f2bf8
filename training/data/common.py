"""What every reader returns, and the file helpers they share (errors always name the file).

A sample is a dict of numpy arrays for one clip of T frames (one per 1 s segment):
  images uint8 [T, H, W, 3] RGB; audio float32 [T, 15600] (the window ending at each segment's
  end, zero-padded before the start); masks uint8 [T, H, W] 0/1; semantic uint8 [T, H, W]
  (0 = background, k + 1 = class k); gt_valid bool [T] (frame has ground truth); labels float32
  [T, K] (heard classes); label_valid bool [T]; and "name" (str).
"""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np

from model.config import AUDIO_SAMPLES, SAMPLE_RATE  # noqa: F401  (the model owns the audio contract training uses)
from synthavs import audio_window

LOGMEL_SHAPE = (1, 96, 64)


class DataError(ValueError):
    """A data file is missing or malformed; the message names it and says what was expected."""


def need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"missing {what}: {path}")
    return path


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [H, W, 3] resized to size (H, W)."""
    img = cv2.imread(str(need(path, "frame")), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"frame {path} is not a readable image")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[:2] != tuple(size):
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return img


def read_binary_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W] 0/1 (any non-zero pixel is foreground, as AVSBench's PIL mode '1' load)."""
    m = cv2.imread(str(need(path, "mask")), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise DataError(f"mask {path} is not a readable image")
    if m.shape[:2] != tuple(size):
        m = cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return (m > 0).astype(np.uint8)


def read_wav(path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz from a PCM wav (stereo is averaged, other rates resampled)."""
    need(path, "audio wav")
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, n = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise DataError(f"audio {path} is not a PCM wav file ({exc}); convert it to 16-bit PCM") from exc
    if width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise DataError(f"audio {path}: {8 * width}-bit samples are not supported; use 16-bit PCM")
    x = x.reshape(-1, channels).mean(axis=1)
    return resample(x, rate)


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    """Linear-interpolation resampling to 16 kHz (AVSBench ships 16 kHz; this covers user files)."""
    if rate == SAMPLE_RATE or len(x) == 0:
        return x.astype(np.float32)
    n = int(round(len(x) * SAMPLE_RATE / rate))
    return np.interp(np.arange(n) * (rate / SAMPLE_RATE), np.arange(len(x)), x).astype(np.float32)


def segment_windows(audio: np.ndarray, segments: int) -> np.ndarray:
    """[segments, 15600]: for segment i, the window ending at (i + 1) s, zero-padded at the start."""
    return np.stack([audio_window(audio, (i + 1) * SAMPLE_RATE, AUDIO_SAMPLES) for i in range(segments)])


def read_logmel(path: Path) -> np.ndarray:
    """An AVSBench log-mel .pkl (torch.save of a [T, 1, 96, 64] tensor), loaded weights_only."""
    import torch

    need(path, "log-mel pkl")
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise DataError(f"log-mel {path} is not a torch-saved tensor ({exc})") from exc
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or tuple(t.shape[1:]) != LOGMEL_SHAPE:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise DataError(f"log-mel {path} holds {shape}, expected a tensor [T, 1, 96, 64]")
    return t.numpy().astype(np.float32)


def raw_audio_or_explain(wav: Path, pkl: Path | None, segments: int) -> np.ndarray:
    """Per-segment raw audio windows from the wav. Where only the log-mel .pkl exists, fail with
    the reason: the ICF model computes its VGGish log-mel in-graph from raw 16 kHz samples (the
    stream hands it samples), so a precomputed log-mel cannot be fed to it."""
    if wav.is_file():
        return segment_windows(read_wav(wav), segments)
    if pkl is not None and pkl.is_file():
        read_logmel(pkl)  # still validate it, so a broken file is reported as such
        raise DataError(
            f"only the log-mel {pkl} is present, the wav {wav} is missing; ICF takes raw 16 kHz samples "
            "(its VGGish front end runs inside the model), so put the released audio_wav files in place"
        )
    raise DataError(f"missing audio: neither {wav} nor {pkl or 'a log-mel pkl'} exists")


def empty_sample(name: str, frames: int, size: tuple[int, int], classes: int) -> dict:
    h, w = size
    return {
        "name": name,
        "images": np.zeros((frames, h, w, 3), np.uint8),
        "audio": np.zeros((frames, AUDIO_SAMPLES), np.float32),
        "masks": np.zeros((frames, h, w), np.uint8),
        "semantic": np.zeros((frames, h, w), np.uint8),
        "gt_valid": np.zeros(frames, bool),
        "labels": np.zeros((frames, classes), np.float32),
        "label_valid": np.zeros(frames, bool),
    }


def hflip(sample: dict) -> dict:
    for key in ("images", "masks", "semantic"):
        sample[key] = np.ascontiguousarray(sample[key][:, :, ::-1])
    return sample
