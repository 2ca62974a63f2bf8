"""The one-line Python API: a frame (and the newest audio) in, the sounding mask out.

    from stream import Segmenter
    seg = Segmenter()                                   # the shipped weights (or "model.onnx", ".pt2", ".plan")
    result = seg(frame_rgb, audio, sample_rate=48000)   # HxWx3 uint8 RGB of any size; audio mono or stereo
    result.mask, result.hears, result.scores            # mask [H, W] at the frame's size
    for result in seg.clip("clip.mp4"): ...             # every frame of a video file, with its own audio

The per-frame compute is the stream's own (stream.stages.worker.WorkerCore: the same resize, backend
step, mask upsample and "hears" verdict) and the rolling text context is kept by the stream's
keeper (stream.stages.context.ContextKeeper, which applies engine.state's ring rule), so a Segmenter fed
the frames a pipeline processed gives the pipeline's masks (tests/stream/test_api.py checks it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.stages.context import ContextKeeper
from stream.stages.sources import SAMPLE_RATE

ARTIFACTS = (".safetensors", ".onnx", ".pt2", ".plan", ".engine", ".ep")


@dataclass(frozen=True)
class Segmentation:
    """One frame's answer."""

    mask: np.ndarray  # [H, W] uint8 at the frame's size: 1 = sounding (a class index for semantic models)
    hears: str  # a concept name, "nothing" or "unsure" (stream/stages/hearing.py's calibrated rule)
    scores: dict[str, float]  # every concept's probability (softmax of the concept head), best first
    pts_s: float  # the frame's time on the Segmenter's clock (seconds since its first frame, or the clip's pts)

    @property
    def concepts(self) -> list[tuple[str, float]]:
        """The three most likely concepts, best first."""
        return list(self.scores.items())[:3]

    @property
    def mask_area(self) -> float:
        """Share of the frame the mask covers."""
        return float(np.count_nonzero(self.mask)) / max(self.mask.size, 1)


def _artifact_spec(model: str | Path | None, backend: str, threads: int | None) -> dict[str, Any]:
    """The engine spec for ``model`` (None: the shipped weights); a checkpoint on the CPU path is
    exported to ONNX once (cached, in a child process) exactly as ``icf-stream`` does."""
    from stream.stages.models import export_cached

    if model is None:
        from weights import SHIPPED

        model = SHIPPED
    path = Path(model)
    if path.suffix not in ARTIFACTS:
        raise ValueError(f"{path}: not a model artifact; give one of {', '.join(ARTIFACTS)}")
    if not path.is_file():
        raise FileNotFoundError(f"model {path} not found")
    artifact = str(path)
    if path.suffix == ".safetensors" and backend in ("auto", "onnxruntime"):
        artifact = str(export_cached(weights=artifact, cache_dir=None))
    options = {"threads": threads} if threads and backend in ("auto", "onnxruntime", "torch") else {}
    return {"kind": "engine", "artifact": artifact, "backend": backend, "options": options}


