"""The NumPy text-context keeper mirrors model/context.py exactly, and the clocked keeper closes
segments like the clip form (frames_per_segment = fps) on a steady stream."""

import numpy as np
import pytest

from stream.context import AudioRing, ContextKeeper, advance, initial_state

torch = pytest.importorskip("torch")
mctx = pytest.importorskip("model.context")


def test_advance_matches_torch_rule_exactly():
    from model.config import ICFConfig

    cfg = ICFConfig(width=8, frame_ring=5, segment_ring=3)
    ts = mctx.initial_state(1, cfg)
    ns = initial_state(1, 8, 5, 3)
    rng = np.random.default_rng(0)
    for i in range(23):
        ft, st = rng.standard_normal((1, 8), np.float32), rng.standard_normal((1, 8), np.float32)
        close = i % 4 == 3
        ts = mctx.advance(ts, torch.from_numpy(ft), torch.from_numpy(st), close_segment=close)
        ns = advance(ns, ft, st, close_segment=close)
        for a, b in zip(ts.as_inputs(), ns.as_inputs().values()):
            np.testing.assert_array_equal(a.numpy(), b)


def test_clocked_keeper_equals_frames_per_segment_rule():
    """30 fps stream, segments of 1 s: the states seen by frames equal the clip form's with
    frames_per_segment = 30, including when texts arrive with next_pts (scale-out path)."""
    from model.config import ICFConfig

    cfg = ICFConfig(width=4, frame_ring=30, segment_ring=4)
    rng = np.random.default_rng(1)
    texts = rng.standard_normal((100, 2, 4)).astype(np.float32)
    pts = [i * 1_000_000_000 // 30 for i in range(100)]
    ts = mctx.initial_state(1, cfg)
    keeper = ContextKeeper(4, 30, 4)
    keeper2 = ContextKeeper(4, 30, 4)
    for i in range(100):
        got = keeper.state_for(pts[i])
        got2 = keeper2.state_for(pts[i])
        for a, b, c in zip(ts.as_inputs(), got.as_inputs().values(), got2.as_inputs().values()):
            np.testing.assert_array_equal(a.numpy(), b)
            np.testing.assert_array_equal(a.numpy(), c)
        ft, st = texts[i, 0:1], texts[i, 1:2]
        ts = mctx.advance(ts, torch.from_numpy(ft), torch.from_numpy(st), close_segment=(i + 1) % 30 == 0)
        keeper.record(pts[i], ft, st)
        keeper2.record(pts[i], ft, st, next_pts_ns=pts[i + 1] if i + 1 < 100 else None)
    assert keeper.segments_closed == 3


def test_audio_ring_windows_and_gaps():
    ring = AudioRing(sample_rate=10, seconds=2.0)  # 20 samples
    ring.write(0, np.arange(1, 11, dtype=np.float32))
    np.testing.assert_array_equal(ring.window(10, 4), [7, 8, 9, 10])
    np.testing.assert_array_equal(ring.window(3, 5), [0, 0, 1, 2, 3])  # before the stream: silence
    ring.write(15, np.full(5, 5, np.float32))  # hole 10..14 reads as zeros
    np.testing.assert_array_equal(ring.window(20, 8), [0, 0, 0, 5, 5, 5, 5, 5])
    np.testing.assert_array_equal(ring.window(11, 3), [9, 10, 0])
    assert ring.gap_samples == 5
    ring.write(20, np.arange(30, dtype=np.float32))  # wraps the ring more than once
    np.testing.assert_array_equal(ring.window(50, 3), [27, 28, 29])
    assert ring.window(55, 5)[-1] == 0 and ring.underrun_samples == 5
