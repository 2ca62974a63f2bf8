"""Wire format: one multipart ZeroMQ message = a JSON header part followed by raw payload parts.

The header is UTF-8 JSON, an object whose FIRST key is ``kind`` (so a SUB socket can filter by
the prefix ``{"kind":"mask"``). Required keys: ``kind``, ``v`` (protocol version), ``stream``,
``seq``, ``capture_ns``, ``parts``. ``parts`` lists one descriptor per payload part, in order:
``{"name", "shape", "dtype", "encoding"}``; the part must hold exactly prod(shape) * itemsize
bytes, little-endian, C order. Everything else in the header is kind-specific and documented in
docs/protocol.md. Decoding never trusts the sender: every check failure raises ProtocolError,
which receivers count as a malformed message and drop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
KINDS = ("frame", "audio", "job", "ready", "result", "mask", "eos")
# Little-endian by definition, so a receiver in any language can map a part without guessing.
DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
}
ENCODINGS = ("raw",)
MAX_HEADER_BYTES = 64 * 1024  # a header is metadata; anything bigger is an attack or a bug
MAX_PARTS = 16
MAX_NDIM = 4
MAX_DIM = 1 << 16
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # per message; receivers pass their own tighter limit


class ProtocolError(ValueError):
    """A message that does not follow the wire format; receivers drop and count it."""


@dataclass
class Packet:
    """A decoded message: its header and one read-only NumPy view per payload part.

    ``frames`` keeps the received zmq.Frame objects (when decoded from them) so a stage can forward
    a payload without copying it (zero-copy on inproc, one kernel copy on ipc / tcp)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]
    frames: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.header["kind"]

    @property
    def seq(self) -> int:
        return self.header["seq"]


def part(name: str, array: np.ndarray, encoding: str = "raw") -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "dtype": array.dtype.name, "encoding": encoding}


