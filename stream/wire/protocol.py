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

from engine.spec import SAMPLE_RATE

VERSION = 1
KINDS = ("frame", "audio", "job", "ready", "result", "mask", "eos", "event")
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
    validate(kind, header, arrays)
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


# ---- per-kind validation: the one place that knows what every field may hold ----
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_POSITION = (1 << 53) - 1  # seq / pts / sample numbers: exact in every JSON parser (104 days of ns)
MAX_TEXT = 256
MAX_CONCEPTS = 64


def _int(low: int, high: int):
    def check(v: Any) -> bool:
        return type(v) is int and low <= v <= high
    return check


def _str(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= MAX_TEXT


def _concepts(v: Any) -> bool:
    """[[name, probability], ...]: a name and a finite number in [0, 1]."""
    return isinstance(v, list) and len(v) <= MAX_CONCEPTS and all(
        isinstance(c, list) and len(c) == 2 and _str(c[0]) and type(c[1]) in (int, float) and 0.0 <= c[1] <= 1.0
        for c in v)


def _stamps(v: Any) -> bool:
    return isinstance(v, dict) and len(v) <= 32 and all(_str(k) and _int(INT64_MIN, INT64_MAX)(x) for k, x in v.items())


# a worker's model geometry (``ready`` header): what every worker of one stream must agree on.
# ring_rate (frame-ring entries per second) is optional on the wire: absent means 1, as in older workers
GEOMETRY_KEYS = ("width", "frame_ring", "segment_ring", "audio_samples", "ring_rate")
GEOMETRY_DEFAULTS = {"ring_rate": 1}


def _geometry(v: Any) -> bool:
    limits = {"width": 1 << 16, "frame_ring": 1 << 12, "segment_ring": 1 << 12, "audio_samples": SAMPLE_RATE * 60}
    return (isinstance(v, dict) and all(_int(1, hi)(v.get(k)) for k, hi in limits.items())
            and ("ring_rate" not in v or _int(1, 1000)(v["ring_rate"])))


def geometry(v: dict[str, Any]) -> dict[str, int]:
    """A validated ``ready`` geometry with what older workers leave out filled in: the one place
    the wire's defaults live."""
    return {k: v.get(k, GEOMETRY_DEFAULTS.get(k)) for k in GEOMETRY_KEYS}


MAX_SLOT_INDEX = 4096  # more than any ring has (shm_ring.MAX_SLOTS); the ring's own count is checked when mapped
MAX_GEN = 1 << 62  # generations count writes: no ring lives to this number


def slot_parts(desc: Any) -> list[tuple[str, list[int], np.dtype, int]]:
    """The parts of a shared-memory slot descriptor {"ring", "slot", "gen", "parts": [{name, shape,
    dtype, offset}]}: every field's kind and range, checked before anything is mapped (the ring's
    own bounds are checked by stream/wire/shm_ring.py when it maps it). Raises ProtocolError."""
    if not isinstance(desc, dict) or not isinstance(desc.get("parts"), list) or not 1 <= len(desc["parts"]) <= MAX_PARTS:
        raise ProtocolError("shm descriptor is not an object with 1 to 16 parts")
    ring, slot, gen = desc.get("ring"), desc.get("slot"), desc.get("gen")
    if not _str(ring) or type(slot) is not int or not 0 <= slot < MAX_SLOT_INDEX:
        raise ProtocolError("shm descriptor needs a ring name and an int slot in range")
    if type(gen) is not int or not 0 < gen < MAX_GEN or gen % 2:
        raise ProtocolError("shm descriptor needs an even positive gen in range")
    out, names = [], set()
    for p in desc["parts"]:
        if not isinstance(p, dict):
            raise ProtocolError("shm part descriptor is not an object")
        name, shape, dtype, offset = p.get("name"), p.get("shape"), DTYPES.get(p.get("dtype")), p.get("offset")
        if not _str(name) or not name or name in names or dtype is None or type(offset) is not int or not 0 <= offset < 1 << 40:
            raise ProtocolError(f"shm part descriptor {str(p)[:80]} is malformed")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
            raise ProtocolError(f"shm part '{name}': bad shape {str(shape)[:60]}")
        names.add(name)
        out.append((name, shape, dtype, offset))
    return out


def _slot(v: Any) -> bool:
    """A shared-memory slot descriptor, every field in kind and range (``slot_parts``)."""
    try:
        slot_parts(v)
    except ProtocolError:
        return False
    return True


POSITION = _int(0, MAX_POSITION)
REF = _int(-1, MAX_POSITION)  # a seq, or -1 for "none"
INT64 = _int(INT64_MIN, INT64_MAX)
COUNT = _int(0, MAX_POSITION)
COMMON = {"stream": _str, "seq": POSITION, "capture_ns": INT64, "t": _stamps, "pts_ns": POSITION, "model": _str,
          "worker": _str, "concepts": _concepts, "mask_kind": lambda v: v in ("binary", "semantic"), "hears": _str,
          "mask_area": lambda v: type(v) in (int, float) and 0.0 <= v <= 1.0}
# kind -> ({key: check} required, {key: check} optional)
HEADERS: dict[str, tuple[dict, dict]] = {
    "frame": ({"pts_ns": POSITION}, {"format": lambda v: v == "rgb24", "shm": _slot}),
    "audio": ({"first_sample": POSITION}, {"sample_rate": lambda v: v == SAMPLE_RATE}),
    "job": ({"pts_ns": POSITION, "prev_seq": REF}, {"dropped_before": INT64}),
    "ready": ({"job": REF, "ok": lambda v: type(v) is bool}, {"geometry": _geometry}),
    "result": ({"pts_ns": POSITION, "prev_seq": REF, "t": _stamps}, {"dropped_before": INT64, "error": lambda v: isinstance(v, str),
                                                                   "shm": _slot}),
    "mask": ({"pts_ns": POSITION}, {}),
    "event": ({"pts_ns": POSITION, "event": lambda v: v in ("started", "stopped")}, {"concept": _str}),  # stream/stages/events.py
    "eos": ({}, {"frames_sent": COUNT, "last_seq": REF, "last_dispatched": REF, "dispatched": COUNT, "tail_lost": COUNT,
                 "audio_chunks": COUNT, "token": lambda v: v is None or _str(v), "context": lambda v: isinstance(v, dict), "reason": _str}),
}
# kind -> {part: (dtype, ndim, required)}; image-like parts also checked against each other below
PARTS: dict[str, dict[str, tuple[str, int, bool]]] = {
    "frame": {"image": ("uint8", 3, True), "gt_mask": ("uint8", 2, False)},
    "audio": {"samples": ("float32", 1, True)},
    "job": {"image": ("uint8", 3, True), "gt_mask": ("uint8", 2, False), "audio": ("float32", 2, True),
            "frame_ring": ("float32", 3, True), "frame_valid": ("float32", 2, True),
            "segment_ring": ("float32", 3, True), "segment_valid": ("float32", 2, True)},
    "ready": {"frame_text": ("float32", 2, False), "segment_text": ("float32", 2, False)},
    "result": {"mask": ("uint8", 2, False), "image": ("uint8", 3, False), "gt_mask": ("uint8", 2, False)},
    "mask": {"mask": ("uint8", 2, True)},
    "event": {},
    "eos": {},
}
MIN_SIDE = 2  # a picture the model, the overlay and H.264 can all use (1-pixel frames crashed the recorder)


def validate(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Type and range of every header field this kind uses, and the name, dtype, rank and size of
    every part. Unknown extra header keys are allowed (forward compatibility); unknown parts not."""
    required, optional = HEADERS[kind]
    for key in required:
        if key not in header:
            raise ProtocolError(f"{kind}: header has no '{key}'")
    for key, value in header.items():
        check = required.get(key) or optional.get(key) or COMMON.get(key)
        if check is not None and not check(value):
            raise ProtocolError(f"{kind}: header '{key}' = {str(value)[:60]!r} is out of type or range")
    spec = PARTS[kind]
    for name, arr in arrays.items():
        if name not in spec:
            raise ProtocolError(f"{kind}: unexpected part '{name}'")
        dtype, ndim, _ = spec[name]
        if arr.dtype.name != dtype or arr.ndim != ndim:
            raise ProtocolError(f"{kind}: part '{name}' is {arr.dtype.name} rank {arr.ndim}, must be {dtype} rank {ndim}")
    # a frame or result whose parts wait in a shared-memory slot (stream/wire/shm_link.py) carries none
    # yet: its parts are checked here again, once the receiver has mapped them
    in_slot = kind in ("frame", "result") and "shm" in header
    missing = [n for n, (_, _, req) in spec.items() if req and n not in arrays] if not in_slot else []
    if missing:
        raise ProtocolError(f"{kind}: parts {missing} missing")
    image, mask, gt = arrays.get("image"), arrays.get("mask"), arrays.get("gt_mask")
    if image is not None and (image.shape[2] != 3 or min(image.shape[:2]) < MIN_SIDE):
        raise ProtocolError(f"{kind}: image {list(image.shape)} is not RGB of at least {MIN_SIDE}x{MIN_SIDE}")
    size = image.shape[:2] if image is not None else mask.shape if mask is not None else None
    for name, other in (("mask", mask), ("gt_mask", gt)):
        if other is not None and size is not None and other.shape != size:
            raise ProtocolError(f"{kind}: part '{name}' {list(other.shape)} does not match the frame {list(size)}")
    if kind == "result" and "error" not in header and mask is None and not in_slot:
        raise ProtocolError("result: neither a mask nor an error")
    if kind == "ready" and header["ok"] and not ("frame_text" in arrays and "segment_text" in arrays):
        raise ProtocolError("ready: ok without frame_text and segment_text")


def eos_ok(header: dict[str, Any], token: str | None) -> bool:
    """An end-of-stream message is obeyed only from the pipeline that owns the stream: it carries
    the run's token (``Endpoints.token``, shared by the stages of one run and never published)."""
    return token is None or header.get("token") == token


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


__all__ = ["VERSION", "KINDS", "Packet", "ProtocolError", "decode", "encode", "eos_ok", "finite", "forward", "part",
           "stamps", "validate"]
