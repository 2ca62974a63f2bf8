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
MEDIA = ("synth", "stamps")  # synthavs.media: the libraries a scene can be made of
MODES = ("single", "multi", "silence", "offscreen", "semantic", "mixed", "conflict", "biased", "prior-conflict")
# v2 modes: biased = mixed with class priors and no off-screen sound (the shortcut training stream);
# prior-conflict = scenes where a usually-sounding class is in view and silent while another object sounds.


@dataclass(frozen=True)
class SceneConfig:
    """What kind of scenes a SceneGenerator makes. Everything is deterministic in (seed, clip index)."""

    width: int = 224  # frame width in pixels
    height: int = 224  # frame height in pixels
    fps: int = 30  # frames per second of clips and of the live stream
    mode: str = "single"  # one of MODES: single (S4-like), multi (MS3-like), silence, offscreen,
    #   semantic (AVSS-like: single or multi per clip), mixed (training blend), conflict (= single, conflict=True)
    bias: float = 0.5  # probability that the most salient (largest, front-most) object is the one sounding;
    #   in multi mode each other visible object sounds with 1 - bias (0.5 at the default, as in v1);
    #   with priors=True it is instead the chance a LOUD class sounds when in view (QUIET classes: 1 - bias)
    priors: bool = False  # class-level priors (synthavs.priors): LOUD classes nearly always sound, QUIET ones rarely,
    #   and a silent companion (a QUIET class) often shares the scene with a LOUD one; salience is then class-blind
    companion_prob: float = 0.7  # priors: chance a scene with a LOUD class also shows its silent companion
    offscreen: bool = True  # mixed / biased: False = no off-screen sound anywhere in the stream (silence events stay)
    mix: float = 0.0  # frame mixing stressor: this fraction of clip() frames shows another clip's frame (exact over clips)
    swap: float = 0.0  # swap augmentation (synthavs.swap): chance a one-source clip is re-sounded as another
    #   in-view object (drawn uniformly); frames unchanged, masks / labels / audio follow the new source
    conflict: bool = False  # bias-conflicting split: the salient object never sounds, a less salient one does
    snr_db: tuple[float, float] = (10.0, 30.0)  # per-clip SNR range (dB) of the added noise, measured against the
    #   clip's own sounding samples (silent clips: against SOURCE_RMS); (inf, inf) = clean
    max_objects: int = 3  # at most this many class objects in view (1..4)
    min_objects: int = 1  # at least this many (conflict scenes always have >= 2)
    num_classes: int = 8  # K: classes used, the first K of CLASS_NAMES (1..8)
    distractors: tuple[int, int] = (3, 7)  # min / max distractor blobs painted into the background
    switch_prob: float = 0.35  # per segment: chance the sounding choice is drawn afresh (else kept)
    event_prob: float = 0.15  # mixed mode: per-segment chance of a silent or off-screen segment
    episode_seconds: int = 5  # stream(): the endless stream is a playlist of clips this long
    seed: int = 0  # base seed; clip i uses numpy SeedSequence([seed, i])
    # --- media library (synthavs.media) ---
    media: str = "synth"  # synth: SynthAVS shapes + synthetic sounds; stamps: real photos + their real recordings
    #   (Debian tuxpaint-stamps-default, synthavs.stamps); num_classes applies to synth only
    objects: str = "seen"  # stamps: "seen" = the training stamps, "heldout" = the ~20% never used in training
    backgrounds: str = "train"  # stamps: "train" or "heldout" background photos (held-out splits use the latter)

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode '{self.mode}' is not one of {list(MODES)}")
        if not 0.0 <= self.bias <= 1.0:
            problems.append(f"bias {self.bias} must lie in [0, 1]")
        if self.media not in MEDIA:
            problems.append(f"media '{self.media}' is not one of {list(MEDIA)}")
        if self.objects not in ("seen", "heldout") or self.backgrounds not in ("train", "heldout"):
            problems.append(f"objects '{self.objects}' / backgrounds '{self.backgrounds}' must be seen|heldout / train|heldout")
        if self.media == "synth" and not 1 <= self.num_classes <= len(CLASS_NAMES):
            problems.append(f"num_classes {self.num_classes} must lie in 1..{len(CLASS_NAMES)} (one look and sound per class)")
        classes = self.num_classes if self.media == "synth" else 4
        if not 1 <= self.min_objects <= self.max_objects <= min(4, classes):
            problems.append(
                f"need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects}) <= min(4, num_classes)"
            )
        if self.width < 32 or self.height < 32:
            problems.append(f"frame {self.width}x{self.height} is too small (>= 32x32)")
        if self.fps < 1 or self.episode_seconds < 1:
            problems.append("fps and episode_seconds must be >= 1")
        if not 0.0 <= self.mix < 1.0:
            problems.append(f"mix {self.mix} must lie in [0, 1): the fraction of frames taken from other clips")
        if not 0.0 <= self.swap <= 1.0:
            problems.append(f"swap {self.swap} must lie in [0, 1]: the chance a one-source clip is re-sounded as another object")
        if not 0.0 <= self.companion_prob <= 1.0:
            problems.append(f"companion_prob {self.companion_prob} must lie in [0, 1]")
        if self.priors_on and self.media == "stamps" and self.objects == "heldout":
            problems.append("class priors are defined on the seen stamps only (objects=heldout has no LOUD classes)")
        if self.priors_on and self.media == "synth" and self.num_classes != len(CLASS_NAMES):
            problems.append(f"class priors need all {len(CLASS_NAMES)} classes (num_classes={self.num_classes})")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            problems.append(f"snr_db {self.snr_db} must be (low, high)")
        if problems:
            raise ValueError("bad SceneConfig: " + "; ".join(problems))

    @property
    def conflicting(self) -> bool:
        return self.conflict or self.mode in ("conflict", "prior-conflict")

    @property
    def priors_on(self) -> bool:
        return self.priors or self.mode in ("biased", "prior-conflict")

    @property
    def offscreen_on(self) -> bool:
        return self.offscreen and self.mode != "biased"

    @property
    def class_names(self) -> list[str]:
        """SynthAVS class names (stamps: synthavs.scene.media_for(config).class_names)."""
        return CLASS_NAMES[: self.num_classes]

    def replace(self, **overrides: Any) -> SceneConfig:
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["CLASS_NAMES", "MEDIA", "MODES", "SAMPLE_RATE", "SceneConfig"]
