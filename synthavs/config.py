"""SynthAVS scene configuration: one frozen dataclass, every field commented.

CLASS_NAMES repeats model.text_bank.SYNTHAVS_CONCEPTS (same names, same order, so class index k
is the same everywhere) without importing torch: the stream imports this package for its live
source and must stay light. A test asserts the two lists agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

CLASS_NAMES: list[str] = ["guitar", "dog", "siren", "piano", "bird", "drum", "car", "baby"]
SAMPLE_RATE = 16_000  # Hz, mono; the model's front end (VGGish) expects exactly this
MODES = ("single", "multi", "silence", "offscreen", "semantic", "mixed", "conflict")


@dataclass(frozen=True)
class SceneConfig:
    """What kind of scenes a SceneGenerator makes. Everything is deterministic in (seed, clip index)."""

    width: int = 224  # frame width in pixels
    height: int = 224  # frame height in pixels
    fps: int = 30  # frames per second of clips and of the live stream
    mode: str = "single"  # one of MODES: single (S4-like), multi (MS3-like), silence, offscreen,
    #   semantic (AVSS-like: single or multi per clip), mixed (training blend), conflict (= single, conflict=True)
    bias: float = 0.5  # probability that the most salient (largest, front-most) object is the one sounding
    conflict: bool = False  # bias-conflicting split: the salient object never sounds, a less salient one does
    snr_db: tuple[float, float] = (10.0, 30.0)  # per-clip signal-to-noise ratio range of the added noise (dB)
    max_objects: int = 3  # at most this many class objects in view (1..4)
    min_objects: int = 1  # at least this many (conflict scenes always have >= 2)
    num_classes: int = 8  # K: classes used, the first K of CLASS_NAMES (1..8)
    distractors: tuple[int, int] = (3, 7)  # min / max distractor blobs painted into the background
    switch_prob: float = 0.35  # per segment: chance the sounding choice is drawn afresh (else kept)
    event_prob: float = 0.15  # mixed mode: per-segment chance of a silent or off-screen segment
    episode_seconds: int = 5  # stream(): the endless stream is a playlist of clips this long
    seed: int = 0  # base seed; clip i uses numpy SeedSequence([seed, i])

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode '{self.mode}' is not one of {list(MODES)}")
        if not 0.0 <= self.bias <= 1.0:
            problems.append(f"bias {self.bias} must lie in [0, 1]")
        if not 1 <= self.num_classes <= len(CLASS_NAMES):
            problems.append(f"num_classes {self.num_classes} must lie in 1..{len(CLASS_NAMES)} (one look and sound per class)")
        if not 1 <= self.min_objects <= self.max_objects <= min(4, self.num_classes):
            problems.append(
                f"need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects}) <= min(4, num_classes)"
            )
        if self.width < 32 or self.height < 32:
            problems.append(f"frame {self.width}x{self.height} is too small (>= 32x32)")
        if self.fps < 1 or self.episode_seconds < 1:
            problems.append("fps and episode_seconds must be >= 1")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            problems.append(f"snr_db {self.snr_db} must be (low, high)")
        if problems:
            raise ValueError("bad SceneConfig: " + "; ".join(problems))

    @property
    def conflicting(self) -> bool:
        return self.conflict or self.mode == "conflict"

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[: self.num_classes]

    def replace(self, **overrides: Any) -> SceneConfig:
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["CLASS_NAMES", "MODES", "SAMPLE_RATE", "SceneConfig"]
