"""The "hears: nothing / unsure" rule on the shipped weights: silence says nothing, a learned sound
says its name, and the rule itself on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from stream.stages.hearing import MASK_EMPTY, NOTHING_DISTANCE, UNSURE_MARGIN, Hearing


def test_rule_on_hand_made_logits():
    names = ["a", "b", "c"]
    h = Hearing(np.array([0.0, 0.0, 5.0]), names)
    assert h.label(np.array([0.5, 0.0, 5.0])) == "nothing"  # near the silence answer
    assert h.label(np.array([6.0, 6.0 - UNSURE_MARGIN / 2, 0.0])) == "unsure"
    assert h.label(np.array([9.0, 0.0, 0.0])) == "a"
    assert np.linalg.norm(np.array([9.0, 0.0, 0.0]) - [0, 0, 5]) > NOTHING_DISTANCE
    assert Hearing(None, names).label(np.array([0.0, 0.0, 5.0])) == "c"  # no reference: never "nothing"


def test_a_painted_mask_is_never_nothing():
    """The concept head never learns silence, so its zero-audio answer can equal a real class's
    (the shipped weights: drum). A frame whose mask covers part of the picture is not "nothing"."""
    h = Hearing(np.array([0.0, 0.0, 5.0]), ["a", "b", "c"])
    silent_looking = np.array([0.1, 0.0, 5.0])
    assert h.label(silent_looking, mask_share=0.0) == "nothing"
    assert h.label(silent_looking, mask_share=MASK_EMPTY / 2) == "nothing"
    assert h.label(silent_looking, mask_share=0.08) == "c"  # painted: the class the logits name
    assert h.label(silent_looking) == "nothing"  # mask unknown: the logits alone decide


@pytest.mark.slow  # ~15 s: loads the shipped weights, two clips through torch
def test_shipped_weights_hear_nothing_on_silence_and_name_a_learned_sound():
    from weights import SYNTHAVS

    if not SYNTHAVS.is_file():
        pytest.skip("shipped weights absent")
    from bench.hearing import measure

    res = measure(str(SYNTHAVS), clips=1, sets=("silence", "single"))
    assert (res["silence"]["label"] == "nothing").all(), res["silence"]
    assert not np.isin(res["single"]["label"], ["nothing", "unsure"]).any(), res["single"]["label"]
