"""The stream's state: the rolling text context (NumPy mirror of model/context.py) and audio ring.

Text context rule (model/context.py, the contract between ``step`` and its caller):
- when a frame closes its ring slot, push its frame text into the frame ring (oldest slot falls
  off, valid = 1);
- when a segment closes, push that frame's segment text into the segment ring and clear the frame
  ring's validity. Rings are ordered oldest -> newest along axis 1.
``advance`` below applies engine.state's NumPy copy of that rule (tests compare it with torch).

The clock (this module, live): a segment is 1 s of capture time (pts) and a ring slot is
1 / ring_rate s of it, ring_rate being the model's ``frame_ring_rate`` (read from the artifact's
sidecar by stream.stages.models.model_geometry: the frames per second the model was trained at; 1 for
models stored before the field). Frame i closes its slot (segment) exactly when the NEXT processed
frame lies in a later slot (second). ContextKeeper therefore holds the last frame's texts until
the next frame's time is known and only then applies ``advance`` with the right flags: on a
steady 30 fps stream with ring_rate 2 the last frame of each half second pushes, so every frame
sees the rings a 2 fps clip of those frames sees (model.context.ring_pushes / segment_closes are
the same rule for clips). Dropped frames never enter the rings (the model only saw processed
frames); a gap longer than a segment closes one segment (there is only one segment text to push).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import state as rings
from engine.spec import SAMPLE_RATE

SEGMENT_NS = 1_000_000_000


@dataclass(frozen=True)
class ContextState:
    frame_ring: np.ndarray  # [B, Nf, D] float32
    frame_valid: np.ndarray  # [B, Nf]
    segment_ring: np.ndarray  # [B, Ns, D]
    segment_valid: np.ndarray  # [B, Ns]

    def as_inputs(self) -> dict[str, np.ndarray]:
        return {
            "frame_ring": self.frame_ring,
            "frame_valid": self.frame_valid,
            "segment_ring": self.segment_ring,
            "segment_valid": self.segment_valid,
        }


def initial_state(batch: int, width: int, frame_ring: int, segment_ring: int, dtype=np.float32) -> ContextState:
    return ContextState(**rings.initial(batch, width, frame_ring, segment_ring, dtype))


def advance(
    state: ContextState, frame_text: np.ndarray, segment_text: np.ndarray, *, close_segment: bool, push_frame: bool = True
) -> ContextState:
    """The keeper's update after one frame (``close_segment`` and ``push_frame`` are decided by the
    caller's clock); the ring rule itself is engine.state's, the one NumPy copy of model/context.py."""
    return ContextState(**rings.advance(state.as_inputs(), frame_text, segment_text, close_segment=close_segment, push_frame=push_frame))


class ContextKeeper:
    """Clock-driven keeper for one stream. ``state_for(pts)`` -> rings for the frame at ``pts``;
    ``record(pts, frame_text, segment_text)`` after that frame ran, in processing order."""

    def __init__(
        self, width: int, frame_ring: int, segment_ring: int, segment_ns: int = SEGMENT_NS, origin_ns: int = 0, ring_rate: int = 1
    ) -> None:
        if isinstance(ring_rate, bool) or not isinstance(ring_rate, (int, np.integer)) or ring_rate < 1:
            raise ValueError(f"ring_rate {ring_rate!r} must be a whole number of frame-ring entries per second >= 1")
        self.state = initial_state(1, width, frame_ring, segment_ring)
        self.segment_ns = segment_ns
        self.ring_rate = int(ring_rate)  # frame-ring slots per segment (the model's frame_ring_rate)
        # Segment k is [origin + k s, origin + (k + 1) s) of stream time. Sources start pts at 0, so
        # segments line up with the stream's own seconds even when the first frames are dropped.
        self.origin_ns = origin_ns
        self.pending: tuple[int, np.ndarray, np.ndarray] | None = None
        self.segments_closed = 0
        self.frames_pushed = 0  # frame texts that entered the frame ring (one per closed slot)
        self.rejected = 0  # frames whose texts were not finite: never stored (they would poison every later frame)

    @classmethod
    def for_geometry(cls, geo: dict[str, Any]) -> ContextKeeper:
        """A keeper for a model's geometry (stream.stages.worker.WorkerCore.geometry, or a ``ready``
        header's through protocol.geometry, which fills in what older workers leave out)."""
        return cls(geo["width"], geo["frame_ring"], geo["segment_ring"], ring_rate=geo["ring_rate"])

    def segment_of(self, pts_ns: int) -> int:
        return (pts_ns - self.origin_ns) // self.segment_ns

    def slot_of(self, pts_ns: int) -> int:
        """The frame-ring slot [j / r s, (j + 1) / r s) holding ``pts_ns`` (integer ns: exact)."""
        return (pts_ns - self.origin_ns) * self.ring_rate // self.segment_ns

    def _advance(self, pts_ns: int, ft: np.ndarray, st: np.ndarray, next_pts_ns: int) -> None:
        close = self.segment_of(next_pts_ns) > self.segment_of(pts_ns)
        push = close or self.slot_of(next_pts_ns) > self.slot_of(pts_ns)
        self.state = advance(self.state, ft, st, close_segment=close, push_frame=push)
        self.segments_closed += int(close)
        self.frames_pushed += int(push)

    def state_for(self, pts_ns: int) -> ContextState:
        """The rings for the frame at ``pts_ns`` (the next frame in processing order)."""
        if self.pending is not None:
            self._advance(*self.pending, pts_ns)
            self.pending = None
        return self.state

    def record(self, pts_ns: int, frame_text: np.ndarray, segment_text: np.ndarray, next_pts_ns: int | None = None) -> None:
        """The texts of the frame at ``pts_ns``. ``next_pts_ns``: the pts of the frame processed
        after it, when already known (several workers); otherwise the next ``state_for`` says."""
        ft = np.array(frame_text, np.float32).reshape(1, -1)
        st = np.array(segment_text, np.float32).reshape(1, -1)
        if not (np.isfinite(ft).all() and np.isfinite(st).all()):
            self.rejected += 1  # the frame is treated as dropped: the rings never saw it
            return
        if self.pending is not None:  # cannot happen in dispatch order; never lose a frame text
            self._advance(*self.pending, pts_ns)
        self.pending = None
        if next_pts_ns is None:
            self.pending = (pts_ns, ft, st)
        else:
            self._advance(pts_ns, ft, st, next_pts_ns)


