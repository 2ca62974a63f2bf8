"""Wire format: round trips, and every malformed input is a ProtocolError (never another exception)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.wire.order import MAX_SEQ_JUMP, RESYNC, History
from stream.wire.protocol import ProtocolError, decode, encode


def test_round_trip_keeps_header_and_arrays():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    gt = np.ones((2, 3), np.uint8)
    parts = encode("frame", {"stream": "s", "seq": 5, "capture_ns": 123, "pts_ns": 9}, {"image": img, "gt_mask": gt})
    assert parts[0].startswith(b'{"kind":"frame"')  # SUB prefix filtering relies on this
    pkt = decode(parts)
    assert pkt.kind == "frame" and pkt.seq == 5 and pkt.header["pts_ns"] == 9
    np.testing.assert_array_equal(pkt.arrays["image"], img)
    np.testing.assert_array_equal(pkt.arrays["gt_mask"], gt)
    assert [p["name"] for p in pkt.header["parts"]] == ["image", "gt_mask"]


def _good():
    return encode("mask", {"stream": "s", "seq": 1, "capture_ns": 1, "pts_ns": 0}, {"mask": np.zeros((4, 4), np.uint8)})


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: [b"not json", *p[1:]],
        lambda p: [b"[1,2]", *p[1:]],
        lambda p: p[:1],  # truncated: payload missing
        lambda p: [p[0], b"\x00" * 15],  # wrong payload size
        lambda p: [p[0], p[1], b"extra"],
        lambda p: [p[0].replace(b'"seq":1', b'"seq":-1'), p[1]],
        lambda p: [p[0].replace(b'"seq":1', b'"seq":true'), p[1]],
        lambda p: [p[0].replace(b'"uint8"', b'"object"'), p[1]],
        lambda p: [p[0].replace(b'"kind":"mask"', b'"kind":"evil"'), p[1]],
        lambda p: [p[0].replace(b'"v":1', b'"v":99'), p[1]],
        lambda p: [p[0].replace(b"[4,4]", b"[4,-4]"), p[1]],
        lambda p: [p[0].replace(b'"raw"', b'"zip"'), p[1]],
        lambda p: [b"\xff\xfe" + p[0], p[1]],
        lambda p: [],
    ],
)
def test_malformed_is_protocol_error(mutate):
    with pytest.raises(ProtocolError):
        decode(mutate(_good()))


def test_oversized_is_refused():
    big = encode("frame", {"stream": "s", "seq": 0, "capture_ns": 0}, {"image": np.zeros((100, 100, 3), np.uint8)})
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(big, max_bytes=10_000)
    with pytest.raises(ProtocolError, match="header"):
        decode([b"{" + b" " * 70_000 + b"}"])


def test_unexpected_kind_is_refused():
    with pytest.raises(ProtocolError):
        decode(_good(), kinds=("frame",))


header_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["kind", "v", "stream", "seq", "capture_ns", "parts", "x"]), header_values),
       payloads=st.lists(st.binary(max_size=64), max_size=3))
def test_fuzzed_headers_never_crash(header, payloads):
    try:
        decode([json.dumps(header).encode(), *payloads])
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_fuzzed_bytes_never_crash(parts):
    try:
        decode(parts)
    except ProtocolError:
        pass


# ---- per-kind validation (issue 14.6 / 14.7): well-formed messages with hostile values ----
F32 = np.float32


def valid_messages() -> dict[str, tuple[dict, dict]]:
    """One valid (header, arrays) per kind of docs/protocol.md."""
    img, m = np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8), np.uint8)
    base = {"stream": "s", "seq": 3, "capture_ns": 10, "t": {"capture": 10}}
    return {
        "frame": (dict(base, pts_ns=100, format="rgb24"), {"image": img, "gt_mask": m}),
        "audio": (dict(base, first_sample=1600, sample_rate=16000), {"samples": np.zeros(64, F32)}),
        "job": (dict(base, pts_ns=100, prev_seq=2, dropped_before=0),
                {"image": img, "audio": np.zeros((1, 16), F32), "frame_ring": np.zeros((1, 3, 4), F32),
                 "frame_valid": np.zeros((1, 3), F32), "segment_ring": np.zeros((1, 2, 4), F32), "segment_valid": np.zeros((1, 2), F32)}),
        "ready": (dict(base, job=3, ok=True, worker="worker1",
                       geometry={"width": 4, "frame_ring": 3, "segment_ring": 2, "audio_samples": 16}),
                  {"frame_text": np.zeros((1, 4), F32), "segment_text": np.zeros((1, 4), F32)}),
        "result": (dict(base, pts_ns=100, prev_seq=2, dropped_before=0, concepts=[["dog", 0.9]], mask_kind="binary", model="m"),
                   {"mask": m, "image": img}),
        "mask": (dict(base, pts_ns=100, concepts=[["dog", 0.5]], mask_kind="semantic"), {"mask": m}),
        "eos": (dict(base, frames_sent=4, last_seq=3, dispatched=4, tail_lost=0, token="abc"), {}),
    }


@pytest.mark.parametrize("kind", sorted(valid_messages()))
def test_every_kind_round_trips(kind):
    head, arrays = valid_messages()[kind]
    pkt = decode(encode(kind, head, arrays), kinds=(kind,))
    assert pkt.kind == kind and sorted(pkt.arrays) == sorted(arrays)


HOSTILE = [  # (kind, header changes, arrays changes) each must be refused
    ("result", {"concepts": "dog"}, {}),  # crashed the sink's readout (14.6)
    ("result", {"concepts": [["dog", "high"]]}, {}),
    ("result", {"concepts": [["dog", 7.5]]}, {}),
    ("result", {"concepts": [[1, 0.5]]}, {}),
    ("mask", {"concepts": [["a", 0.1, 3]]}, {}),
    ("result", {"seq": 2**63}, {}),  # above int64 (14.7)
    ("result", {"seq": 2**53}, {}),  # beyond an exact JSON integer
    ("frame", {"pts_ns": 2**62}, {}),  # froze the recording (14.7)
    ("result", {"prev_seq": -2}, {}),
    ("result", {"capture_ns": 2**64}, {}),
    ("result", {"t": {"capture": 2**70}}, {}),
    ("result", {"t": [1, 2]}, {}),
    ("result", {"mask_kind": "rainbow"}, {}),
    ("result", {"pts_ns": 1.5}, {}),
    ("result", {}, {"mask": None}),  # neither mask nor error
    ("result", {}, {"mask": np.zeros((5, 8), np.uint8)}),  # mask does not fit the frame
    ("frame", {}, {"image": np.zeros((1, 8, 3), np.uint8), "gt_mask": None}),  # 1-pixel-high frame (14.3)
    ("frame", {}, {"image": np.zeros((6, 8, 4), np.uint8), "gt_mask": None}),
    ("frame", {}, {"image": np.zeros((6, 8, 3), np.float32)}),
    ("frame", {"format": "bgr24"}, {}),
    ("audio", {"first_sample": -1}, {}),
    ("audio", {"sample_rate": 44100}, {}),
    ("audio", {}, {"samples": np.zeros((2, 3), F32)}),
    ("job", {"prev_seq": "x"}, {}),
    ("job", {}, {"frame_ring": None}),
    ("ready", {"ok": 1}, {}),
    ("ready", {"geometry": {"width": 0, "frame_ring": 3, "segment_ring": 2, "audio_samples": 16}}, {}),
    ("ready", {"geometry": {"width": 2**40, "frame_ring": 3, "segment_ring": 2, "audio_samples": 16}}, {}),
    ("ready", {}, {"frame_text": None}),  # ok without texts
    ("eos", {"dispatched": -5}, {}),
    ("eos", {"last_seq": "many"}, {}),
    ("eos", {"frames_sent": 2**63}, {}),
    ("eos", {}, {"extra": np.zeros(3, np.uint8)}),  # a part no kind has
]


@pytest.mark.parametrize("kind,head_changes,array_changes", HOSTILE)
def test_hostile_values_are_refused(kind, head_changes, array_changes):
    head, arrays = valid_messages()[kind]
    head = dict(head, **head_changes)
    arrays = {k: v for k, v in {**arrays, **array_changes}.items() if v is not None}
    with pytest.raises(ProtocolError):
        decode(encode(kind, head, arrays))


def test_history_refuses_wild_jumps_and_follows_restarts():
    h = History()
    assert h.accept(0, 0) and h.accept(10, 333_000_000)
    assert not h.accept(10 + MAX_SEQ_JUMP + 1, 400_000_000)  # one forged seq
    assert not h.accept(11, 2**52)  # one forged pts
    assert h.accept(11, 366_000_000)  # the stream goes on
    assert h.accept(0, 0)  # a restarted source is followed
    jumped = [h.accept(10**6 + i, 10**15 + i) for i in range(RESYNC)]  # a real jump: followed after RESYNC
    assert jumped == [False] * (RESYNC - 1) + [True] and h.resyncs == 1
