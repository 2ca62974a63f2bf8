"""Offline prediction: images, videos or a folder of them in; per frame a PNG mask and a PNG overlay,
and one predictions.json, out. Every frame is processed (nothing is dropped, no real-time pacing),
with the same per-frame compute as the live workers (``WorkerCore``) and the same context rule.

An image is one frame with silence (there is no sound to hear); a video is run frame by frame with
the audio window that ends at each frame's time, from its own track (or silence when it has none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .context import ContextKeeper
from .outputs import render_overlay
from .sources import SAMPLE_RATE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts")


def collect(inputs: list[str]) -> list[Path]:
    """Files to run, in order; a folder contributes its images and videos sorted by name."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise ValueError(f"{p}: not an image ({', '.join(IMAGE_SUFFIXES)}) or video ({', '.join(VIDEO_SUFFIXES)})")
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} not found")
    if not found:
        raise ValueError(f"no images or videos in {' '.join(inputs)}")
    return found


def _audio(path: Path, video_start: float) -> np.ndarray | None:
    """The file's audio as 16 kHz mono float32 on the pictures' timeline (sample 0 = first picture)."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        rs = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks, start = [], None
        for f in c.decode(audio=0):
            start = float(f.time or 0) if start is None else start
            chunks += [x.to_ndarray().reshape(-1) for x in rs.resample(f)]
        chunks += [x.to_ndarray().reshape(-1) for x in rs.resample(None)]
    if not chunks:
        return None
    audio = np.concatenate(chunks).astype(np.float32)
    shift = int(round(((start or 0.0) - video_start) * SAMPLE_RATE))
    return np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]


def media_frames(path: Path):
    """(frames: iterator of (pts_ns, RGB uint8), audio: 16 kHz mono float32 or None). Videos are decoded
    lazily (a long video is never held in memory; its audio track, 64 kB per second, is)."""
    import av
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot read this image")
        return iter([(0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))]), None
    try:
        c = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: cannot open ({exc})") from None
    if not c.streams.video:
        c.close()
        raise ValueError(f"{path}: no video stream")
    v = c.streams.video[0]
    t0 = float(v.start_time * v.time_base) if v.start_time is not None else 0.0

    def frames():
        with c:
            for n, f in enumerate(c.decode(video=0)):
                t = float(f.time) if f.time is not None else t0 + n / 30
                yield int(round((t - t0) * 1e9)), f.to_ndarray(format="rgb24")

    return frames(), _audio(path, t0)


def predict(files: list[Path], spec: dict[str, Any], out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Runs every frame of every file; writes out/<stem>/<i>_mask.png, <i>_overlay.png and
    out/predictions.json (per frame: file, index, pts_ms, hears, concepts, mask_area). Returns that doc."""
    import cv2
    from tqdm import tqdm

    from .worker import WorkerCore

    core = WorkerCore(spec)
    geo, n_audio = core.geo, core.geo["audio_samples"]
    doc: dict[str, Any] = {"model": core.model_id, "frames": []}
    bar = tqdm(total=len(files), desc="predict", unit="file", disable=not progress, dynamic_ncols=True)
    try:
        for path in files:
            frames, audio = media_frames(path)
            keeper = ContextKeeper(geo["width"], geo["frame_ring"], geo["segment_ring"], ring_rate=geo["ring_rate"])
            folder = out / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            for i, (pts, image) in enumerate(frames):
                end = int(round(pts * SAMPLE_RATE / 1e9))
                window = np.zeros(n_audio, np.float32)
                if audio is not None and end > 0:
                    seg = audio[max(0, end - n_audio) : end]
                    window[n_audio - seg.size :] = seg
                arrays = {"image": image, "audio": window[None], **keeper.state_for(pts).as_inputs()}
                extra, mask, (ft, st) = core.run(arrays, {})
                keeper.record(pts, ft, st)
                hears = extra.get("hears") or (extra["concepts"][0][0] if extra.get("concepts") else "")
                overlay = render_overlay(image, mask, [f"hears: {hears}"])
                cv2.imwrite(str(folder / f"{i:06d}_mask.png"), (mask > 0).astype(np.uint8) * 255)
                cv2.imwrite(str(folder / f"{i:06d}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                doc["frames"].append({"file": str(path), "index": i, "pts_ms": pts / 1e6, "hears": hears,
                                      "concepts": extra.get("concepts"), "mask_area": float((mask > 0).mean())})
            bar.update(1)
    finally:
        bar.close()
        core.close()
    (out / "predictions.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc
