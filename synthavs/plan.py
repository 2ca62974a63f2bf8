"""What is random about one clip, as plain data: its instances, who sounds when, the swap it got.

Owned here (not by scene.py or swap.py) so that the generator and the swap augmentation both read it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SwapChoice:
    """What the swap augmentation did to one clip."""

    status: str  # one of STATUSES
    source: int = -1  # instance that sounded in the generated clip (eligible clips: swapped / kept)
    target: int = -1  # instance that sounds instead (swapped clips only)


@dataclass(frozen=True)
class Instance:
    """One object (or an off-screen sound source when ``visible`` is False)."""

    cls: int  # class index
    visible: bool
    side: float  # base sprite side in pixels
    pos0: tuple[float, float]  # start centre (x, y) in pixels
    vel: tuple[float, float]  # drift in pixels / s (bounces inside the frame)
    wobble: tuple[float, float, float]  # amplitude (px), angular rate (rad/s), phase
    breathe: tuple[float, float, float]  # relative scale amplitude, rate (rad/s), phase
    sprite: np.ndarray | None  # RGBA float32 [S, S, 4], rotated / brightened copy (None off-screen)
    pitch: float  # sound variant
    offset: float  # time offset of the sound's rhythm (s)
    gain: float  # loudness relative to SOURCE_RMS


@dataclass(frozen=True)
class ScenePlan:
    index: int
    seconds: int
    mode: str  # resolved: single, multi, silence or offscreen
    conflict: bool
    instances: tuple[Instance, ...]  # visible ones first, salient = 0, drawing order back to front by side
    active: np.ndarray  # bool [n_instances, seconds]: instance sounds in segment s
    background: np.ndarray  # uint8 [H, W, 3]
    noise_rms: float
    noise_seed: int
    prior: int = -1  # class priors: the instance of the LOUD (usually sounding) class in view, else -1
    swap: SwapChoice | None = None  # swap augmentation (config.swap > 0): what synthavs.swap did, else None
