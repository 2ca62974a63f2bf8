"""What a scene is made of: the looks, sounds, backgrounds and class priors of a media library.

The scene generator (``synthavs.scene``) owns everything about *how* a clip is composed: which
objects are in view and how they move, which one sounds in each 1 s segment, occlusion, noise at
an SNR, the swap augmentation. A ``Media`` owns *what* is composed: one sprite and one sound per
class, backgrounds, class names and the LOUD / QUIET table of the class priors. Two libraries:

- ``SynthMedia``: the SynthAVS shapes and synthetic sounds (``synthavs.looks`` / ``synthavs.sounds``);
- ``StampsMedia`` (``synthavs.stamps``): real photo cut-outs and their real recordings from Debian's
  ``tuxpaint-stamps-default``, on real backgrounds.

``synthavs.scene.media_for(config)`` picks one from ``SceneConfig.media``.
"""

from __future__ import annotations

import numpy as np

from .looks import background as synth_background
from .looks import instance_sprite
from .priors import SYNTH_PRIORS, PriorTable
from .sounds import class_sound


class Media:
    """The interface a scene generator reads. Subclasses fill every method."""

    name = "media"
    class_names: list[str]  # class k's name (k = index into the library's classes)
    priors: PriorTable  # the class priors of v2 scenes (biased / prior-conflict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sprite(self, k: int, angle_deg: float, brightness: float) -> np.ndarray:
        """A clip's copy of class k: RGBA float32 [S, S, 4], colour 0..255, alpha 0..1 (the exact object mask)."""
        raise NotImplementedError

    def background(self, rng: np.random.Generator, height: int, width: int, n_distractors: int) -> np.ndarray:
        """One clip's background: float32 [H, W, 3] in 0..255 (nothing in it ever sounds)."""
        raise NotImplementedError

    def sound(self, k: int, t: np.ndarray, *, pitch: float, offset: float, seed: int) -> np.ndarray:
        """Class k's sound at absolute times t (s, float64) -> float64 with RMS about synthavs.sounds.SOURCE_RMS."""
        raise NotImplementedError


class SynthMedia(Media):
    """SynthAVS: textured shapes and synthetic sounds, the first ``num_classes`` of CLASS_NAMES."""

    name = "synth"

    def __init__(self, num_classes: int) -> None:
        from .config import CLASS_NAMES

        self.class_names = CLASS_NAMES[:num_classes]
        self.priors = SYNTH_PRIORS

    def sprite(self, k: int, angle_deg: float, brightness: float) -> np.ndarray:
        return instance_sprite(k, angle_deg, brightness)

    def background(self, rng: np.random.Generator, height: int, width: int, n_distractors: int) -> np.ndarray:
        return synth_background(rng, height, width, n_distractors)

    def sound(self, k: int, t: np.ndarray, *, pitch: float, offset: float, seed: int) -> np.ndarray:
        return class_sound(k, t, pitch=pitch, offset=offset, seed=seed)


__all__ = ["Media", "SynthMedia"]
