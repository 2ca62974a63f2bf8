"""What the sink does with a mask: overlay drawing, MP4 recording (PyAV), mask archive (npz),
JSONL metrics log and an on-screen window (only where a display exists)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from array import array
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.spec import SAMPLE_RATE

from .stage import warn

TINT = np.array([255, 0, 255], np.uint8)  # mask colour (RGB): magenta, far from every SynthAVS colour (green was one)


AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder emits before the first input sample (its initial_padding)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)  # others: resampled to 48 kHz


@lru_cache(maxsize=4)
def _tint(shape: tuple[int, ...]) -> np.ndarray:
    """A frame of the mask colour, made once per frame size (building it costs 1.6 ms at 640x480)."""
    return np.broadcast_to(TINT, shape).copy()


def render_overlay(image: np.ndarray, mask: np.ndarray | None, lines: list[str]) -> np.ndarray:
    """The frame with the mask tinted in, its outline, and text lines top-left. Returns RGB uint8."""
    out = np.array(image, copy=True)
    if mask is not None and mask.any():
        fg = (mask > 0).view(np.uint8) if mask.dtype == np.bool_ else (mask > 0).astype(np.uint8)
        blend = cv2.addWeighted(out, 0.45, _tint(out.shape), 0.55, 0)
        cv2.copyTo(blend, fg, out)  # only where the mask is set
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    if lines:  # text on a darkened band: readable on any background, and after H.264
        band = out[: 10 + 22 * len(lines)]
        band[:] = (band * 0.35).astype(np.uint8)
    y = 22
    for line in lines:
        cv2.putText(out, line, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        y += 22
    return out


def check_output(path: str | Path, inputs: tuple[str | Path | None, ...] = ()) -> str | None:
    """Why ``path`` cannot be an output (None if it can): checked before the run starts, so a bad
    path is not found at the first frame, and an output can never overwrite an input."""
    p = Path(path)
    if p.is_dir():
        return f"output '{p}' is a directory; give a file name"
    for src in inputs:
        if src and p.exists() and Path(src).exists() and os.path.samefile(p, src):
            return f"output '{p}' is the input file '{src}'; writing it would destroy the input"
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder of output '{p}': {exc.strerror or exc}"
    if not os.access(parent, os.W_OK):
        return f"cannot write output '{p}': folder '{parent}' is not writable"
    return None


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete: overlay.mp4 -> overlay.partial.mp4."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class Recorder:
    """MP4 (H.264 + AAC) of the overlay with the source's original audio. Video frames keep their
    stream time (variable frame rate: dropped frames leave the previous picture on screen); audio
    is written sample-exact from the audio chunks the source published.

    Crash safety: the file is fragmented MP4 (a fragment per keyframe, one every 2 s), written as
    ``NAME.partial.mp4`` and renamed to NAME when closed, so a killed sink leaves a playable
    partial file and never a broken file under the final name. NaN / Inf audio is replaced by
    silence; a frame of another size is scaled to the recording's size, odd or 1-pixel sizes padded."""

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, fps_hint: int = 30,
                 inputs: tuple[str | Path | None, ...] = (), source_audio: str | None = None) -> None:
        """``source_audio``: a media file whose audio track is copied in at its own rate and channels
        (a file source: the pipeline itself only carries 16 kHz mono for the model)."""
        import av

        self.av = av
        self.path = Path(path)
        why = check_output(self.path, inputs)
        if why:
            raise ValueError(why)
        self.partial = partial_path(self.path)
        self.rate = sample_rate
        self.layout = "mono"
        self.resampler = None
        self.fps_hint = fps_hint
        self.container = None
        self.video = None
        self.audio = None
        self.fifo = None
        self.size: tuple[int, int] | None = None  # (width, height) of the recording
        self.last_pts = -1
        self.audio_next = 0  # next sample index to encode (audio pts in samples)
        self.frames = 0
        self.pending_audio: list[tuple[int, np.ndarray]] = []
        self.audio_refused = 0
        self.resized = 0
        self.source_audio = source_audio
        self.priming = AAC_PRIMING
        self.original = None  # (container, decoded-frame iterator, start seconds) when copying the source's track

    def _start(self, width: int, height: int) -> None:
        av = self.av
        self.size = (width, height)
        self.container = av.open(str(self.partial), "w", format="mp4",
                                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"})
        self.video = self.container.add_stream("libx264", rate=self.fps_hint)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.time_base = Fraction(1, 1000)  # pts in ms of stream time
        self.video.codec_context.time_base = Fraction(1, 1000)
        # ultrafast + zerolatency: the encoder shares two cores with the model; a keyframe (and so
        # a fragment on disk) every 2 s bounds what a crash can lose
        self.video.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23", "g": str(2 * self.fps_hint)}
        self.fifo = av.AudioFifo()
        if self.source_audio and self._open_original():
            return
        self.audio = self.container.add_stream("aac", rate=self.rate, layout="mono")
        for first, samples in self.pending_audio:
            self.add_audio(first, samples)
        self.pending_audio.clear()

    def _open_original(self) -> bool:
        """The source file's audio track, resampled to an AAC rate and mono / stereo; False if it
        has none. Any container PyAV reads (.mp4, .ts, .mkv, .webm, .wav, ...) at any rate or layout."""
        try:
            src = self.av.open(str(self.source_audio))
        except (self.av.FFmpegError, OSError):
            return False
        if not src.streams.audio:
            src.close()
            return False
        a = src.streams.audio[0]
        rate = a.codec_context.sample_rate or SAMPLE_RATE
        self.rate = rate if rate in AAC_RATES else 48000
        self.layout = "mono" if (a.codec_context.channels or 1) == 1 else "stereo"
        self.audio = self.container.add_stream("aac", rate=self.rate, layout=self.layout)
        self.resampler = self.av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        start = float(src.start_time or 0) / 1e6  # the file's time zero is the stream's time zero
        self.original = (src, src.decode(a), start)
        self.pending_audio.clear()
        return True

    def _pump_original(self, until_s: float | None) -> None:
        """Encodes the source's audio up to ``until_s`` of stream time (None: to the end). Every
        decoded frame is resampled and rebuilt with its pts in samples (the file's own time base,
        e.g. 1/90000 in .ts, is not the encoder's), and NaN / Inf are replaced (they stop AAC)."""
        src, frames, start = self.original
        while until_s is None or self.audio_next < (until_s + 0.2) * self.rate:
            try:
                frame = next(frames)
            except (StopIteration, self.av.FFmpegError):
                return
            t = float(frame.pts * frame.time_base) - start if frame.pts is not None else self.audio_next / self.rate
            if t + frame.samples / (frame.sample_rate or self.rate) <= 0:
                continue
            frame.pts = None  # the resampler's clock is its own output count
            for out in self.resampler.resample(frame):
                self._queue_audio(out.to_ndarray())

    def _queue_audio(self, planes: np.ndarray) -> None:
        """[channels, samples] float at the recording's rate -> the encoder's FIFO, sanitised."""
        planes = np.clip(np.nan_to_num(np.asarray(planes, np.float32), nan=0.0, posinf=0.0, neginf=0.0), -1, 1)
        if planes.shape[-1] == 0:
            return
        frame = self.av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.time_base = Fraction(1, self.rate)
        frame.pts = self.audio_next
        self.audio_next += planes.shape[-1]
        self.fifo.write(frame)
        while self.fifo.samples >= 1024:  # AAC takes whole 1024-sample frames
            self._encode_audio(self.fifo.read(1024))

    def add_audio(self, first: int, samples: np.ndarray) -> None:
        if self.source_audio and self.original is not None:
            return  # the source's own track is copied instead of the model's 16 kHz mono
        samples = np.nan_to_num(np.asarray(samples, np.float32), nan=0.0, posinf=0.0, neginf=0.0)  # NaN stops AAC
        if self.container is None:  # the size of the picture is not known before the first frame
            self.pending_audio.append((first, np.clip(samples, -1, 1)))
            while sum(a.size for _, a in self.pending_audio) > 10 * self.rate:  # bounded: 10 s at most
                self.pending_audio.pop(0)
            return
        if first - self.audio_next > 10 * self.rate:  # not a lost chunk but a jump: refuse, never allocate for it
            self.audio_refused += 1
            return
        if first > self.audio_next:  # a hole (lost chunk): silence keeps audio and video in sync
            samples = np.concatenate([np.zeros(first - self.audio_next, np.float32), samples])
        elif first < self.audio_next:
            samples = samples[self.audio_next - first:]
        if samples.size == 0:
            return
        self._queue_audio(samples[None])

    def _encode_audio(self, frame) -> None:
        if self.priming > 0:
            # the AAC encoder puts 1024 samples of priming first, and this MP4 carries no edit list that
            # would tell a player to skip them: dropping the first 1024 source samples instead keeps every
            # later sample at its own time (measured: the sound was 64 ms late at 16 kHz without this)
            self.priming -= frame.samples
            return
        frame.sample_rate = self.rate
        for packet in self.audio.encode(frame):
            self.container.mux(packet)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """The picture at the recording's size: yuv420p needs even sides of at least 2 pixels."""
        h, w = image.shape[:2]
        if self.container is None:
            self._start(max(2, w + w % 2), max(2, h + h % 2))
        width, height = self.size
        if (w, h) == (width, height):
            return np.ascontiguousarray(image)
        if abs(w - width) <= 1 and abs(h - height) <= 1 and w <= width and h <= height:  # padding only
            return cv2.copyMakeBorder(np.ascontiguousarray(image), 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
        self.resized += 1  # the source changed size mid-stream
        return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)

    def add_frame(self, image: np.ndarray, pts_ns: int) -> None:
        image = self._fit(image)
        pts = pts_ns // 1_000_000
        if pts <= self.last_pts:
            return  # two frames in one ms cannot both be shown
        frame = self.av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = Fraction(1, 1000)
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.last_pts = pts
        self.frames += 1
        if self.original is not None:
            self._pump_original(pts / 1000)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for packet in self.video.encode():
                self.container.mux(packet)
            if self.original is not None:  # the track up to the last picture shown (+ one frame)
                self._pump_original(self.last_pts / 1000 + 1 / self.fps_hint - 0.2)
                self.original[0].close()
                for out in self.resampler.resample(None):  # what the resampler still holds
                    self._queue_audio(out.to_ndarray())
            rest = self.fifo.read()
            if rest is not None and rest.samples:
                self._encode_audio(rest)
            for packet in self.audio.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None
        os.replace(self.partial, self.path)  # only a complete recording gets the final name


class _Spool:
    """A temporary file of zlib-compressed uint8 arrays of one shape, written as they come and read
    back one chunk at a time: what it holds costs disk (a few KB per mask), never memory."""

    def __init__(self, folder: Path, name: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix=f".{name}.", suffix=".spool", dir=folder)
        self.file = os.fdopen(fd, "wb")
        self.z = zlib.compressobj(1)
        self.count = 0

    def add(self, array: np.ndarray) -> None:
        self.file.write(self.z.compress(np.ascontiguousarray(array, np.uint8).tobytes()))
        self.count += 1

    def chunks(self, size: int = 1 << 20):
        self.file.write(self.z.flush())
        self.file.close()
        d = zlib.decompressobj()
        with open(self.path, "rb") as f:
            while block := f.read(1 << 16):
                while block:  # masks compress ~100x: bound what one read may expand to
                    yield d.decompress(block, size)
                    block = d.unconsumed_tail
        yield d.flush()

    def remove(self) -> None:
        if not self.file.closed:
            self.file.close()
        Path(self.path).unlink(missing_ok=True)


class MaskStore:
    """Every delivered mask, written as it comes to a compressed spool beside the output, and at
    the end streamed into one npz: masks uint8 [N,H,W], seq, pts_ns, capture_ns (and gt uint8
    [N,H,W] when the source had it). Memory stays flat however long the run (the old store held
    every mask and unpacked them all at shutdown: 4.9 GB after 4 minutes). The npz is written under
    a temporary name and renamed when complete."""

    def __init__(self, path: str | Path, limit: int = 36_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit  # 20 min at 30 fps; beyond that masks are counted, not kept
        self.masks = _Spool(self.path.parent, self.path.name)
        self.gt: _Spool | None = None
        self.meta = array("q")  # seq, pts_ns, capture_ns per mask: 24 bytes each
        self.shape: tuple[int, int] | None = None
        self.overflow = 0
        self.gt_missing = False

    def add(self, seq: int, pts_ns: int, capture_ns: int, mask: np.ndarray, gt: np.ndarray | None) -> None:
        if self.shape is None:
            self.shape = mask.shape
        if self.masks.count >= self.limit or mask.shape != self.shape:
            self.overflow += 1
            return
        self.masks.add(mask)
        if gt is not None and gt.shape == self.shape and not self.gt_missing:
            if self.gt is None and self.masks.count == 1:
                self.gt = _Spool(self.path.parent, self.path.name + ".gt")
            if self.gt is not None:
                self.gt.add(gt > 0)
        else:
            self.gt_missing = True  # ground truth only when every mask has it
        self.meta.extend((seq, pts_ns, capture_ns))

    def close(self) -> None:
        try:
            if self.masks.count:
                self._write()
        finally:
            for spool in (self.masks, self.gt):
                if spool is not None:
                    spool.remove()

    def _write(self) -> None:
        n, (h, w) = self.masks.count, self.shape
        meta = np.frombuffer(self.meta, np.int64).reshape(n, 3)
        tmp = self.path.with_name(f".{self.path.name}.partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            members = [("masks", self.masks)] + ([("gt", self.gt)] if self.gt is not None and not self.gt_missing else [])
            for name, spool in members:
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (n, h, w)})
                    for chunk in spool.chunks():
                        f.write(chunk)
            for i, name in enumerate(("seq", "pts_ns", "capture_ns")):
                with zf.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(meta[:, i]))
        os.replace(tmp, self.path)


class MetricsLog:
    """One JSON object per delivered frame (seq, times, per-stage ms, concepts, IoU), then a final
    ``{"summary": ...}`` line. Line-buffered so a crash keeps everything written so far."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.file.close()


def display_available() -> str | None:
    """Why a window cannot be shown (None if it can)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY / WAYLAND_DISPLAY unset)"
    info = cv2.getBuildInformation()
    gui = next((ln for ln in info.splitlines() if ln.strip().startswith("GUI:")), "GUI: NONE")
    if "NONE" in gui.upper():
        return "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for a window"
    return None


class Display:
    """An OpenCV window showing the overlay; 'q' or Esc asks the pipeline to stop."""

    def __init__(self, title: str = "icf-stream") -> None:
        self.title = title
        self.ok = True

    def show(self, overlay_rgb: np.ndarray) -> bool:
        """False when the user asked to quit."""
        if not self.ok:
            return True
        try:
            cv2.imshow(self.title, cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR))
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            warn(f"display failed ({exc}); continuing without a window")
            self.ok = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.ok:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
