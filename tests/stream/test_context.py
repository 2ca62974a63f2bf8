"""The NumPy text-context keeper mirrors model/context.py exactly (push and close flags), the
clocked keeper closes segments like the clip form (frames_per_segment = fps) on a steady stream,
and its frame ring is sampled in time: a 30 fps stream at ring rate r sees an r fps clip's rings."""

import numpy as np
import pytest

from stream.stages.context import AudioRing, ContextKeeper, advance, initial_state

torch = pytest.importorskip("torch")
mctx = pytest.importorskip("model.context")


@pytest.mark.parametrize("pushes", ["every", "sampled"])
def test_advance_matches_torch_rule_exactly(pushes):
    """The push flag included: frames that close no slot leave the frame ring as it was, a close
    always pushes (even when the caller's push flag says no)."""
    from model.config import ICFConfig

    cfg = ICFConfig(width=8, frame_ring=5, segment_ring=3)
    ts = mctx.initial_state(1, cfg)
    ns = initial_state(1, 8, 5, 3)
    rng = np.random.default_rng(0)
    pushed = 0
    for i in range(23):
        ft, st = rng.standard_normal((1, 8), np.float32), rng.standard_normal((1, 8), np.float32)
        close = i % 4 == 3
        push = True if pushes == "every" else bool(rng.random() < 0.4)
        before = ns.frame_ring.copy()
        ts = mctx.advance(ts, torch.from_numpy(ft), torch.from_numpy(st), close_segment=close, push_frame=push)
        ns = advance(ns, ft, st, close_segment=close, push_frame=push)
        for a, b in zip(ts.as_inputs(), ns.as_inputs().values()):
            np.testing.assert_array_equal(a.numpy(), b)
        if push or close:
            pushed += 1
            np.testing.assert_array_equal(ns.frame_ring[0, -1], ft[0])
        else:
            np.testing.assert_array_equal(ns.frame_ring, before)
    assert 6 < pushed < 23 if pushes == "sampled" else pushed == 23  # the sampled case really skips frames


def test_clocked_keeper_equals_frames_per_segment_rule():
    """30 fps stream, segments of 1 s, a ring clock faster than the camera (ring rate 60: every
    frame closes its own slot, the keeper's behaviour before the ring was sampled): the states
    seen by frames equal the clip form's with frames_per_segment = 30, including when texts arrive
    with next_pts (scale-out path). (At exactly 30 the integer-ns pts of frame 1, 33_333_333, lie
    just inside slot 0: a clock equal to the camera's rate samples at its mercy.)"""
    from model.config import ICFConfig

    cfg = ICFConfig(width=4, frame_ring=30, segment_ring=4)
    rng = np.random.default_rng(1)
    texts = rng.standard_normal((100, 2, 4)).astype(np.float32)
    pts = [i * 1_000_000_000 // 30 for i in range(100)]
    ts = mctx.initial_state(1, cfg)
    keeper = ContextKeeper(4, 30, 4, ring_rate=60)
    keeper2 = ContextKeeper(4, 30, 4, ring_rate=60)
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
    assert keeper.segments_closed == 3 and keeper.frames_pushed == keeper2.frames_pushed == 99  # the last one waits


@pytest.mark.parametrize("rate", [1, 2, 5])
def test_sampled_ring_at_30_fps_equals_a_clip_at_the_ring_rate(rate):
    """A 30 fps stream at ring rate r pushes the last frame of each 1/r s slot, so every frame sees
    exactly the rings the r fps clip of those slot-end frames (model.ring_pushes / segment_closes,
    the torch rule) shows its frame of the same slot; also on the next_pts path and with dropped
    frames (a slot whose frames were all dropped simply has no entry, as in a clip missing it)."""
    from model import ICFConfig, ring_pushes, segment_closes

    n, fps = 95, 30
    rng = np.random.default_rng(rate)
    texts = rng.standard_normal((n, 2, 6)).astype(np.float32)
    kept = [i for i in range(n) if i % 17 != 5 and not 42 <= i <= 47]  # drops, and slot [1.4 s, 1.6 s) gone
    pts = {i: i * 1_000_000_000 // fps for i in range(n)}
    keeper, keeper2 = ContextKeeper(6, 8, 3, ring_rate=rate), ContextKeeper(6, 8, 3, ring_rate=rate)
    seen = {}
    for j, i in enumerate(kept):
        seen[i] = keeper.state_for(pts[i])
        for a, b in zip(keeper2.state_for(pts[i]).as_inputs().values(), seen[i].as_inputs().values()):
            np.testing.assert_array_equal(a, b)
        keeper.record(pts[i], texts[i, 0], texts[i, 1])
        keeper2.record(pts[i], texts[i, 0], texts[i, 1], next_pts_ns=pts[kept[j + 1]] if j + 1 < len(kept) else None)
    # the r fps clip: the last kept frame of every slot, pushed / closed by the clip-side rule
    slot = lambda i: pts[i] * rate // 1_000_000_000  # noqa: E731
    ends = [i for j, i in enumerate(kept) if j + 1 == len(kept) or slot(kept[j + 1]) > slot(i)]
    times = [pts[i] / 1e9 for i in ends]
    pushes, closes = ring_pushes(times, rate), segment_closes(times)
    assert all(pushes[:-1])  # at its own rate a clip pushes every frame (the last one looks ahead into nothing)
    ts = mctx.initial_state(1, ICFConfig(width=6, frame_ring=8, segment_ring=3, frame_ring_rate=rate))
    clip_seen = {}
    for i, close, push in zip(ends, closes, pushes):
        clip_seen[slot(i)] = ts
        ts = mctx.advance(ts, torch.from_numpy(texts[i, 0:1]), torch.from_numpy(texts[i, 1:2]), close_segment=close, push_frame=push)
    for i in kept:
        for a, b in zip(clip_seen[slot(i)].as_inputs(), seen[i].as_inputs().values()):
            np.testing.assert_array_equal(a.numpy(), b)
    assert keeper.frames_pushed == len(ends) - 1 and keeper.segments_closed == sum(closes[:-1])
    if rate < fps:
        assert max(int(s.frame_valid.sum()) for s in seen.values()) == rate - 1  # never more than the clip holds


def test_ring_rate_from_the_artifact_and_old_artifacts_mean_one():
    """The stream reads the ring clock from the sidecar (stream.stages.models.model_geometry); a sidecar
    written before the field (no state.frame_ring_rate, none in the model config) means 1."""
    from engine.spec import ArtifactError, frame_ring_rate
    from stream.stages.models import NullBackend, model_geometry

    assert model_geometry(NullBackend(width=4, frame_ring=3, segment_ring=2, frame_ring_rate=2))["ring_rate"] == 2
    old = NullBackend(width=4, frame_ring=3, segment_ring=2)
    del old.sidecar["model"]["config"]["frame_ring_rate"]
    assert model_geometry(old)["ring_rate"] == 1
    assert frame_ring_rate({"state": {"frame_ring_rate": 5}, "model": {"config": {"frame_ring_rate": 2}}}) == 5
    for bad in (0, 2.5, "2", True):
        with pytest.raises(ArtifactError, match="frame_ring_rate"):
            frame_ring_rate({"model": {"config": {"frame_ring_rate": bad}}})
    with pytest.raises(ValueError, match="ring_rate"):
        ContextKeeper(4, 3, 2, ring_rate=0)


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