def _mono(audio: np.ndarray) -> np.ndarray:
    """[N], [N, C] or [C, N] (C <= 8 channels) -> [N] float32, channels averaged."""
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=0 if a.shape[0] <= 8 and a.shape[1] > 8 else 1)
    elif a.ndim != 1:
        raise ValueError(f"audio must be [samples] or [samples, channels], not shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):  # PCM: scale to [-1, 1]
        a = a / float(np.iinfo(a.dtype).max)
    return np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _resample(a: np.ndarray, rate: int) -> np.ndarray:
    """To 16 kHz: box low-pass when going down (no aliasing of what lies above 8 kHz), then linear."""
    if rate == SAMPLE_RATE or a.size == 0:
        return a
    if rate > SAMPLE_RATE:
        k = int(round(rate / SAMPLE_RATE))
        if k > 1:
            a = np.convolve(a, np.full(k, 1 / k, np.float32), mode="same")
    n = int(round(a.size * SAMPLE_RATE / rate))
    return np.interp(np.arange(n) * (rate / SAMPLE_RATE), np.arange(a.size), a).astype(np.float32)


class Segmenter:
    """Loads a model once and segments frames in order, keeping the rolling text context and the
    last second of audio itself.

    ``model``: a .safetensors checkpoint, .onnx (+ sidecar), .pt2 or .plan (default: the shipped
    weights); ``backend``: auto | onnxruntime | torch | tensorrt | aotinductor; ``threads``: intra-op
    threads; ``resize``: fast | area (stream/stages/resize.py)."""

    def __init__(self, model: str | Path | None = None, *, backend: str = "auto", threads: int | None = None,
                 resize: str = "fast") -> None:
        from stream.stages.worker import WorkerCore

        spec = _artifact_spec(model, backend, threads)
        self.core = WorkerCore({**spec, "resize": resize}, top_k=10**6)  # every concept's score
        self.geo = self.core.geo
        self.model = self.core.model_id
        self.concepts = list(self.core.names)
        self.reset()

    def reset(self) -> None:
        """Forget the context and the audio: the next frame starts a new stream."""
        g = self.geo
        self.keeper = ContextKeeper.for_geometry(g)
        self.audio = np.zeros(g["audio_samples"], np.float32)  # the newest window, 16 kHz mono
        self.t0: int | None = None
        self.last_pts: int | None = None

    def add_audio(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Appends the newest samples (any rate, mono or stereo) to the audio window."""
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
            raise ValueError(f"sample_rate {sample_rate!r}: give the audio's rate in Hz (e.g. 16000, 44100, 48000)")
        new = _resample(_mono(audio), int(sample_rate))
        n = self.audio.size
        self.audio = np.concatenate([self.audio, new])[-n:] if new.size < n else new[-n:].copy()

    def __call__(self, frame: np.ndarray, audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE,
                 t: float | None = None) -> Segmentation:
        """Segments ``frame`` (HxWx3 uint8 RGB) hearing the audio window that ends now; ``audio``:
        the samples that arrived since the last call (appended first). ``t``: the frame's time in
        seconds (default: the wall clock since the first frame); it drives the context's clock."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 2:
            raise ValueError(f"frame must be an HxWx3 uint8 RGB array, not {frame.dtype} {frame.shape} "
                             "(from OpenCV: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))")
        if audio is not None:
            self.add_audio(audio, sample_rate)
        if t is None:
            now = time.monotonic_ns()
            self.t0 = now if self.t0 is None else self.t0
            pts = now - self.t0
        else:
            pts = int(round(float(t) * 1e9))
        if self.last_pts is not None and pts <= self.last_pts:
            raise ValueError(f"frame time {pts / 1e9:.3f} s is not after the previous frame's {self.last_pts / 1e9:.3f} s "
                             "(call reset() to start a new stream)")
        arrays = {"image": np.ascontiguousarray(frame), "audio": self.audio[None], **self.keeper.state_for(pts).as_inputs()}
        extra, mask, (ft, st) = self.core.run(arrays, {})
        self.keeper.record(pts, ft, st)
        self.last_pts = pts
        return Segmentation(mask=mask, hears=extra["hears"], scores={n: p for n, p in extra["concepts"]}, pts_s=pts / 1e9)

    def clip(self, path: str | Path) -> Iterator[Segmentation]:
        """Every frame of a video file (or one image), each hearing the file's own audio up to its time."""
        from stream.cli.predict import media_frames

        self.reset()
        frames, audio = media_frames(Path(path))
        n = self.geo["audio_samples"]
        for pts, image in frames:
            end = int(round(pts * SAMPLE_RATE / 1e9))
            window = np.zeros(n, np.float32)
            if audio is not None and end > 0:
                seg = audio[max(0, end - n): end]
                window[n - seg.size:] = seg
            self.audio = window
            yield self(image, t=pts / 1e9)

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
