"""The rolling text context as plain tensors: the contract between ``step`` and its caller.

The stream's text-context keeper (stream/, NumPy) and the clip form (here, torch) follow the same
rule, so a trained model behaves the same offline and live:

- when a frame closes its ring slot, push its frame text into the frame ring (oldest slot falls
  off, valid = 1). The frame ring is sampled in time: slots are 1 / config.frame_ring_rate s of
  stream, so it holds what a clip at frame_ring_rate fps would hold, whatever the camera's rate
  (static shapes, and the same weights see the same time spans in training and live);
- when a segment closes (every 1 s of stream; every frame for AVSBench clips), push the current
  segment text into the segment ring and clear the frame ring (all valid = 0). A segment close is
  always a slot close (segments are whole numbers of slots).
Rings are ordered oldest -> newest along dim 1. Which frames push and close is the caller's clock
(``ring_pushes`` / ``segment_closes`` here for clips, stream/stages/context.py's keeper live); the step's
I/O does not change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import ICFConfig


@dataclass(frozen=True)
class ContextState:
    frame_ring: torch.Tensor  # [B, Nf, D]
    frame_valid: torch.Tensor  # [B, Nf]
    segment_ring: torch.Tensor  # [B, Ns, D]
    segment_valid: torch.Tensor  # [B, Ns]

    def as_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.frame_ring, self.frame_valid, self.segment_ring, self.segment_valid


def initial_state(batch: int, config: ICFConfig, *, device=None, dtype=torch.float32) -> ContextState:
    d = config.width
    return ContextState(
        frame_ring=torch.zeros(batch, config.frame_ring, d, device=device, dtype=dtype),
        frame_valid=torch.zeros(batch, config.frame_ring, device=device, dtype=dtype),
        segment_ring=torch.zeros(batch, config.segment_ring, d, device=device, dtype=dtype),
        segment_valid=torch.zeros(batch, config.segment_ring, device=device, dtype=dtype),
    )


def _push(ring: torch.Tensor, valid: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ring = torch.cat([ring[:, 1:], item[:, None]], dim=1)
    valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], dim=1)
    return ring, valid


def advance(
    state: ContextState, frame_text: torch.Tensor, segment_text: torch.Tensor, *, close_segment: bool, push_frame: bool = True
) -> ContextState:
    """The keeper's update after one frame (``close_segment`` and ``push_frame`` are decided by the
    caller's clock; a close always pushes, see the module doc)."""
    frame_ring, frame_valid = state.frame_ring, state.frame_valid
    if push_frame or close_segment:
        frame_ring, frame_valid = _push(frame_ring, frame_valid, frame_text)
    segment_ring, segment_valid = state.segment_ring, state.segment_valid
    if close_segment:
        segment_ring, segment_valid = _push(segment_ring, segment_valid, segment_text)
        frame_valid = torch.zeros_like(frame_valid)
    return ContextState(frame_ring, frame_valid, segment_ring, segment_valid)


def _slot_closes(times: list[float], per_segment: int, segment_s: float) -> list[bool]:
    """Frame i closes its slot [j s / n, (j + 1) s / n) when the next frame lies in a later slot;
    the last frame looks one frame gap ahead (a whole segment for a single frame)."""
    if not times:
        return []
    gap = times[-1] - times[-2] if len(times) > 1 else segment_s
    nxt = times[1:] + [times[-1] + gap]
    slot = lambda x: math.floor(x * per_segment / segment_s + 1e-9)  # noqa: E731
    return [slot(b) > slot(a) for a, b in zip(times, nxt)]


def segment_closes(frame_times_s: Sequence[float], segment_s: float = 1.0) -> list[bool]:
    """Which frames close their segment, from the frames' capture times (seconds since stream start).

    The keeper's clock rule (stream/stages/context.py): frame i closes its segment when the next frame lies
    in a later segment [k s, (k + 1) s). The clip's last frame looks one frame gap ahead (1 s for a
    single frame). AVSBench clips (one frame per second) close every frame; k frames per second
    close every k-th, exactly as a stream at k fps does."""
    return _slot_closes([float(x) for x in frame_times_s], 1, segment_s)


def ring_pushes(frame_times_s: Sequence[float], rate: int, segment_s: float = 1.0) -> list[bool]:
    """Which frames push their frame text into the frame ring: those that close their 1 / rate s
    slot (``rate`` = config.frame_ring_rate), by the same look-ahead rule as ``segment_closes``
    (and every segment close is one). A clip at ``rate`` fps pushes every frame; a 30 fps stream
    at rate 2 pushes the last frame of each half second, so its frames see a 2 fps clip's ring."""
    if int(rate) != rate or rate < 1:
        raise ValueError(f"frame ring rate {rate!r} must be a whole number of entries per second >= 1")
    times = [float(x) for x in frame_times_s]
    return [p or c for p, c in zip(_slot_closes(times, int(rate), segment_s), _slot_closes(times, 1, segment_s))]


def clip_pushes(frames: int, frames_per_segment: int, rate: int) -> list[bool]:
    """``ring_pushes`` for a clip of evenly spaced frames, ``frames_per_segment`` per second
    (exact integer slots: frame i lies in slot i * rate // frames_per_segment)."""
    slot = lambda i: (i * rate) // frames_per_segment  # noqa: E731
    closes = [(i + 1) % frames_per_segment == 0 for i in range(frames)]
    return [slot(i + 1) > slot(i) or c for i, c in zip(range(frames), closes)]
