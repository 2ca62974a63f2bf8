"""The rolling text context as plain tensors: the contract between ``step`` and its caller.

The stream's text-context keeper (stream/, NumPy) and the clip form (here, torch) follow the same
rule, so a trained model behaves the same offline and live:

- after every frame, push its frame text into the frame ring (oldest slot falls off, valid = 1);
- when a segment closes (every 1 s of stream; every frame for AVSBench clips), push the current
  segment text into the segment ring and clear the frame ring (all valid = 0).
Rings are ordered oldest -> newest along dim 1.
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


def advance(state: ContextState, frame_text: torch.Tensor, segment_text: torch.Tensor, *, close_segment: bool) -> ContextState:
    """The keeper's update after one frame (``close_segment`` is decided by the caller's clock)."""
    frame_ring, frame_valid = _push(state.frame_ring, state.frame_valid, frame_text)
    segment_ring, segment_valid = state.segment_ring, state.segment_valid
    if close_segment:
        segment_ring, segment_valid = _push(segment_ring, segment_valid, segment_text)
        frame_valid = torch.zeros_like(frame_valid)
    return ContextState(frame_ring, frame_valid, segment_ring, segment_valid)


def segment_closes(frame_times_s: Sequence[float], segment_s: float = 1.0) -> list[bool]:
    """Which frames close their segment, from the frames' capture times (seconds since stream start).

    The keeper's clock rule (stream/context.py): frame i closes its segment when the next frame lies
    in a later segment [k s, (k + 1) s). The clip's last frame looks one frame gap ahead (1 s for a
    single frame). AVSBench clips (one frame per second) close every frame; k frames per second
    close every k-th, exactly as a stream at k fps does."""
    times = [float(x) for x in frame_times_s]
    if not times:
        return []
    gap = times[-1] - times[-2] if len(times) > 1 else segment_s
    nxt = times[1:] + [times[-1] + gap]
    return [math.floor(b / segment_s + 1e-9) > math.floor(a / segment_s + 1e-9) for a, b in zip(times, nxt)]
