"""The export's parity rule counts mask pixels decided the same way (binary by sign, semantic by argmax);
the scale-aware diff limit runs in every export test (tests/engine/test_engine_export.py, test_engine_cli.py)."""

from __future__ import annotations

import numpy as np

from engine.export import MASK_AGREEMENT, mask_agreement


def test_mask_agreement_binary_and_semantic():
    ref = np.array([[[[1.0, -1.0], [2.0, -3.0]]]])  # [1, 1, 2, 2]
    assert mask_agreement(ref, ref + 1e-3) == 1.0
    assert mask_agreement(ref, ref * np.array([1, 1, 1, -1]).reshape(1, 1, 2, 2)) == 0.75
    sem = np.zeros((1, 3, 2, 2))
    sem[0, 1] = 1.0
    flipped = sem.copy()
    flipped[0, 2, 0, 0] = 2.0
    assert mask_agreement(sem, sem) == 1.0 and mask_agreement(sem, flipped) == 0.75
    assert MASK_AGREEMENT > 0.99
