"""Segments live in training: SynthAVS clips with several frames per 1 s segment, their frame times,
and the segment-close flags the objective derives from them (the stream's clock rule)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import build_dataset, collate, prepare_batch
from training.objective import batch_closes


def test_two_frames_per_segment_times_labels_and_audio():
    one = build_dataset("synthavs:mixed,clips=2", split="train", size=(64, 64), frames=2)  # the same 2 s
    two = build_dataset("synthavs:mixed,clips=2,segment_frames=2", split="train", size=(64, 64), frames=4)
    a, b = one[1], two[1]
    assert np.allclose(a["frame_times"], [0.9, 1.9]) and np.allclose(b["frame_times"], [0.4, 0.9, 1.4, 1.9])
    # the segment-end frames of 2-per-second clips are the 1-per-second clip's frames
    assert np.array_equal(b["images"][1], a["images"][0]) and np.array_equal(b["images"][3], a["images"][1])
    assert np.array_equal(b["audio"][1], a["audio"][0]) and np.array_equal(b["labels"][3], a["labels"][1])
    assert np.array_equal(b["labels"][0], b["labels"][1])  # labels are per second
    assert np.abs(b["audio"][0][: 15600 - 8000]).max() == 0.0  # the 0.975 s window reaches before the start: silence
    batch = prepare_batch(collate([two[0], two[1]]), torch.device("cpu"), 8)
    assert batch_closes(batch) == [False, True, False, True]
    assert batch_closes(prepare_batch(collate([one[0]]), torch.device("cpu"), 8)) == [True] * 2


def test_bad_segment_frames_fail_clearly():
    with pytest.raises(ValueError, match="segment_frames=3 must be >= 1 and divide the clip fps"):
        build_dataset("synthavs:mixed,clips=2,segment_frames=3", split="train", size=(64, 64), frames=4)
