"""Faults of issue 14, each reproduced with a fixture the test makes: poisoned audio, hostile but
well-formed messages, a bad worker, unbounded outputs. Real sockets, stages in threads."""

from __future__ import annotations

import json
import time

import numpy as np
import zmq

from stream.context import ContextKeeper
from stream.protocol import encode, finite
from stream.segmenter import ContextStage

from .test_fuzz import frame, harness  # noqa: F401 - fixture


def audio(first: int, samples: np.ndarray, seq: int = 0) -> list:
    return encode("audio", {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "first_sample": first,
                            "sample_rate": 16000}, {"samples": samples})


def test_finite_replaces_nan_and_inf_and_clips():
    x = np.array([0.5, np.nan, np.inf, -np.inf, 3.0], np.float32)
    clean, bad = finite(x, -1.0, 1.0)
    assert bad == 3 and clean.tolist() == [0.5, 0.0, 0.0, 0.0, 1.0]
    ok = np.zeros(4, np.float32)
    assert finite(ok)[0] is ok  # clean input: no copy


def test_keeper_never_stores_a_nonfinite_text():
    k = ContextKeeper(4, 3, 2)
    k.state_for(0)
    k.record(0, np.ones(4), np.ones(4))
    k.state_for(33_000_000)
    k.record(33_000_000, np.full(4, np.nan), np.ones(4))  # a poisoned frame
    state = k.state_for(66_000_000)
    assert k.rejected == 1
    assert all(np.isfinite(a).all() for a in state.as_inputs().values())
    assert state.frame_valid.sum() == 1  # the good frame is in, the poisoned one is not


def test_nan_audio_costs_at_most_its_frame(harness):
    """Ten NaN samples in the audio: the context stage sanitises them (counted) and the text
    context stays finite, so later frames are not poisoned (issue 14.1). The null backend's frame
    text is the mean audio level, so a NaN that reached it would land in the rings."""
    h = harness(ContextStage(workers=1, inline={"kind": "null"}, audio_wait_ms=200))
    video = h.sock(zmq.PUB, "video", True)
    asock = h.sock(zmq.PUB, "audio", True)
    pull = h.sock(zmq.PULL, "results", True)
    h.start()
    time.sleep(0.3)
    tone = np.full(16000 * 2, 0.1, np.float32)
    tone[16000:16010] = np.nan
    tone[16010] = np.inf
    for pos in range(0, tone.size, 1600):
        asock.send_multipart(audio(pos, tone[pos:pos + 1600], pos // 1600))
    time.sleep(0.2)
    got = 0
    for seq in range(0, 60, 3):  # frames spread over the 2 s, after the NaN too
        video.send_multipart(frame(seq))
        if pull.poll(3000):
            pull.recv_multipart()
            got += 1
    assert got >= 15
    assert h.stage.counters["nonfinite_audio_samples"] == 11
    assert all(np.isfinite(a).all() for a in h.stage.keeper.state.as_inputs().values())
    assert h.stage.keeper.state.segment_valid.sum() >= 1  # it really did run past the NaN second
