"""Offline prediction: images, videos or a folder of them in; predictions.json out, and per input:
- an image: ``<name>/000000_mask.png`` + ``000000_overlay.png``;
- a video: ``<name>/overlay.mp4`` (every frame, with the video's own audio, or ``--audio``'s) and
  ``<name>/masks.npz`` (all masks in one compressed file, as ``icf-stream run`` writes them); per-frame
  PNGs only when asked (``--png``: a 20 s clip is 600 PNG pairs, ~155 MB).
Every frame is processed (nothing is dropped, no real-time pacing), with the same per-frame compute as
the live workers (``WorkerCore``) and the same context rule. An image hears silence unless ``--audio FILE``
is given (it hears that file's first audio window, 0.975 s); ``--audio`` also replaces a video's own track. Inputs are
checked first: a file that cannot be decoded is skipped and reported, the others still run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stream.stages.context import ContextKeeper
from stream.stages.outputs import render_overlay
from stream.stages.sources import SAMPLE_RATE

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


def probe(path: Path) -> tuple[int | None, str | None]:
    """(frames, None) for an input that decodes (frames None when a video does not say how many),
    or (None, why) for one that does not: checked before the model loads."""
    import av
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        return (1, None) if cv2.imread(str(path), cv2.IMREAD_COLOR) is not None else (None, "cannot read this image")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None, "no video stream"
            v = c.streams.video[0]
            for _ in c.decode(v):  # the first picture decodes
                break
            else:
                return None, "no picture decodes (empty or truncated)"
            return (int(v.frames) or None), None
    except av.FFmpegError as exc:
        return None, f"cannot open ({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})"


def output_names(files: list[Path]) -> list[str]:
    """A folder name per input: its stem, with -2, -3 ... when two inputs share one (nothing is overwritten)."""
    names: list[str] = []
    for path in files:
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}-{n}"
        names.append(name)
    return names


def _window(audio: np.ndarray | None, end: int, n_audio: int) -> np.ndarray:
    """The model's audio window ending at sample ``end`` (silence before the track and without one)."""
    window = np.zeros(n_audio, np.float32)
    if audio is not None and end > 0:
        seg = audio[max(0, end - n_audio) : end]
        window[n_audio - seg.size :] = seg
    return window


def predict(files: list[Path], spec: dict[str, Any], out: Path, *, audio: Path | None = None, pngs: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Runs every frame of every input that decodes (see the module doc for what is written); returns the
    predictions.json doc: per frame file, output, index, pts_ms, hears, concepts, mask_area; and the
    inputs skipped, with why."""
    import av
    import cv2
    from tqdm import tqdm

    from stream.log import warn
    from stream.stages.outputs import MaskStore
    from stream.stages.recorder import Recorder
    from stream.stages.worker import WorkerCore

    checked = [(path, *probe(path)) for path in files]
    runnable = [(path, frames) for path, frames, why in checked if why is None]
    doc: dict[str, Any] = {"model": None, "audio": str(audio) if audio else None, "frames": [], "outputs": {},
                           "skipped": [{"file": str(path), "why": why} for path, _, why in checked if why is not None]}
    for item in doc["skipped"]:
        warn(f"skipping {item['file']}: {item['why']}")
    if not runnable:
        (out / "predictions.json").write_text(json.dumps(doc, indent=1) + "\n")
        return doc
    replacement = _audio(audio, 0.0) if audio else None
    core = WorkerCore(spec)
    geo, n_audio = core.geo, core.geo["audio_samples"]
    doc["model"] = core.model_id
    counts = [frames for _, frames in runnable]
    bar = tqdm(total=sum(counts) if all(counts) else None, desc="predict", unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for (path, _), name in zip(runnable, output_names([p for p, _ in runnable]), strict=True):
            frames, own_audio = media_frames(path)
            is_image = path.suffix.lower() in IMAGE_SUFFIXES
            track = replacement if audio else own_audio
            if is_image and audio is None:
                warn(f"{path} is an image: the model hears silence (give a sound with --audio FILE)")
            keeper = ContextKeeper.for_geometry(geo)
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            doc["outputs"][str(path)] = str(folder)
            video_out = None if is_image else (Recorder(folder / "overlay.mp4", source_audio=str(audio or path)),
                                               MaskStore(folder / "masks.npz", limit=1 << 40))
            i = -1
            try:
                for i, (pts, image) in enumerate(frames):
                    end = n_audio if is_image else int(round(pts * SAMPLE_RATE / 1e9))  # an image: the sound's first window
                    arrays = {"image": image, "audio": _window(track, end, n_audio)[None], **keeper.state_for(pts).as_inputs()}
                    extra, mask, (ft, st) = core.run(arrays, {})
                    keeper.record(pts, ft, st)
                    hears = extra.get("hears") or (extra["concepts"][0][0] if extra.get("concepts") else "")
                    overlay = render_overlay(image, mask, [f"hears: {hears}"])
                    if video_out is not None:
                        video_out[0].add_frame(overlay, pts)
                        video_out[1].add(i, pts, pts, mask, None)
                    if is_image or pngs:
                        cv2.imwrite(str(folder / f"{i:06d}_mask.png"), (mask > 0).astype(np.uint8) * 255)
                        cv2.imwrite(str(folder / f"{i:06d}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                    doc["frames"].append({"file": str(path), "output": str(folder), "index": i, "pts_ms": pts / 1e6,
                                          "hears": hears, "concepts": extra.get("concepts"), "mask_area": float((mask > 0).mean())})
                    bar.update(1)
            except (av.FFmpegError, ValueError) as exc:  # damaged past its first picture: keep what decoded, go on
                doc["skipped"].append({"file": str(path), "why": f"stopped after frame {i}: {exc}"})
                warn(f"{path}: stopped after frame {i}: {exc}")
            finally:
                if video_out is not None:
                    video_out[0].close()
                    video_out[1].close()
    finally:
        bar.close()
        core.close()
    (out / "predictions.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc
