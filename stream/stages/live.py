"""Live capture: a camera (OpenCV VideoCapture) and a microphone (sounddevice InputStream), one
source stage so both share one start time and one timeline. Devices that disappear are reopened
with exponential backoff; after ``retries`` failed attempts the stage ends with a clear error.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import zmq

from engine.spec import SAMPLE_RATE
from stream.log import warn
from stream.stages.options import LiveOptions
from stream.stages.sources import AVOutput
from stream.stages.stage import Stage, StageEnv, StageError
from stream.wire.transport import stamp

try:  # probing absent cameras is not worth an OpenCV warning each time; our own message says it
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


class MicRing:
    """Written by the PortAudio callback thread, read by the stage: samples by absolute index.
    The stream is timestamped once, over its first SETTLE_CALLBACKS callbacks, against
    CLOCK_MONOTONIC (PortAudio's ADC time of each buffer); sample n is then at anchor + n / rate."""

    def __init__(self, seconds: float = 4.0) -> None:
        self.buf = np.zeros(int(SAMPLE_RATE * seconds), np.float32)
        self.written = 0  # absolute count of samples received
        self.read = 0
        self.anchor_ns: int | None = None
        self.estimates: list[int] = []  # of sample 0's time, one per callback until the anchor is set
        self.lock = threading.Lock()
        self.status_errors = 0

    def callback(self, indata, frames, time_info, status) -> None:
        if status:
            self.status_errors += 1
        if self.anchor_ns is None:
            try:  # how long ago the first sample of this buffer hit the ADC
                ago = max(float(time_info.currentTime) - float(time_info.inputBufferAdcTime), 0.0)
            except (AttributeError, TypeError, ValueError):
                ago = frames / SAMPLE_RATE
            # when sample 0 was taken, as this buffer tells it; the median over the first callbacks, because
            # PortAudio's first ADC times can be off by 100+ ms (measured on ALSA's pulse device) or wild
            self.estimates.append(stamp() - int(ago * 1e9) - self.written * 1_000_000_000 // SAMPLE_RATE)
            if len(self.estimates) >= SETTLE_CALLBACKS:
                self.anchor_ns = int(np.median(self.estimates))
        data = indata[:, 0]
        with self.lock:
            i = self.written % self.buf.size
            n = min(data.size, self.buf.size - i)
            self.buf[i : i + n] = data[:n]
            self.buf[: data.size - n] = data[n:]
            self.written += data.size

    def take(self) -> tuple[int, np.ndarray]:
        """New samples since the last call: (absolute index of the first, samples)."""
        with self.lock:
            start = max(self.read, self.written - self.buf.size)  # older ones were overwritten
            idx = np.arange(start, self.written) % self.buf.size
            out = self.buf[idx].copy()
            self.read = self.written
        return start, out


PORTAUDIO_HINT = ("the microphone needs PortAudio, which is not installed: install the Debian package libportaudio2 "
                  "(apt-get install libportaudio2), or run without a microphone: --mic none")


def import_sounddevice():
    """The sounddevice module, or a StageError saying what to install. Without PortAudio,
    sounddevice raises OSError at import (not ImportError), so both are caught here, once."""
    try:
        import sounddevice
    except (ImportError, OSError):
        raise StageError(PORTAUDIO_HINT) from None
    return sounddevice


SETTLE_CALLBACKS = 25  # 0.5 s of 320-sample buffers: the microphone's time is fixed after these
CATCH_UP_NS = 500_000_000  # a network camera's start-up backlog read at once, at most this much stream time
FIRST_OPEN_BUDGET_S = 2.5  # how long start-up waits for a camera before it says so


def _no_device_node(index: int) -> bool:
    """Linux names every V4L2 camera /dev/videoN: without the node, index N cannot open."""
    return sys.platform.startswith("linux") and os.path.isdir("/dev") and not os.path.exists(f"/dev/video{index}")


def _backoff(attempt: int, base: float) -> float:
    return min(base * 2**attempt, 8.0)


class LiveSource(Stage):
    """Camera + microphone. Outputs as the other sources (frame and audio messages).
    Options: camera (index or device path / URL), mic ("default", an index, a name fragment,
    or None for no microphone: silence), width, height, fps (requested from the camera),
    retries (reopen attempts before giving up, 5), backoff_s (first wait, 0.5 s, doubling),
    seconds (stop after), video_subs, audio_subs."""

    name = "source.live"
    Options = LiveOptions
    options: LiveOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.retries = self.options.retries
        self.backoff = self.options.backoff_s
        self.cam_id = self.options.camera
        self.network = "://" in str(self.cam_id)  # rtsp:// http:// udp://: paced by its timestamps
        self.pace_anchor: tuple[int, int] | None = None  # (wall - stream clock now, its floor) in ns
        self.pace_last_pts = 0
        self.out: AVOutput | None = None  # devices and sockets are opened in open(); close() runs even if it failed
        self.cap = self.mic = self.mic_stream = None
        self.ended = False

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        o = self.options
        self.cap = self._open_camera(first=True)
        self.mic = None
        self.mic_stream = None
        if o.mic is not None:
            self._open_mic(first=True)
        else:
            warn("no microphone: the model hears silence")
        self.out = AVOutput(ctx, env)
        self.out.wait_ready(o.video_subs, o.audio_subs, o.subscriber_timeout_s)
        self.t0 = stamp()
        self.ended = False
        self.audio_origin: int | None = None  # pts sample index of the mic's sample 0
        self.silence_next = 0

    # ---- devices ----
    def _open_camera(self, first: bool = False):
        cam = int(self.cam_id) if str(self.cam_id).isdigit() else self.cam_id
        if first and isinstance(cam, int) and _no_device_node(cam):
            # no device node: nothing to wait for at start-up (a camera that vanishes later is retried)
            raise StageError(f"camera {self.cam_id} could not be opened: there is no /dev/video{cam} (see `icf-stream devices`)")
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            cap = cv2.VideoCapture(cam)
            if cap.isOpened():
                o = self.options
                for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, o.width), (cv2.CAP_PROP_FRAME_HEIGHT, o.height), (cv2.CAP_PROP_FPS, o.fps)):
                    if value:
                        cap.set(prop, float(value))
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest picture, not a queue of old ones
                return cap
            cap.release()
            if self.env.stop.is_set() or self.env.abort.is_set():
                break
            if attempt < self.retries:
                wait = _backoff(attempt, self.backoff)
                if first and time.monotonic() - started + wait > FIRST_OPEN_BUDGET_S:
                    break  # at start-up a missing camera is an error in seconds, not after a minute of retries
                warn(f"camera {self.cam_id} not available; retrying in {wait:.1f} s ({attempt + 1}/{self.retries})")
                time.sleep(wait)
        what = "could not be opened" if first else "disappeared and did not come back"
        raise StageError(f"camera {self.cam_id} {what} after {attempt + 1} attempt(s) (see `icf-stream devices`)")

    def _open_mic(self, first: bool = False) -> None:
        sd = import_sounddevice()

        dev = self.options.mic
        dev = None if dev in ("default", "", None) else (int(dev) if str(dev).isdigit() else dev)
        for attempt in range(self.retries + 1):
            try:
                ring = MicRing()
                st = sd.InputStream(device=dev, samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                    blocksize=320, callback=ring.callback)
                st.start()
                self.mic, self.mic_stream = ring, st
                return
            except (sd.PortAudioError, ValueError, OSError) as exc:
                err = exc
            if attempt < self.retries and not self.env.abort.is_set():
                wait = _backoff(attempt, self.backoff)
                warn(f"microphone {self.options.mic} not available ({err}); retrying in {wait:.1f} s")
                time.sleep(wait)
        what = "could not be opened" if first else "disappeared and did not come back"
        raise StageError(f"microphone '{self.options.mic}' {what} after {self.retries} retries: {err} "
                         "(see `icf-stream devices`, or run without a microphone: --mic none)")

    def _pump_audio(self, capture_ns: int) -> None:
        if self.mic is None:  # no microphone: silence up to now keeps the window defined
            end = int((capture_ns - self.t0) * SAMPLE_RATE // 1_000_000_000)
            if end > self.silence_next:
                self.out.audio_chunk(np.zeros(end - self.silence_next, np.float32), first_sample=self.silence_next, capture_ns=capture_ns)
                self.silence_next = end
            return
        if self.mic_stream is not None and not self.mic_stream.active:
            warn("microphone stopped delivering audio; reopening")
            self._close_mic()
            self._open_mic()
            self.audio_origin = None  # a new stream has a new timestamp
        if self.mic.anchor_ns is None:
            return
        if self.audio_origin is None:
            # pts sample index of the mic's sample 0 (may be negative: the mic started before t0)
            self.audio_origin = int((self.mic.anchor_ns - self.t0) * SAMPLE_RATE // 1_000_000_000)
        first, samples = self.mic.take()
        first += self.audio_origin
        if first < 0:  # samples from before the stream's time zero are not part of it
            samples, first = samples[-first:], 0
        if samples.size:
            self.out.audio_chunk(samples, first_sample=first, capture_ns=capture_ns)

    def process(self) -> bool:
        if self.env.stop.is_set():
            return self._finish("stopped")
        ok, bgr = self.cap.read()
        if ok and bgr is not None and self.network:
            self._pace_network()
        now = stamp()
        if not ok or bgr is None:
            warn(f"camera {self.cam_id} returned no frame; reopening")
            self.cap.release()
            self.cap = self._open_camera()
            self.pace_anchor = None
            return True
        limit = self.options.seconds
        if limit is not None and now - self.t0 > limit * 1e9:
            return self._finish("end")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.out.frame(rgb, pts_ns=now - self.t0, capture_ns=now)
        # then the microphone's samples so far: the context waits (audio_wait_ms) for the window's
        # tail if needed, which costs less than holding the frame back for this send
        self._pump_audio(now)
        return True

    def _pace_network(self) -> None:
        """A network camera is never read faster than its own timestamps (beyond a one-off catch-up of
        CATCH_UP_NS): a server that sends a file at full speed is held to real time, picture by picture."""
        pos_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        now = stamp()
        if not pos_ms or pos_ms < 0:
            return
        pts = int(pos_ms * 1e6)
        offset = now - pts  # wall clock minus stream clock for this picture
        if self.pace_anchor is None or pts < self.pace_last_pts:  # first picture, or the stream restarted
            self.pace_anchor = (offset, offset - CATCH_UP_NS)
        elif offset - self.pace_anchor[0] > 1_000_000_000:  # > 1 s behind: the stream is slower than its clock
            self.pace_anchor = (offset, offset - CATCH_UP_NS)
        self.pace_last_pts = pts
        # pictures that arrive early (the decoder's start-up backlog) may be taken at once, lowering the
        # anchor, but only by CATCH_UP_NS in all: a sender faster than real time is then held to it
        anchor = max(self.pace_anchor[1], min(self.pace_anchor[0], offset))
        self.pace_anchor = (anchor, self.pace_anchor[1])
        due = anchor + pts
        if due > now:
            self.counters["paced_waits"] = self.counters.get("paced_waits", 0) + 1
            time.sleep((due - now) / 1e9)

    def _finish(self, reason: str) -> bool:
        if not self.ended:
            self.ended = True
            self.counters.update(self.out.totals(reason, self.t0))
            if self.mic is not None:
                self.counters["mic_status_errors"] = self.mic.status_errors
                if self.audio_origin is not None:  # where the microphone's first sample was put on the frames' clock
                    self.counters["mic_sample0_ms"] = round(self.audio_origin * 1000 / SAMPLE_RATE, 2)
            self.out.eos(reason)
        return False

    def _close_mic(self) -> None:
        if self.mic_stream is not None:
            try:
                self.mic_stream.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone anyway
                pass
            self.mic_stream = None

    def close(self) -> None:
        if self.out is not None:
            if not self.ended:
                self._finish("closed")
            self.out.close()
        if self.cap is not None:
            self.cap.release()
        self._close_mic()


def list_devices() -> dict[str, Any]:
    """Cameras (probed: /dev/video* on Linux, else indices 0-4) and input-capable audio devices."""
    cams = []
    paths = sorted(glob.glob("/dev/video*"))
    candidates = [int(p.removeprefix("/dev/video")) for p in paths if p.removeprefix("/dev/video").isdigit()] if os.name == "posix" \
        and os.path.isdir("/dev") and paths else ([] if os.name == "posix" else list(range(5)))
    for i in candidates:
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            cams.append({"index": i, "size": f"{int(w)}x{int(h)}", "backend": cap.getBackendName()})
        cap.release()
    mics, mic_error = [], None
    try:
        sd = import_sounddevice()
        for i, dev in enumerate(sd.query_devices()):
            if dev.get("max_input_channels", 0) > 0:
                mics.append({"index": i, "name": dev["name"], "channels": dev["max_input_channels"],
                             "default_rate": dev.get("default_samplerate")})
    except Exception as exc:  # noqa: BLE001 - no PortAudio / no sound card: report, do not crash
        mic_error = str(exc)
    return {"cameras": cams, "microphones": mics, "microphone_error": mic_error}
