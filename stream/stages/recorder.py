"""The MP4 recording of the overlay (H.264 + AAC, PyAV), with the source's own audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.spec import SAMPLE_RATE
from stream.stages.outputs import check_output, finish_staged, output_error, partial_path

AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder emits before the first input sample (its initial_padding)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)  # others: resampled to 48 kHz


class Recorder:
    """MP4 (H.264 + AAC) of the overlay with the source's original audio. Video frames keep their
    stream time (variable frame rate: dropped frames leave the previous picture on screen); audio
    is written sample-exact from the audio chunks the source published.

    Crash safety: the file is fragmented MP4 (a fragment per keyframe, one every 2 s), written as
    ``NAME.partial.mp4`` and staged when closed (stream/stages/outputs.py: commit_outputs gives it its
    name), so a killed sink leaves a playable partial file and never a broken file under the final
    name. A write that fails (a full disk) marks the recording broken: it is removed at close,
    never renamed, and the error names the path and the free space. NaN / Inf audio is replaced by
    silence; a frame of another size is scaled to the recording's size, odd or 1-pixel sizes padded."""

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, fps_hint: int = 30,
                 inputs: tuple[str | Path | None, ...] = (), source_audio: str | None = None, staged: bool = False) -> None:
        """``source_audio``: a media file whose audio track is copied in at its own rate and channels
        (a file source: the pipeline itself only carries 16 kHz mono for the model)."""
        import av

        self.av = av
        self.path = Path(path)
        why = check_output(self.path, inputs)
        if why:
            raise ValueError(why)
        self.partial = partial_path(self.path)
        self.staged = staged  # close() stages the file for outputs.commit_outputs instead of naming it
        self.rate = sample_rate
        self.layout = "mono"
        self.resampler = None
        self.fps_hint = fps_hint
        self.container = None
        self.file = None  # the partial file, written through Python (see _start)
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
        self.broken: BaseException | None = None  # a write failed: the file is incomplete, never renamed

    def _start(self, width: int, height: int) -> None:
        av = self.av
        self.size = (width, height)
        # through a Python file: FFmpeg's own file writer drops a failed write (a full disk) without a
        # word, and the truncated file looked complete; a Python write raises, and PyAV passes it on
        self.file = open(self.partial, "wb", buffering=0)
        self.container = av.open(self.file, "w", format="mp4",
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
        self._mux(self.audio.encode(frame))

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
        self._mux(self.video.encode(frame))
        self.last_pts = pts
        self.frames += 1
        if self.original is not None:
            self._pump_original(pts / 1000)

    def _mux(self, packets) -> None:
        if self.broken is not None:
            return  # nothing more goes into a file that will be removed
        try:
            for packet in packets:
                self.container.mux(packet)
        except (OSError, self.av.FFmpegError) as exc:
            self.broken = exc
            raise output_error(self.path, exc) from exc

    def close(self) -> None:
        if self.container is None:
            return
        if self.broken is not None:
            self._discard()
            raise output_error(self.path, self.broken)
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
        except Exception as exc:
            self._discard()
            raise output_error(self.path, exc) from exc
        try:
            self.container.close()
            self.file.close()
        except Exception as exc:  # the last fragment did not reach the disk
            self.container = None
            self._discard()
            raise output_error(self.path, exc) from exc
        self.container = None
        finish_staged(self.partial, self.path, self.staged)  # only a complete recording is ever renamed

    def _discard(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - already failing: the file goes anyway
                pass
            self.container = None
        if self.file is not None:
            self.file.close()
        self.partial.unlink(missing_ok=True)


__all__ = ["Recorder"]
