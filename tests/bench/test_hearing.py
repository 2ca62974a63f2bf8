"""The "hears: nothing / unsure" rule on the shipped weights: silence says nothing, a learned sound
says its name, and the rule itself on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from stream.hearing import NOTHING_DISTANCE, UNSURE_MARGIN, Hearing


def test_rule_on_hand_made_logits():
    names = ["a", "b", "c"]
    h = Hearing(np.array([0.0, 0.0, 5.0]), names)
    assert h.label(np.array([0.5, 0.0, 5.0])) == "nothing"  # near the silence answer
    assert h.label(np.array([6.0, 6.0 - UNSURE_MARGIN / 2, 0.0])) == "unsure"
    assert h.label(np.array([9.0, 0.0, 0.0])) == "a"
    assert np.linalg.norm(np.array([9.0, 0.0, 0.0]) - [0, 0, 5]) > NOTHING_DISTANCE
    assert Hearing(None, names).label(np.array([0.0, 0.0, 5.0])) == "c"  # no reference: never "nothing"


@pytest.mark.slow  # ~15 s: loads the shipped weights, two clips through torch
def test_shipped_weights_hear_nothing_on_silence_and_name_a_learned_sound():
    from weights import SHIPPED

    if not SHIPPED.is_file():
        pytest.skip("shipped weights absent")
    from bench.hearing import measure

    res = measure(str(SHIPPED), clips=1, sets=("silence", "single"))
    assert (res["silence"]["label"] == "nothing").all(), res["silence"]
    assert not np.isin(res["single"]["label"], ["nothing", "unsure"]).any(), res["single"]["label"]
