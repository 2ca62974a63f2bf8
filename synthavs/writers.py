"""Writers: SynthAVS clips as AVSBench S4 / MS3 folders, or as MP4 + per-frame masks.

AVSBench layouts are written exactly as released (see the reference in shared/references):
S4  ``s4_meta_data.csv`` + ``s4_data/{visual_frames,audio_wav,audio_log_mel,gt_masks}/{split}/{category}/...``
MS3 ``ms3_meta_data.csv`` + ``ms3_data/visual_frames/{name}/{name}.mp4_{i}.png`` and
``ms3_data/{audio_wav,audio_log_mel,gt_masks}/{split}/...``.
The log-mel .pkl files are torch-saved tensors, so this torch-free package takes a callback for
them (``logmel_writer(pkl_path, audio)``; training.synth_to_disk passes one). Frame i of a clip is the
last video frame of segment i, so the audio window ending at the segment end matches it.

MP4: H.264 + AAC (16 kHz mono) through PyAV, with ``{name}.npz`` holding masks [T, H, W],
semantic [T, H, W], sounding [seconds, K], frame_times [T], fps; and a ``manifest.json``.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .config import CLASS_NAMES, SAMPLE_RATE, SceneConfig
from .scene import Clip, SceneGenerator

AVS_SIZE = 224  # AVSBench frames and masks are 224 x 224
AVS_SECONDS = 5  # and clips are 5 one-second segments
LogmelWriter = Callable[[Path, np.ndarray], None]


def default_split(index: int) -> str:
    """Deterministic 80 / 10 / 10 split by clip index."""
    r = index % 10
    return "train" if r < 8 else ("val" if r == 8 else "test")


def clip_name(seed: int, index: int) -> str:
    return f"synth{seed}_{index:06d}"


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono wav (what AVSBench ships)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def _avs_clip(gen: SceneGenerator, index: int) -> Clip:
    fps = gen.config.fps
    clip = gen.clip(index, seconds=AVS_SECONDS, frame_indices=[(s + 1) * fps - 1 for s in range(AVS_SECONDS)])
    if clip.frames.shape[1:3] != (AVS_SIZE, AVS_SIZE):
        clip.frames = np.stack([cv2.resize(f, (AVS_SIZE, AVS_SIZE), interpolation=cv2.INTER_AREA) for f in clip.frames])
        clip.masks = np.stack([cv2.resize(m, (AVS_SIZE, AVS_SIZE), interpolation=cv2.INTER_NEAREST) for m in clip.masks])
    return clip


def _category(clip: Clip) -> str:
    """S4 files every clip under one category: the class heard longest (silent clips: the first in view)."""
    counts = clip.sounding.sum(axis=0)
    k = int(np.argmax(counts)) if counts.any() else clip.classes_in_view[0]
    return CLASS_NAMES[k]


def write_avsbench(
    gen: SceneGenerator,
    out: str | Path,
    *,
    layout: str,
    count: int,
    start: int = 0,
    split: str | None = None,
    logmel_writer: LogmelWriter | None = None,
    on_clip: Callable[[], None] | None = None,
) -> Path:
    """Writes clips start .. start + count - 1 in the S4 (``layout="s4"``) or MS3 (``"ms3"``) layout.
    ``split`` None = 80/10/10 by index; ``on_clip`` is called after each clip (progress).
    Returns the dataset root (the folder holding the csv)."""
    if layout not in ("s4", "ms3"):
        raise ValueError(f"layout must be 's4' or 'ms3', not '{layout}'")
    root = Path(out)
    data = root / f"{layout}_data"
    rows = []
    for index in range(start, start + count):
        clip = _avs_clip(gen, index)
        name = clip_name(gen.config.seed, index)
        sp = split or default_split(index)
        if layout == "s4":
            cat = _category(clip)
            rel = Path(sp) / cat
            frame_dir = data / "visual_frames" / rel / name
            frame_paths = [frame_dir / f"{name}_{i + 1}.png" for i in range(AVS_SECONDS)]
            audio_rel = rel / name
            n_masks = 1 if sp == "train" else AVS_SECONDS  # S4 train annotates only the first frame
            rows.append(f"{name},0,{cat},{sp}")
        else:
            frame_dir = data / "visual_frames" / name
            frame_paths = [frame_dir / f"{name}.mp4_{i + 1}.png" for i in range(AVS_SECONDS)]
            audio_rel = Path(sp) / name
            n_masks = AVS_SECONDS
            rows.append(f"{name},{sp}")
        for path, frame in zip(frame_paths, clip.frames):
            _png(path, frame)
        mask_dir = data / "gt_masks" / audio_rel
        for i in range(n_masks):
            _png(mask_dir / f"{name}_{i + 1}.png", clip.masks[i] * 255)
        write_wav(data / "audio_wav" / audio_rel.with_suffix(".wav"), clip.audio)
        if logmel_writer is not None:
            pkl = data / "audio_log_mel" / audio_rel.with_suffix(".pkl")
            pkl.parent.mkdir(parents=True, exist_ok=True)
            logmel_writer(pkl, clip.audio)
        if on_clip is not None:
            on_clip()
    header = "name,start,category,split" if layout == "s4" else "name,split"
    csv = root / f"{layout}_meta_data.csv"
    root.mkdir(parents=True, exist_ok=True)
    csv.write_text("\n".join([header, *rows]) + "\n")
    (root / "synthavs.json").write_text(json.dumps({"config": gen.config.to_dict(), "start": start, "count": count}, indent=2))
    return root


def write_mp4(gen: SceneGenerator, out: str | Path, *, count: int, start: int = 0, seconds: int = 5,
              on_clip: Callable[[], None] | None = None) -> Path:
    """Writes ``{name}.mp4`` (H.264 + AAC) and ``{name}.npz`` (ground truth) per clip + manifest.json;
    ``on_clip`` is called after each clip (progress)."""
    import av  # lazily: only this writer needs PyAV

    cfg: SceneConfig = gen.config
    if cfg.width % 2 or cfg.height % 2:
        raise ValueError(f"H.264 with yuv420p needs an even frame size, got {cfg.width}x{cfg.height}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(start, start + count):
        clip = gen.clip(index, seconds=seconds)
        name = clip_name(cfg.seed, index)
        path = root / f"{name}.mp4"
        with av.open(str(path), "w") as container:
            video = container.add_stream("libx264", rate=cfg.fps)
            video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
            video.options = {"crf": "18", "preset": "veryfast"}
            audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            for frame in clip.frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(video.encode())
            step = 1024  # the AAC frame size
            for pos in range(0, len(clip.audio), step):
                chunk = clip.audio[pos : pos + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = SAMPLE_RATE, pos
                container.mux(audio.encode(af))
            container.mux(audio.encode())
        np.savez_compressed(
            root / f"{name}.npz",
            masks=clip.masks,
            semantic=clip.semantic,
            sounding=clip.sounding,
            frame_times=clip.frame_times,
            fps=np.int64(clip.fps),
            audio=clip.audio,  # the exact soundtrack: AAC is lossy and delays, so benchmarks read this
        )
        entries.append({"name": name, "index": index, "mode": clip.mode, "classes_in_view": list(clip.classes_in_view)})
        if on_clip is not None:
            on_clip()
    manifest = {"config": cfg.to_dict(), "seconds": seconds, "classes": CLASS_NAMES[: cfg.num_classes], "clips": entries}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root
