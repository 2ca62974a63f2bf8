"""The ring rule: how the text-context state between two ``step`` calls moves on (NumPy only).

This module is the one NumPy copy of the rule in model/context.py (the torch side, used inside
training and the exported graph); tests compare the two. It imports NumPy alone, so the stream and
the engine's ONNX path never need torch or model/ to keep state.

Rule (rings ordered oldest -> newest along axis 1):
- when a frame closes its 1 / frame_ring_rate s slot (``push_frame``), push its frame text into
  the frame ring (the oldest slot falls off, valid = 1): the frame ring is sampled in time;
- when a segment closes, push that frame's segment text into the segment ring and clear the frame
  ring's validity. A segment close is always a slot close (it pushes the frame text too).
Which frames push and close is the caller's clock (stream/stages/context.py's keeper live).
"""

from __future__ import annotations

import numpy as np

STATE_NAMES = ("frame_ring", "frame_valid", "segment_ring", "segment_valid")


def initial(batch: int, width: int, frame_ring: int, segment_ring: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Empty rings, nothing valid: the state at stream start."""
    return {
        "frame_ring": np.zeros((batch, frame_ring, width), dtype),
        "frame_valid": np.zeros((batch, frame_ring), dtype),
        "segment_ring": np.zeros((batch, segment_ring, width), dtype),
        "segment_valid": np.zeros((batch, segment_ring), dtype),
    }


def _push(ring: np.ndarray, valid: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ring = np.concatenate([ring[:, 1:], item[:, None].astype(ring.dtype)], axis=1)
    valid = np.concatenate([valid[:, 1:], np.ones_like(valid[:, :1])], axis=1)
    return ring, valid


def advance(
    state: dict[str, np.ndarray], frame_text: np.ndarray, segment_text: np.ndarray, *, close_segment: bool, push_frame: bool = True
) -> dict[str, np.ndarray]:
    """The state after one frame: ``state`` holds STATE_NAMES; texts are [B, D]."""
    fr, fv = state["frame_ring"], state["frame_valid"]
    if push_frame or close_segment:
        fr, fv = _push(fr, fv, frame_text)
    sr, sv = state["segment_ring"], state["segment_valid"]
    if close_segment:
        sr, sv = _push(sr, sv, segment_text)
        fv = np.zeros_like(fv)
    return {"frame_ring": fr, "frame_valid": fv, "segment_ring": sr, "segment_valid": sv}
