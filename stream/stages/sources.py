"""Media sources: a video file (PyAV) and the live synthetic SynthAVS scene. Camera and microphone
live in stream/stages/live.py. All of them publish through AVOutput, so the wire is the same.

Timing: ``pts_ns`` is the position in the stream's own timeline (frame i of a 30 fps stream is
at i / 30 s; audio sample n at n / 16000 s), used to cut the audio window and to close 1 s
segments. ``capture_ns`` is CLOCK_MONOTONIC when the frame entered the pipeline, the start of
every latency. For live sources the two differ only by the stream's start time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from engine.spec import SAMPLE_RATE
from stream.log import warn
from stream.stages.metrics import Histogram
from stream.stages.options import FileOptions, SourceOptions, SyntheticOptions
from stream.stages.stage import Stage, StageEnv, StageError, sleep_until
from stream.wire.protocol import MAX_HEADER_BYTES, MIN_SIDE, encode
from stream.wire.shm_link import ShmSender
from stream.wire.subscriptions import SubscriptionGate
from stream.wire.transport import close_socket, open_socket, stamp, wait_subscribers

AUDIO_AHEAD_NS = 50_000_000  # recorded media: audio is published this far ahead of the frame just sent
DEFAULT_STEP_NS = 33_333_333  # the frame step assumed when the timeline goes back before a step was seen


def _why(exc: Exception) -> str:
    """FFmpeg's words without its raw error number ("[Errno 1094995529] ...") or a repeated path."""
    return getattr(exc, "strerror", None) or str(exc)