def encode(kind: str, header: dict[str, Any], arrays: dict[str, Any] | None = None) -> list[Any]:
    """Returns the message parts: [header bytes, payload, ...]. Payloads are the arrays themselves
    (C-contiguous, little-endian) so ``send_multipart(parts, copy=False)`` does not copy them.
    A value in ``arrays`` may also be a zmq.Frame received earlier plus its descriptor: pass
    ``(frame, descriptor)`` to forward it untouched."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind '{kind}'; kinds: {KINDS}")
    descriptors, payloads = [], []
    for name, value in (arrays or {}).items():
        if isinstance(value, tuple):  # (zmq.Frame, descriptor): forwarded payload
            frame, desc = value
            descriptors.append(dict(desc, name=name))
            payloads.append(frame)
            continue
        arr = np.ascontiguousarray(value)
        if arr.dtype.name not in DTYPES:
            raise ValueError(f"part '{name}': dtype {arr.dtype} is not in the wire format ({sorted(DTYPES)})")
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        descriptors.append(part(name, arr))
        payloads.append(arr)
    head = {"kind": kind, "v": VERSION}
    head.update({k: v for k, v in header.items() if k not in ("kind", "v", "parts")})
    head["parts"] = descriptors
    return [json.dumps(head, separators=(",", ":")).encode(), *payloads]


def _frame_bytes(frame: Any) -> memoryview:
    """Bytes of a part: a zmq.Frame (received), or anything with the buffer protocol."""
    buf = getattr(frame, "buffer", None) if not isinstance(frame, np.ndarray) else None
    if buf is not None:
        return buf
    try:
        return memoryview(frame).cast("B")
    except TypeError as exc:
        raise ProtocolError(f"a part is not a byte buffer ({type(frame).__name__})") from exc


def _need(header: dict, key: str, types: type | tuple[type, ...]) -> Any:
    if key not in header:
        raise ProtocolError(f"header has no '{key}'")
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise ProtocolError(f"header '{key}' has type {type(value).__name__}")
    return value


def decode(frames: list[Any], *, max_bytes: int = DEFAULT_MAX_BYTES, kinds: tuple[str, ...] | None = None) -> Packet:
    """Validates and decodes received parts (bytes or zmq.Frame). Raises ProtocolError, never
    anything else, for malformed, truncated or oversized input."""
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > MAX_PARTS + 1:
        raise ProtocolError(f"{len(frames)} parts (at most {MAX_PARTS} payloads)")
    raw = _frame_bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(raw)} bytes (limit {MAX_HEADER_BYTES})")
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    kind = _need(header, "kind", str)
    if kind not in KINDS or (kinds is not None and kind not in kinds):
        raise ProtocolError(f"unexpected kind '{kind}'")
    if _need(header, "v", int) != VERSION:
        raise ProtocolError(f"protocol version {header['v']} (this end speaks {VERSION})")
    _need(header, "stream", str)
    if _need(header, "seq", int) < 0:
        raise ProtocolError("negative seq")
    _need(header, "capture_ns", int)
    descriptors = _need(header, "parts", list)
    if len(descriptors) != len(frames) - 1:
        raise ProtocolError(f"header lists {len(descriptors)} parts, message has {len(frames) - 1}")
    total = len(raw)
    arrays: dict[str, np.ndarray] = {}
    kept: dict[str, Any] = {}
    for desc, frame in zip(descriptors, frames[1:]):
        name, arr = _decode_part(desc, frame, arrays)
        total += arr.nbytes
        if total > max_bytes:
            raise ProtocolError(f"message exceeds {max_bytes} bytes")
        arrays[name] = arr
        kept[name] = frame
    return Packet(header=header, arrays=arrays, frames=kept)


def _decode_part(desc: Any, frame: Any, seen: dict) -> tuple[str, np.ndarray]:
    if not isinstance(desc, dict):
        raise ProtocolError("part descriptor is not an object")
    name = _need(desc, "name", str)
    if not name or name in seen:
        raise ProtocolError(f"part name '{name}' is empty or repeated")
    dtype = DTYPES.get(_need(desc, "dtype", str))
    if dtype is None:
        raise ProtocolError(f"part '{name}': dtype {desc['dtype']!r} not allowed")
    if desc.get("encoding", "raw") not in ENCODINGS:
        raise ProtocolError(f"part '{name}': encoding {desc.get('encoding')!r} not supported")
    shape = _need(desc, "shape", list)
    if len(shape) > MAX_NDIM or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise ProtocolError(f"part '{name}': bad shape {shape!r}")
    buf = _frame_bytes(frame)
    expected = math.prod(shape) * dtype.itemsize
    if len(buf) != expected:
        raise ProtocolError(f"part '{name}': {len(buf)} bytes, shape {shape} {dtype.name} needs {expected}")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return name, arr


def finite(array: np.ndarray, low: float | None = None, high: float | None = None) -> tuple[np.ndarray, int]:
    """``array`` with every non-finite value (NaN, +-Inf) replaced by 0 and, when given, values
    clipped to [low, high]; returns (clean array, how many values were non-finite). One NaN sample
    must cost at most the frame it reaches: fed to the model it would poison the rolling text
    context for good. The input is returned as is (no copy) when it is already clean."""
    if array.dtype.kind != "f":
        return array, 0
    ok = np.isfinite(array)
    bad = int(array.size - np.count_nonzero(ok))
    out_of_range = (low is not None and bool((array[ok] < low).any())) or (high is not None and bool((array[ok] > high).any()))
    if not bad and not out_of_range:
        return array, 0
    clean = np.where(ok, array, 0).astype(array.dtype, copy=False)
    if low is not None or high is not None:
        clean = np.clip(clean, low, high)
    return clean, bad


EOS_INTS = ("frames_sent", "last_seq", "last_dispatched", "dispatched", "tail_lost")


def ints_ok(header: dict[str, Any], names: tuple[str, ...] = EOS_INTS) -> bool:
    """True when every one of ``names`` present in the header is an int (not a bool)."""
    return all(type(header[n]) is int for n in names if n in header)


def stamps(header: dict[str, Any]) -> dict[str, int]:
    """The header's ``t`` (stage name -> CLOCK_MONOTONIC ns), keeping only well-formed entries, set
    back into the header so later stages add to a clean dict."""
    t = header.get("t")
    clean = {k: v for k, v in t.items() if isinstance(k, str) and type(v) is int} if isinstance(t, dict) else {}
    header["t"] = clean
    return clean


def forward(packet: Packet, name: str) -> tuple[Any, dict]:
    """A payload of ``packet`` ready to pass to ``encode`` without copying it."""
    desc = next(d for d in packet.header["parts"] if d["name"] == name)
    return packet.frames[name], desc


__all__ = ["VERSION", "KINDS", "Packet", "ProtocolError", "encode", "decode", "forward", "part", "stamps"]
