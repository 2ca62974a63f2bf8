"""Frame -> model input size, cheaply.

OpenCV's INTER_AREA (what training uses) at a non-integer ratio (640x480 -> 224x224 is 2.86 x
2.14) takes its slow general path: 1.27 ms p50 on this 2-core CPU. ``fast`` does the same kind of
box filtering by halving (INTER_AREA at exactly 2x is OpenCV's vectorised fast path) while the
frame is at least twice the target, then INTER_LINEAR for the remaining < 2x: 0.15 ms p50 at
640x480, 0.31 at 1280x720, 0.98 at 1920x1080 (INTER_AREA: 1.3 / 11.3 / 15.1), and on SynthAVS
frames its mean absolute difference from INTER_AREA is ~1 grey level (plain INTER_LINEAR: 2.1-3.0,
it aliases).
Measured with ``python -m bench.resize`` (machine shared).
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("fast", "area", "linear")


def resize_frame(image: np.ndarray, size: tuple[int, int], method: str = "fast") -> np.ndarray:
    """``image`` [H, W, C] uint8 -> [h, w, C] for ``size`` = (w, h) (OpenCV order)."""
    w, h = size
    if method == "area":
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if method == "linear":
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if method != "fast":
        raise ValueError(f"resize method must be one of {METHODS}, not {method!r}")
    while image.shape[1] >= 2 * w and image.shape[0] >= 2 * h:  # halve by box filter while >= 2x the target
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]  # an odd edge pixel would break the 2x ratio
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