def frame_refusal(image: np.ndarray, max_bytes: int, extra_bytes: int = 0) -> str | None:
    """Why a picture cannot travel (None if it can): say so at once instead of every frame being
    dropped downstream while the run ends "successfully" having processed nothing."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"frames of {w}x{h} pixels are too small (at least {MIN_SIDE}x{MIN_SIDE}); scale the video up"
    if image.nbytes + extra_bytes + MAX_HEADER_BYTES > max_bytes:
        return (f"frames of {w}x{h} are {image.nbytes / 2**20:.0f} MiB, over the {max_bytes >> 20} MiB message limit; "
                f"scale the video down first (e.g. ffmpeg -i IN -vf scale=1920:-2 OUT)")
    return None


class AVOutput:
    """The publishing end of a source: XPUB sockets for video and audio (separate, so a burst of
    frames can never push audio out of a queue), sequence numbers, stamps and EOS."""

    def __init__(self, ctx: zmq.Context, env: StageEnv, *, video: bool = True, audio: bool = True) -> None:
        self.env = env
        self.stream = env.stream_id
        self.video = open_socket(ctx, zmq.XPUB, env.endpoints, "video", bind=True) if video else None
        # audio chunks are small; a deep queue costs little and keeps the ring gap-free
        self.audio = open_socket(ctx, zmq.XPUB, env.endpoints, "audio", bind=True, hwm=1000, frames=False) if audio else None
        self.gates = {sock: SubscriptionGate(sock) for sock in (self.video, self.audio) if sock is not None}
        self.video_seq = 0
        self.audio_seq = 0
        self.audio_samples = 0
        shm = env.endpoints.extra.get("shm")  # same-host links: frames through a shared-memory ring
        self.shm = ShmSender(shm) if video and shm else None

    def wait_ready(self, video_subs: int, audio_subs: int, timeout_s: float = 10.0) -> None:
        """Waits for ``go`` (every stage open), then for the subscribers to be connected, so frame 0
        is not published to nobody (a SUB connects asynchronously)."""
        while not self.env.go.wait(0.05):
            if self.env.abort.is_set() or self.env.stop.is_set():
                return
        for sock, n in ((self.video, video_subs), (self.audio, audio_subs)):
            if sock is not None and n:
                got = wait_subscribers(self.gates[sock], n, timeout_s, self.env.abort)
                if got < n and not self.env.abort.is_set():
                    warn(f"only {got} of {n} subscribers joined {sock.getsockopt(zmq.LAST_ENDPOINT).decode()}")

    def frame(self, image: np.ndarray, *, pts_ns: int, capture_ns: int, extras: dict[str, np.ndarray] | None = None) -> int:
        why = frame_refusal(image, self.env.endpoints.max_bytes, sum(a.nbytes for a in (extras or {}).values()))
        if why:
            raise StageError(why)
        seq = self.video_seq
        self.video_seq += 1
        arrays = {"image": image, **(extras or {})}
        head = {"stream": self.stream, "seq": seq, "capture_ns": capture_ns, "pts_ns": int(pts_ns), "format": "rgb24",
                "t": {"capture": capture_ns, "src_send": stamp()}}
        if self.shm is not None:
            head, arrays = self.shm.pack(head, arrays)
        # PUB never blocks: at the high-water mark the message is dropped and the receiver sees
        # the gap in seq (counted there). That is the newest-frame-wins policy at this hop.
        self.gates[self.video].drain()
        self.video.send_multipart(encode("frame", head, arrays), copy=False)
        return seq

    def audio_chunk(self, samples: np.ndarray, *, first_sample: int, capture_ns: int) -> None:
        samples = np.ascontiguousarray(samples, np.float32).reshape(-1)
        if self.audio is None or samples.size == 0:
            return
        head = {"stream": self.stream, "seq": self.audio_seq, "capture_ns": capture_ns,
                "pts_ns": int(first_sample * 1_000_000_000 // SAMPLE_RATE), "sample_rate": SAMPLE_RATE,
                "first_sample": int(first_sample)}
        self.audio_seq += 1
        self.audio_samples += samples.size
        self.gates[self.audio].drain()
        self.audio.send_multipart(encode("audio", head, {"samples": samples}), copy=False)

    def totals(self, reason: str, t0_ns: int) -> dict:
        """What a source reports when it ends: frames, audio sent, why, and how long it ran."""
        subs = {}
        for gate in self.gates.values():
            for key, n in gate.counters.items():
                subs[key] = subs.get(key, 0) + n
        return {"frames_sent": self.video_seq, "audio_chunks": self.audio_seq, "audio_samples": self.audio_samples,
                "end_reason": reason, "elapsed_s": round((stamp() - t0_ns) / 1e9, 3),
                **{k: n for k, n in subs.items() if n and k != "subscriptions"}}

    def eos(self, reason: str) -> None:
        """End of stream on both sockets, repeated a few times: PUB may drop a message at the HWM
        and everything downstream waits for this one. Receivers use the first copy."""
        head = {"stream": self.stream, "seq": self.video_seq, "capture_ns": stamp(), "frames_sent": self.video_seq,
                "last_seq": self.video_seq - 1, "audio_chunks": self.audio_seq, "reason": reason,
                "token": self.env.endpoints.token}
        msg = encode("eos", head)
        for _ in range(10):
            for sock in (self.video, self.audio):
                if sock is not None:
                    sock.send_multipart(msg)
            time.sleep(0.02)

    def close(self) -> None:
        for sock in (self.video, self.audio):
            close_socket(sock, self.env.abort)
        if self.shm is not None:
            self.shm.close()


class _PacedSource(Stage):
    """Shared pacing: frame at pts p is released at start + p (real time) or at once (fast)."""

    options: SourceOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.out: AVOutput | None = None  # set in open(); close() runs even when open() failed
        self.ended = False
        self.lateness = Histogram()  # bounded: a list grew by 2.6 million floats a day
        self._last_pts: int | None = None  # pacing state: the last released pts and the last forward step
        self._step_ns = DEFAULT_STEP_NS

    def _start(self, env: StageEnv, video_subs: int, audio_subs: int) -> None:
        self.out.wait_ready(video_subs, audio_subs, self.options.subscriber_timeout_s)
        self.t0 = stamp()
        self.realtime = self.options.pace == "realtime"
        self.limit_s = self.options.seconds

    def _release(self, pts_ns: int) -> int | None:
        """Waits until the frame is due; returns capture_ns or None when asked to stop."""
        if self.realtime:
            self._keep_pace(pts_ns)
        if self.realtime and not sleep_until(self.t0 + pts_ns, self.env.stop, self.env.abort):
            return None
        now = stamp()
        if self.realtime:
            self.lateness.add((now - self.t0 - pts_ns) / 1e6)
        return now

    def _keep_pace(self, pts_ns: int) -> None:
        """A timeline that goes back (concatenated files, a wrapped clock) or stands still: the due
        times restart one frame step after the last frame, so the source never runs faster than
        real time (a backwards jump used to release every frame up to the old position at once)."""
        last = self._last_pts
        if last is not None and pts_ns <= last:
            self.t0 += last - pts_ns + self._step_ns
            self.count("pts_backwards")
        elif last is not None:
            self._step_ns = pts_ns - last
        self._last_pts = pts_ns

    def _finish(self, reason: str) -> bool:
        if not self.ended:
            self.ended = True
            self.counters.update(self.out.totals(reason, self.t0))
            if self.lateness.count:
                self.counters["late_ms"] = {"p50": round(self.lateness.percentile(50), 3), "max": round(self.lateness.max, 3)}
            self.out.eos(reason)
        return False

    def close(self) -> None:
        if self.out is not None:
            if not self.ended:
                self._finish("closed")
            self.out.close()


class SyntheticSource(_PacedSource):
    """Live SynthAVS scene (package synthavs), paced to real time, with ground truth.

    Outputs: ``frame`` messages (parts image [H,W,3] uint8 RGB, gt_mask [H,W] uint8 1 = sounding)
    on the video link, ``audio`` chunks (the samples up to each frame's time) on the audio link.
    Options: width, height, fps, mode, seed, seconds (None = endless), pace (realtime | fast),
    video_subs / audio_subs (subscribers to wait for before frame 0)."""

    name = "source.synthetic"
    Options = SyntheticOptions

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        try:
            from synthavs import SceneConfig, SceneGenerator
        except ImportError as exc:
            raise StageError(f"the synthetic source needs the synthavs package ({exc})") from exc
        o = self.options
        self.fps = o.fps
        cfg = SceneConfig(width=o.width, height=o.height, fps=o.fps, mode=o.mode, seed=o.seed, media=o.media,
                          backgrounds="heldout" if o.media == "stamps" else "train")
        try:
            self.gen = SceneGenerator(cfg)
        except RuntimeError as exc:  # synthavs.stamps.StampsMissing: names the Debian package to install
            raise StageError(str(exc)) from exc
        self.frames = self.gen.stream(o.seconds)
        self.out = AVOutput(ctx, env)
        self.sent_until = 0  # audio samples published so far
        self._start(env, o.video_subs, o.audio_subs)

    def process(self) -> bool:
        if self.env.stop.is_set():
            return self._finish("stopped")
        frame = next(self.frames, None)
        if frame is None:
            return self._finish("end")
        pts_ns = frame.index * 1_000_000_000 // self.fps
        capture = self._release(pts_ns)
        if capture is None:
            return self._finish("stopped")
        self._audio_until(frame.time_s, capture)  # only frame 0 needs this: later audio went ahead
        self.out.frame(frame.image, pts_ns=pts_ns, capture_ns=capture, extras={"gt_mask": frame.mask})
        # Audio up to the NEXT frame's time goes now, out of the next frame's capture -> send path.
        # Delivering known audio early changes nothing causal: the context still cuts the window
        # that ends at each frame's own pts.
        self._audio_until(frame.time_s + 1 / self.fps, capture)
        return True

    def _audio_until(self, t_s: float, capture_ns: int) -> None:
        end = int(round(t_s * SAMPLE_RATE))
        if end > self.sent_until:
            audio = self.gen.audio_between(self.sent_until / SAMPLE_RATE, end / SAMPLE_RATE)
            self.out.audio_chunk(audio, first_sample=self.sent_until, capture_ns=capture_ns)
            self.sent_until = end


class FileSource(_PacedSource):
    """A video file (any container / codec FFmpeg reads) with its audio track or a separate audio
    file, decoded with PyAV. Each stream's time base is converted to seconds; audio is resampled
    to 16 kHz mono float. A file without audio runs with silence (and a warning).

    Outputs: as SyntheticSource, without gt_mask. Options: video (path or network URL), audio (path or URL, optional),
    pace (realtime | fast), seconds (stop after this much media time), video_subs, audio_subs."""

    name = "source.file"
    Options = FileOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.vcont = self.acont = None  # containers, opened in open()

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        import av

        self.av = av
        o = self.options
        self.url = is_url(o.video)
        self.path = o.video if self.url else Path(o.video)
        self.vcont = self._open_container(self.path)
        if not self.vcont.streams.video:
            raise StageError(f"'{self.path}' has no video stream")
        self.vframes = self.vcont.decode(video=0)
        self.acont = None
        self.audio_queue: list | None = []  # a network stream: audio decoded on the way to the next picture
        audio_path = o.audio if o.audio else self.path
        if self.url and not o.audio:  # one connection, both tracks from one demuxer
            cont = self.vcont
            self.vframes = self._demux_network()
        else:
            cont = self._open_container(audio_path if is_url(str(audio_path)) else Path(audio_path))  # a second demuxer: audio is read ahead of video
        if cont is self.vcont and cont.streams.audio:
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self.acont = None
        elif cont is self.vcont:
            self.audio_queue = None
            warn(f"'{audio_path}' has no audio track: running with silence")
        elif cont.streams.audio:
            self.acont = cont
            self.aframes = self._audio_frames(cont)
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        else:
            cont.close()
            warn(f"'{audio_path}' has no audio track: running with silence")
        self.audio_next: int | None = None  # absolute index of the next sample to publish
        self.audio_skip = 0  # samples of skipped (undecodable) packets not yet accounted for
        self.audio_done = self.acont is None and not (self.url and self.audio_queue is not None)
        self.out = AVOutput(ctx, env)
        self.pts0: float | None = None
        self._start(env, o.video_subs, o.audio_subs)

    def _open_container(self, path):
        if isinstance(path, str):  # a network stream: a bounded wait for it, then a clear error
            try:
                return self.av.open(path, timeout=(5.0, 5.0))
            except (self.av.error.FFmpegError, OSError, ValueError) as exc:
                raise StageError(f"cannot open the network stream '{path}': {exc}") from exc
        if not path.is_file():
            raise StageError(f"video/audio file '{path}' does not exist")
        try:
            return self.av.open(str(path))
        except (self.av.error.FFmpegError, OSError, ValueError) as exc:
            raise StageError(f"cannot read media file '{path}': {_why(exc)}") from exc

    def _audio_frames(self, cont):
        """Decoded audio frames. A packet FFmpeg cannot decode is skipped and counted, leaving a
        hole of its duration (read as silence downstream), as ffmpeg itself decodes through it:
        one corrupt packet used to end the whole run."""
        for packet in cont.demux(audio=0):
            try:
                frames = packet.decode()
            except self.av.error.FFmpegError:
                self.count("corrupt_audio_packets")
                if packet.duration and packet.time_base:
                    self.audio_skip += int(round(float(packet.duration * packet.time_base) * SAMPLE_RATE))
                continue
            yield from frames

    def _demux_network(self):
        """Video frames of a network stream; its audio frames go to ``audio_queue`` as they arrive
        (a live stream cannot be read ahead: audio comes interleaved with the pictures)."""
        streams = [self.vcont.streams.video[0], *self.vcont.streams.audio[:1]]
        for packet in self.vcont.demux(*streams):
            if packet.stream.type == "audio":
                try:
                    frames = packet.decode()
                except self.av.error.FFmpegError:  # a corrupt audio packet: a hole, as in _audio_frames
                    self.count("corrupt_audio_packets")
                    if packet.duration and packet.time_base:
                        self.audio_skip += int(round(float(packet.duration * packet.time_base) * SAMPLE_RATE))
                    continue
            else:
                frames = packet.decode()
            for frame in frames:
                if packet.stream.type == "audio":
                    self.audio_queue.append(frame)
                else:
                    yield frame

    def _pump_network_audio(self, capture_ns: int) -> None:
        while self.audio_queue:
            frame = self.audio_queue.pop(0)
            for chunk in self.resampler.resample(frame):
                data = chunk.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if self.audio_next is None:
                    t = float(frame.time) if frame.time is not None else 0.0
                    data, self.audio_next = _from_time_zero(data, t - (self.pts0 or 0.0))
                self.audio_next += self.audio_skip
                self.audio_skip = 0
                self.out.audio_chunk(data, first_sample=self.audio_next, capture_ns=capture_ns)
                self.audio_next += data.size

    def _pump_audio(self, until_sample: int, capture_ns: int) -> None:
        """Publishes audio up to ``until_sample`` (a little beyond: decoded frames are whole)."""
        if self.url and self.audio_queue is not None and self.acont is None:
            return self._pump_network_audio(capture_ns)
        if self.audio_done:
            start = self.audio_next or 0
            if until_sample > start:  # no (more) audio: silence keeps the ring aligned with video
                self.out.audio_chunk(np.zeros(until_sample - start, np.float32), first_sample=start, capture_ns=capture_ns)
                self.audio_next = until_sample
            return
        while self.audio_next is None or self.audio_next < until_sample:
            try:
                frame = next(self.aframes, None)
            except self.av.error.FFmpegError as exc:
                raise StageError(f"cannot decode audio of '{self.path}': {_why(exc)}") from exc
            chunks = self.resampler.resample(frame)  # frame None flushes the resampler
            for chunk in chunks:
                data = chunk.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if self.audio_next is None:
                    t = float(frame.time) if frame is not None and frame.time is not None else 0.0
                    data, self.audio_next = _from_time_zero(data, t - (self.pts0 or 0.0))
                self.audio_next += self.audio_skip  # after a skipped packet: a hole, not shifted audio
                self.audio_skip = 0
                self.out.audio_chunk(data, first_sample=self.audio_next, capture_ns=capture_ns)
                self.audio_next += data.size
            if frame is None:
                self.audio_done = True
                return

    def process(self) -> bool:
        if self.env.stop.is_set():
            return self._finish("stopped")
        try:
            frame = next(self.vframes, None)
        except self.av.error.FFmpegError as exc:
            raise StageError(f"cannot decode video of '{self.path}': {_why(exc)}") from exc
        if frame is None:
            return self._finish("end")
        t = float(frame.time) if frame.time is not None else self.out.video_seq / 30.0
        if self.pts0 is None:
            self.pts0 = t  # the media timeline starts at the first frame
        pts_ns = int(round((t - self.pts0) * 1e9))
        if self.limit_s is not None and pts_ns >= self.limit_s * 1e9:
            return self._finish("end")
        image = frame.to_ndarray(format="rgb24")
        turn = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4  # display matrix: degrees counterclockwise
        if turn:  # a phone video held upright: the model sees it as a person would, like ffmpeg shows it
            image = np.ascontiguousarray(np.rot90(image, turn))
            self.counters["rotated_deg"] = turn * 90
        capture = self._release(pts_ns)
        if capture is None:
            return self._finish("stopped")
        self._pump_audio(int(round(pts_ns * SAMPLE_RATE / 1e9)), capture)  # a no-op after frame 0
        self.out.frame(image, pts_ns=pts_ns, capture_ns=capture)
        # decode the audio for the next frame now, off its capture -> send path (see SyntheticSource)
        self._pump_audio(int(round((pts_ns + AUDIO_AHEAD_NS) * SAMPLE_RATE / 1e9)), capture)
        return True

    def close(self) -> None:
        super().close()
        for cont in (self.vcont, self.acont):
            if cont is not None:
                cont.close()


def _from_time_zero(data: np.ndarray, start_s: float) -> tuple[np.ndarray, int]:
    """The first audio chunk placed on the stream's timeline (time zero = the first picture): audio
    that starts before it loses its head instead of being shifted late (MPEG-TS audio typically
    starts tens of ms before the video)."""
    first = int(round(start_s * SAMPLE_RATE))
    return (data[-first:], 0) if first < 0 else (data, first)


def is_url(text: str) -> bool:
    """A network stream (rtsp://, http://, udp://, ...) rather than a file path."""
    return "://" in text and not text.startswith("file://")
