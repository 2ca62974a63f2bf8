"""stream/stages/resize.py: the cheap resize stays close to INTER_AREA (what training used)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.stages.resize import resize_frame


def scene(h: int, w: int) -> np.ndarray:
    """Hard-edged shapes on a gradient, like a SynthAVS frame (aliasing shows on edges)."""
    y, x = np.mgrid[:h, :w]
    img = np.stack([(x * 255 // w), (y * 255 // h), np.full_like(x, 60)], -1).astype(np.uint8)
    cv2.circle(img, (w // 3, h // 2), h // 5, (250, 40, 40), -1)
    cv2.rectangle(img, (w // 2, h // 4), (w // 2 + w // 6, h // 2), (20, 220, 90), -1)
    img[h // 2:, w // 2:] = np.random.default_rng(0).integers(0, 256, img[h // 2:, w // 2:].shape)  # fine texture: aliases
    return img


@pytest.mark.parametrize("h, w", [(480, 640), (720, 1280), (1080, 1920), (481, 639), (240, 320), (200, 150)])
def test_fast_resize_matches_area_closely(h, w):
    img = scene(h, w)
    ref = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    fast = resize_frame(img, (224, 224), "fast")
    lin = resize_frame(img, (224, 224), "linear").astype(np.float32)
    assert fast.shape == (224, 224, 3) and fast.dtype == np.uint8
    d_fast = np.abs(fast.astype(np.float32) - ref).mean()
    assert d_fast < 5.0  # grey levels, mean over pixels (noise patch included)
    if min(h / 224, w / 224) >= 2:  # big downscales: plain bilinear aliases on the texture, the halving does not
        assert d_fast < 0.7 * np.abs(lin - ref).mean()


def test_area_is_opencv_area_and_bad_method_is_named():
    img = scene(480, 640)
    np.testing.assert_array_equal(resize_frame(img, (224, 224), "area"), cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="resize method"):
        resize_frame(img, (224, 224), "bicubic")
