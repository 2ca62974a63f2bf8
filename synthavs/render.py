"""Compositing: paste resized sprites back to front and record which object owns each pixel.

The owner map is what makes the masks exact under occlusion: a sounding object hidden behind a
silent one has no mask pixels there.
"""

from __future__ import annotations

import cv2
import numpy as np


def render_frame(
    background: np.ndarray,
    geometry: list[tuple[int, float, float, float]],
    sprites: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """background uint8 [H, W, 3]; geometry (instance id, cx, cy, side) back to front with the
    matching sprites (RGBA float32 [S, S, 4]: colour 0..255, alpha 0..1).

    Returns (image uint8 [H, W, 3], owner int16 [H, W] with the instance id on top or -1)."""
    h, w = background.shape[:2]
    image = background.copy()
    owner = np.full((h, w), -1, np.int16)
    for (inst, cx, cy, side), sprite in zip(geometry, sprites):
        size = max(int(round(side)), 2)
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        # visible part of the sprite box
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
        if ax1 <= ax0 or ay1 <= ay0:
            continue
        # one resize of the 4-channel RGBA sprite (the per-frame cost that matters)
        rgba = cv2.resize(sprite, (size, size), interpolation=cv2.INTER_LINEAR)
        sx0, sy0 = ax0 - x0, ay0 - y0
        rgba = rgba[sy0 : sy0 + ay1 - ay0, sx0 : sx0 + ax1 - ax0]
        s_rgb, s_a = rgba[..., :3], rgba[..., 3]
        region = image[ay0:ay1, ax0:ax1].astype(np.float32)
        a = s_a[..., None]
        image[ay0:ay1, ax0:ax1] = (region + a * (s_rgb - region) + 0.5).astype(np.uint8)
        own = owner[ay0:ay1, ax0:ax1]
        own[s_a >= 0.5] = inst  # a pixel belongs to the object when it is at least half covered
    return image, owner
