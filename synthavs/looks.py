"""How things look: one sprite per class (shape x colour x texture), backgrounds, distractors.

Sprites are drawn once at a canonical size and cached; per frame an object is only a cv2.resize
and an alpha paste, which keeps a 30 fps, 5 s clip well under the time budget.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

SPRITE = 128  # canonical sprite side in pixels

# class index -> (shape, RGB colour, texture); index order = CLASS_NAMES
LOOKS: list[tuple[str, tuple[int, int, int], str]] = [
    ("circle", (255, 140, 0), "hstripes"),  # guitar: orange striped disc
    ("square", (140, 85, 35), "dots"),  # dog: brown dotted square
    ("triangle", (230, 30, 30), "checker"),  # siren: red checkered triangle
    ("wide", (245, 245, 245), "vstripes"),  # piano: white bar with black keys
    ("diamond", (60, 170, 255), "dots"),  # bird: sky-blue dotted diamond
    ("hexagon", (150, 60, 205), "rings"),  # drum: purple ringed hexagon
    ("capsule", (40, 190, 60), "hstripes"),  # car: green striped capsule
    ("star", (255, 120, 200), "gradient"),  # baby: pink star
]


def _polygon(points: list[tuple[float, float]]) -> np.ndarray:
    return (np.array(points) * SPRITE).astype(np.int32)


def _shape_mask(shape: str) -> np.ndarray:
    m = np.zeros((SPRITE, SPRITE), np.uint8)
    c = SPRITE // 2
    if shape == "circle":
        cv2.circle(m, (c, c), c - 2, 255, -1, cv2.LINE_AA)
    elif shape == "square":
        m[8:-8, 8:-8] = 255
    elif shape == "triangle":
        cv2.fillPoly(m, [_polygon([(0.5, 0.04), (0.97, 0.94), (0.03, 0.94)])], 255, cv2.LINE_AA)
    elif shape == "wide":
        m[34:-34, 2:-2] = 255
    elif shape == "diamond":
        cv2.fillPoly(m, [_polygon([(0.5, 0.02), (0.98, 0.5), (0.5, 0.98), (0.02, 0.5)])], 255, cv2.LINE_AA)
    elif shape == "hexagon":
        ang = np.linspace(0, 2 * np.pi, 7)[:-1]
        cv2.fillPoly(m, [_polygon([(0.5 + 0.47 * np.cos(a), 0.5 + 0.47 * np.sin(a)) for a in ang])], 255, cv2.LINE_AA)
    elif shape == "capsule":
        cv2.rectangle(m, (30, 36), (SPRITE - 30, SPRITE - 36), 255, -1)
        cv2.circle(m, (30, c), c - 36, 255, -1, cv2.LINE_AA)
        cv2.circle(m, (SPRITE - 30, c), c - 36, 255, -1, cv2.LINE_AA)
    elif shape == "star":
        ang = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        rad = np.where(np.arange(10) % 2 == 0, 0.48, 0.2)
        cv2.fillPoly(m, [_polygon([(0.5 + r * np.cos(a), 0.5 + r * np.sin(a)) for a, r in zip(ang, rad)])], 255, cv2.LINE_AA)
    else:  # pragma: no cover - LOOKS is fixed
        raise ValueError(f"unknown shape {shape}")
    return m


def _texture(kind: str) -> np.ndarray:
    """Multiplicative shading in [0.25, 1] ([S, S]) so the colour stays the class cue."""
    y, x = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    if kind == "hstripes":
        t = 0.6 + 0.4 * (np.sin(y * 2 * np.pi / 16) > 0)
    elif kind == "vstripes":
        t = np.where((x.astype(int) // 14) % 2 == 1, 0.25, 1.0)
    elif kind == "dots":
        t = 1.0 - 0.45 * (((x % 20) - 10) ** 2 + ((y % 20) - 10) ** 2 < 25)
    elif kind == "checker":
        t = np.where(((x.astype(int) // 16) + (y.astype(int) // 16)) % 2 == 0, 1.0, 0.6)
    elif kind == "rings":
        r = np.hypot(x - SPRITE / 2, y - SPRITE / 2)
        t = 0.65 + 0.35 * (np.sin(r * 2 * np.pi / 18) > 0)
    else:  # gradient
        t = 0.55 + 0.45 * (1.0 - y / SPRITE)
    return t.astype(np.float32)


@cache
def class_sprite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb float32 [S, S, 3] in 0..255, alpha float32 [S, S] in 0..1) for class k."""
    shape, colour, texture = LOOKS[k]
    alpha = _shape_mask(shape).astype(np.float32) / 255.0
    rgb = np.array(colour, np.float32)[None, None, :] * _texture(texture)[..., None]
    # a dark outline makes shapes readable on any background (and occlusion edges visible)
    edge = cv2.morphologyEx((alpha > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8))
    rgb[edge > 0] *= 0.35
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return rgb, alpha


def instance_sprite(k: int, angle_deg: float, brightness: float) -> np.ndarray:
    """A clip's copy of class k's sprite, rotated and with a brightness jitter (hue kept):
    RGBA float32 [S, S, 4], colour 0..255, alpha 0..1."""
    rgb, alpha = class_sprite(k)
    rgba = np.concatenate([np.clip(rgb * brightness, 0, 255), alpha[..., None]], axis=2)
    rot = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), angle_deg, 1.0)
    return cv2.warpAffine(rgba, rot, (SPRITE, SPRITE), flags=cv2.INTER_LINEAR)


def background(rng: np.random.Generator, height: int, width: int, n_distractors: int) -> np.ndarray:
    """Textured background (smooth colour noise + grain) with distractor blobs; float32 [H, W, 3]."""
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    coarse = rng.normal(0, 28, size=(6, 8, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img = base[None, None, :] + smooth
    # fine grain as a single channel so it reads as texture, not colour
    img += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    scale = min(height, width)
    for _ in range(n_distractors):
        colour = tuple(float(v) for v in rng.uniform(30, 230, size=3))
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.04, 0.16) * scale), int(rng.uniform(0.04, 0.16) * scale))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return np.clip(img, 0, 255)
