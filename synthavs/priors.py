"""Class-level priors (SynthAVS v2): a visual shortcut a model can really learn, and its conflict.

With priors on, a scene's classes are not uniform. LOUD classes nearly always sound when in view
(probability ``bias`` per segment), QUIET ones rarely (``1 - bias``). Most scenes show exactly one
LOUD object (the *prior object*); with ``companion_prob`` its COMPANION, a QUIET class, stands next
to it and stays silent, like the person holding the guitar. The other visible objects are QUIET.
Which object is the salient one (largest, in front) is drawn independently of class, so the
shortcut is "paint the LOUD class", not "paint the big one".

A model that learns the shortcut instead of listening fails the conflict split: the prior object
is in view and silent for the whole clip while another object (often its companion) sounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOUD: tuple[int, ...] = (0, 1, 2, 5)  # guitar, dog, siren, drum: usually sound when in view
QUIET: tuple[int, ...] = (3, 4, 6, 7)  # piano, bird, car, baby: rarely sound
COMPANION: dict[int, int] = {0: 7, 1: 4, 2: 6, 5: 3}  # LOUD class -> its silent companion (QUIET)
LOUD_SCENE_PROB = 0.85  # chance a (non-conflict) priors scene shows a LOUD class at all


@dataclass(frozen=True)
class PriorTable:
    """Which classes of a media library are LOUD, which QUIET, and each LOUD class's companion."""

    loud: tuple[int, ...]  # usually sound when in view
    quiet: tuple[int, ...]  # rarely sound (every other class of the library)
    companion: dict[int, int]  # LOUD class -> its silent companion (a QUIET class)
    num_classes: int  # classes of the library (off-screen sources are drawn from all of them)


SYNTH_PRIORS = PriorTable(loud=LOUD, quiet=QUIET, companion=COMPANION, num_classes=8)


def choose_classes(
    rng: np.random.Generator,
    n_visible: int,
    n_total: int,
    *,
    conflict: bool,
    companion_prob: float,
    table: PriorTable = SYNTH_PRIORS,
) -> tuple[np.ndarray, int]:
    """(classes [n_total], prior slot or -1). Visible instances come first in random order (slot 0
    is the salient one), then the off-screen source if n_total > n_visible."""
    loud_scene = conflict or rng.random() < LOUD_SCENE_PROB
    visible: list[int] = []
    anchor = -1
    if loud_scene:
        anchor = int(rng.choice(table.loud))
        visible.append(anchor)
        if n_visible >= 2 and (conflict or rng.random() < companion_prob):
            visible.append(table.companion[anchor])
    rest = [c for c in table.quiet if c not in visible]
    fill = n_visible - len(visible)
    visible += [int(c) for c in rng.choice(rest, size=fill, replace=False)] if fill > 0 else []
    order = rng.permutation(n_visible)
    visible = [visible[i] for i in order]
    prior = visible.index(anchor) if loud_scene else -1
    classes = list(visible)
    if n_total > n_visible:  # off-screen source: any class not in view
        unseen = [c for c in range(table.num_classes) if c not in classes]
        classes.append(int(rng.choice(unseen)))
    return np.asarray(classes, np.int64), prior


def pick_sounding(
    rng: np.random.Generator,
    *,
    mode: str,
    conflict: bool,
    classes: np.ndarray,
    prior: int,
    n_vis: int,
    n_total: int,
    bias: float,
    table: PriorTable = SYNTH_PRIORS,
) -> np.ndarray:
    """bool [n_total]: which instances sound in a segment under the class priors.

    single: exactly one visible instance, drawn with weight bias (LOUD) / 1 - bias (QUIET);
    multi: each visible instance independently with those probabilities, at least one;
    conflict (either): the prior object never sounds, the others as above with weight 1 each."""
    pick = np.zeros(n_total, bool)
    loud = np.isin(classes[:n_vis], table.loud)
    weight = np.where(loud, bias, 1.0 - bias)
    if conflict:
        weight = np.ones(n_vis)
        weight[prior] = 0.0
    if weight.sum() <= 0:
        weight = np.ones(n_vis)
    if mode == "multi":
        prob = weight if not conflict else np.where(weight > 0, 0.5, 0.0)
        pick[:n_vis] = rng.random(n_vis) < prob
    if not pick.any():
        pick[int(rng.choice(n_vis, p=weight / weight.sum()))] = True
    return pick