class AudioRing:
    """Mono samples indexed by absolute sample number (sample n is at pts n / rate).

    ``write`` accepts chunks in any order; a hole between chunks reads as silence (and is
    counted). ``window(end, n)`` returns the n samples before ``end`` (exclusive); samples the
    ring never got (too old, or not arrived yet) read as zeros and are counted as underrun."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, seconds: float = 8.0) -> None:
        self.rate = sample_rate
        self.capacity = int(sample_rate * seconds)
        self.buf = np.zeros(self.capacity, np.float32)
        self.end = 0  # one past the newest sample written
        self.start = 0  # oldest sample still held (after the first write)
        self.written_any = False
        self.gap_samples = 0
        self.underrun_samples = 0
        self.resets = 0

    def write(self, first: int, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).reshape(-1)
        if samples.size == 0:
            return
        if not self.written_any:
            self.start = self.end = first
            self.written_any = True
        last = first + samples.size
        if last <= self.end - self.capacity:  # older than anything kept: a restarted source, begin again
            self.resets += 1
            self.buf[:] = 0
            self.start = self.end = first
        if first > self.end:  # hole: zero it so stale ring content never reads as audio
            self.gap_samples += first - self.end
            self._put(self.end, np.zeros(min(first - self.end, self.capacity), np.float32))
        self._put(first, samples)
        self.end = max(self.end, last)
        self.start = max(self.start, self.end - self.capacity)

    def _put(self, first: int, samples: np.ndarray) -> None:
        if samples.size > self.capacity:
            first += samples.size - self.capacity
            samples = samples[-self.capacity:]
        i = first % self.capacity
        n = min(samples.size, self.capacity - i)
        self.buf[i : i + n] = samples[:n]
        self.buf[: samples.size - n] = samples[n:]

    def window(self, end: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        lo, hi = max(end - n, self.start), min(end, self.end)
        if end > self.end and self.written_any:
            self.underrun_samples += min(n, end - max(self.end, end - n))
        if hi > lo:
            i = lo % self.capacity
            k = hi - lo
            first = min(k, self.capacity - i)
            dst = lo - (end - n)
            out[dst : dst + first] = self.buf[i : i + first]
            out[dst + first : dst + k] = self.buf[: k - first]
        return out

    def sample_at(self, pts_ns: int) -> int:
        return int(round(pts_ns * self.rate / 1e9))
