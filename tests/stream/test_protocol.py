"""Wire format: round trips, and every malformed input is a ProtocolError (never another exception)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.protocol import ProtocolError, decode, encode


def test_round_trip_keeps_header_and_arrays():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    audio = np.linspace(-1, 1, 7, dtype=np.float32)
    parts = encode("frame", {"stream": "s", "seq": 5, "capture_ns": 123, "pts_ns": 9}, {"image": img, "audio": audio})
    assert parts[0].startswith(b'{"kind":"frame"')  # SUB prefix filtering relies on this
    pkt = decode(parts)
    assert pkt.kind == "frame" and pkt.seq == 5 and pkt.header["pts_ns"] == 9
    np.testing.assert_array_equal(pkt.arrays["image"], img)
    np.testing.assert_array_equal(pkt.arrays["audio"], audio)
    assert [p["name"] for p in pkt.header["parts"]] == ["image", "audio"]


def _good():
    return encode("mask", {"stream": "s", "seq": 1, "capture_ns": 1}, {"mask": np.zeros((4, 4), np.uint8)})


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
