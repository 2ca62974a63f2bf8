"""What the model hears, said honestly: a concept name, "nothing" or "unsure".

The concept head always has a winner (softmax sums to 1): on silence the first shipped weights said
"a car engine revving 0.94". Two measured rules turn its logits into a truthful label:

- **nothing**: the logits are close (Euclidean distance < NOTHING_DISTANCE) to the model's own answer
  for silence, taken once per loaded model from a step on zero audio (so the rule needs no stored
  numbers per checkpoint), AND the model paints (almost) nothing: its mask covers less than
  MASK_EMPTY of the frame. The mask test is needed because the concept head is never trained on
  silence, so its answer for zero audio is some class's answer: the current shipped weights give
  drum clips the same logits as silence (distance 0.13-0.65), while they do segment the drum;
- **unsure**: otherwise, when the best concept leads the second by less than UNSURE_MARGIN logits.

Calibration (shipped weights, 24 SynthAVS test clips x 5 frames per set at 224x224, 2026-11-26;
`python -m bench.hearing --clips 24` reproduces it; the table is in the README): distance to the
zero-audio answer — silence 0.01 .. 0.65, single-source 0.13 .. 14.81 (the 15 frames under 3.5 are
all drum clips, each with a painted mask of 8.7-13.4% of the frame), off-screen sound 0.08 .. 14.87,
white noise >= 8.78, a voice-like harmonic sweep >= 12.46, a 1 kHz tone >= 14.58. With both tests:
silence says nothing in 84.2% of frames (the rest have a painted mask), single-source in 0%.
"""

from __future__ import annotations

import numpy as np

NOTHING_DISTANCE = 3.5  # logits; silence <= 0.65 (measured above); drum sounds also fall under it, hence MASK_EMPTY
UNSURE_MARGIN = 1.5  # logits between the best and the second concept
MASK_EMPTY = 0.005  # share of the frame's pixels: below it the model paints nothing (the eval's empty rule is 1%)


class Hearing:
    """Labels one frame's concept logits [K]. ``silence`` is the model's logits for zero audio."""

    def __init__(self, silence: np.ndarray | None, names: list[str]) -> None:
        self.silence = None if silence is None else np.asarray(silence, np.float64).reshape(-1)
        self.names = names

    def label(self, logits: np.ndarray, mask_share: float | None = None) -> str:
        """``mask_share``: the share of the frame the model's mask covers (None: not known, the
        logits alone decide)."""
        cl = np.asarray(logits, np.float64).reshape(-1)
        quiet_mask = mask_share is None or mask_share < MASK_EMPTY
        if (self.silence is not None and self.silence.shape == cl.shape and quiet_mask
                and np.linalg.norm(cl - self.silence) < NOTHING_DISTANCE):
            return "nothing"
        if cl.size >= 2:
            top2 = np.partition(cl, -2)[-2:]
            if top2[1] - top2[0] < UNSURE_MARGIN:
                return "unsure"
        i = int(cl.argmax())
        return self.names[i] if i < len(self.names) else f"concept{i}"


def silence_reference(backend) -> np.ndarray | None:
    """The backend's concept logits for zero audio (and a blank picture, empty context)."""
    inputs = {name: np.zeros(shape, dt) for name, (shape, dt) in backend.input_specs.items()}
    out = backend.infer(inputs)
    cl = out.get("concept_logits") if isinstance(out, dict) else None
    return None if cl is None else np.asarray(cl[0], np.float64)
