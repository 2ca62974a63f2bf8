"""What the model hears, said honestly: a concept name, "nothing" or "unsure".

The concept head always has a winner (softmax sums to 1): on silence the shipped weights say
"a car engine revving 0.94". Two measured rules turn its logits into a truthful label:

- **nothing**: the logits are close (Euclidean distance < NOTHING_DISTANCE) to the model's own answer
  for silence, taken once per loaded model from a step on zero audio (so the rule needs no stored
  numbers per checkpoint);
- **unsure**: otherwise, when the best concept leads the second by less than UNSURE_MARGIN logits.

Calibration (shipped weights, 24 SynthAVS test clips x 5 frames per set at 224x224, 2026-11-26;
`bench/hearing.py` reproduces it): distance to the zero-audio answer — silence 0.31 .. 2.39, every
sounding set >= 4.90 (single-source 4.90 .. 13.85, off-screen 5.19 .. 13.81, white noise >= 8.10,
a voice-like harmonic sweep >= 6.53, a 1 kHz tone >= 9.00): 100% of silence frames and 0% of the
others fall under 3.5. Margin < 1.5: 0.8% of single-source frames, 6.7% of off-screen, 0% of the
tone, 14% of white noise and 97% of the voice-like sound (a sound the weights never learned).
"""

from __future__ import annotations

import numpy as np

NOTHING_DISTANCE = 3.5  # logits; silence <= 2.39, any sound >= 4.90 (measured above)
UNSURE_MARGIN = 1.5  # logits between the best and the second concept


class Hearing:
    """Labels one frame's concept logits [K]. ``silence`` is the model's logits for zero audio."""

    def __init__(self, silence: np.ndarray | None, names: list[str]) -> None:
        self.silence = None if silence is None else np.asarray(silence, np.float64).reshape(-1)
        self.names = names

    def label(self, logits: np.ndarray) -> str:
        cl = np.asarray(logits, np.float64).reshape(-1)
        if self.silence is not None and self.silence.shape == cl.shape and np.linalg.norm(cl - self.silence) < NOTHING_DISTANCE:
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
