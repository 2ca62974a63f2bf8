"""The source -> segmenter hop through the shared-memory ring (stream/wire/shm_ring.py).

Turned on by the pipeline for links between processes of one host: ``Endpoints.extra["shm"] =
{"slots": N}``. The source then writes each frame's parts into a ring slot and sends the header
alone (``parts`` empty, ``shm`` = the slot descriptor); the context stage maps the slot and works
on views. What it forwards (the ground truth to the sink, the image to a worker or for a
recording) is copied out first, because ZeroMQ sends later, from another thread, and the slot is
reused. A slot the source lapped before the context got to it (or after the model read it) costs
that frame, counted as ``shm_stale``; it is never used torn.
tcp links keep the payload path: a ring is only reachable on its own host.

The segmenter -> sink hop (``ResultRing`` / ``ResultTaker``) uses the same ring with handed-back
slots (shm_ring: ``handback``), because results, unlike frames, must never be lapped: a slow sink
has to slow the segmenter down, as the payload path's PUSH high-water mark does. Why per-slot
hand-back words in the ring's own header rather than credits over a socket: a credit is a message
that can be lost (a restarted sink, a full queue) and then leaks capacity for good; a hand-back
word cannot be lost, needs no extra socket or thread, and the producer can take the words over
when the consumer's pid is gone. The sink copies a result out of its slot and hands the slot back
at once, on receipt: it holds results for a while (reorder buffer) and gives masks to outputs that
keep them (the PUB socket sends later, from its own thread). The copy goes into reused arrays
(``CopyPool``): ~15 us for mask + ground truth at 640x480 in warm memory, ~0.2 ms when the bytes
come cold from the segmenter's core (busy 2-core box); ZeroMQ's receive copies them too. So a
slot is held for one receive only and the ring needs no more slots than ZeroMQ would have queued
(``RESULT_SLOTS``). The producer waits for a free slot against the same
deadline as a blocked send; a sink that never hands back is "gone" exactly as on the payload path.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from stream.log import warn
from stream.wire.protocol import Packet, ProtocolError, part, validate
from stream.wire.shm_ring import MAX_PART_BYTES, RingReader, RingWriter, StaleSlot

DEFAULT_SLOTS = 16  # > both high-water marks + the frame being processed (see shm_ring)
RESULT_SLOTS = 8  # results in flight to the sink: what the payload path's PUSH + PULL high-water marks (4 + 4) hold


class CopyPool:
    """Copies out of a slot land in reused arrays: a fresh 300 KB array costs its page faults
    (0.13 ms on the 2-core box, 2 ms at p99 under load), a copy into a warm one 7 us. An array
    is reused only when nothing but this pool refers to it (CPython's reference count): a part still
    queued on a ZeroMQ socket (sent with copy=False), held in the sink's reorder buffer, or kept by
    an output, is never overwritten. ``per_shape`` arrays are kept per (shape, dtype); more in use
    at once are made fresh and dropped after."""

    FREE_REFS = 3  # the pool's list, the loop variable and getrefcount's own argument

    def __init__(self, per_shape: int = 8, max_shapes: int = 8) -> None:
        self.per_shape, self.max_shapes = per_shape, max_shapes
        self.pool: dict[tuple, list[np.ndarray]] = {}

    def copy(self, src: np.ndarray) -> np.ndarray:
        key = (src.shape, src.dtype.str)
        bufs = self.pool.get(key)
        if bufs is None:
            if len(self.pool) >= self.max_shapes:  # frame sizes keep changing: start afresh
                self.pool.clear()
            bufs = self.pool[key] = []
        for buf in bufs:
            if sys.getrefcount(buf) <= self.FREE_REFS:
                np.copyto(buf, src)
                return buf
        out = np.array(src)
        if len(bufs) < self.per_shape:
            bufs.append(out)
        return out


def wanted(mode: str, transport: str) -> bool:
    """``mode`` on | off | auto (auto: on for ipc; inproc already passes references, tcp may
    cross hosts); ``frames``: on, but results stay payload (the path before the results ring, for
    comparisons). On covers both hops: frames to the segmenter and results to the sink."""
    if mode not in ("on", "off", "auto", "frames"):
        raise ValueError(f"shm must be on, off, auto or frames, not {mode!r}")
    if mode in ("on", "frames") and transport == "tcp":
        raise ValueError("shared-memory frames need all stages on one host: use --transport ipc (or inproc), or --shm off")
    return mode in ("on", "frames") or (mode == "auto" and transport == "ipc")


class ShmSender:
    """Producer side, used by AVOutput.frame. If the ring cannot be made (no /dev/shm, or too
    little room in it: a container's default is 64 MiB), it says so once and the stream goes on
    with payloads; the receiver takes either."""

    WHAT = "frames"  # named in the warning
    HANDBACK = False  # frames may be lapped; results (ResultRing) may not

    def __init__(self, options: dict[str, Any]) -> None:
        self.slots = int(options.get("slots", DEFAULT_SLOTS))
        self.writer: RingWriter | None = None
        self.failed: str | None = None

    def pack(self, head: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, payload arrays) to send: the parts go into the next slot, or stay payload."""
        if self.failed is None and arrays:
            try:
                self.writer = self.writer or RingWriter(slots=self.slots, handback=self.HANDBACK)
                return dict(head, shm=self.writer.write(arrays)), {}
            except (OSError, RuntimeError) as exc:
                self.failed = str(exc)
                warn(f"shared-memory {self.WHAT} are off for this stream ({exc}); sending {self.WHAT} as payload")
                self.close()
        return head, arrays

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _count_bad(counters: dict[str, Any], exc: Exception) -> None:
    """A slot the producer reused (stale) or a descriptor / parts that break the wire rules."""
    if isinstance(exc, StaleSlot):
        counters["shm_stale"] = counters.get("shm_stale", 0) + 1
    else:
        counters["malformed"] = counters.get("malformed", 0) + 1
        counters["last_error"] = str(exc)[:200]


def attach(receiver: ShmReceiver | None, pkt: Packet, counters: dict[str, Any]) -> bool:
    """``receiver.attach`` for a link that may have no shared memory (``receiver`` None): there a
    packet with a slot descriptor has no parts to work on and is dropped as malformed (a forged
    frame with ``shm`` over tcp used to reach the model without an image)."""
    if receiver is not None:
        return receiver.attach(pkt, counters)
    if "shm" in pkt.header:
        _count_bad(counters, ProtocolError("a shared-memory descriptor on a link without shared memory"))
        return False
    return True


class ShmReceiver:
    """Consumer side, used by the context stage. ``max_bytes``: the link's message limit, which a
    slot's parts must keep to as a payload's do."""

    def __init__(self, max_bytes: int = MAX_PART_BYTES) -> None:
        self.reader = RingReader()
        self.copies = CopyPool()
        self.max_bytes = max_bytes

    def attach(self, pkt: Packet, counters: dict[str, Any]) -> bool:
        """Puts views of the slot into ``pkt.arrays``. False (and counted) if the frame is stale
        or the descriptor malformed; packets without ``shm`` pass through untouched."""
        desc = pkt.header.get("shm")
        if desc is None:
            return True
        try:
            pkt.arrays.update(self.reader.resolve(desc, self.max_bytes))
            validate(pkt.kind, {k: v for k, v in pkt.header.items() if k != "shm"}, pkt.arrays)  # the same rules as a payload frame
            counters["shm_frames"] = counters.get("shm_frames", 0) + 1
            return True
        except (StaleSlot, ProtocolError) as exc:
            _count_bad(counters, exc)
        return False

    def materialize(self, pkt: Packet, names: tuple[str, ...], counters: dict[str, Any]) -> bool:
        """Copies parts out of the slot so they can be forwarded (``protocol.forward``); False
        (counted) if the slot was reused meanwhile."""
        desc = pkt.header.get("shm")
        if desc is None:
            return True
        for name in names:
            if name in pkt.arrays and name not in pkt.frames:
                copy = self.copies.copy(pkt.arrays[name])
                pkt.frames[name] = copy
                pkt.header["parts"].append(part(name, copy))
        return self.still_valid(pkt, counters)

    def still_valid(self, pkt: Packet, counters: dict[str, Any]) -> bool:
        desc = pkt.header.get("shm")
        if desc is None or self.reader.valid(desc):
            return True
        counters["shm_stale"] = counters.get("shm_stale", 0) + 1
        return False

    def close(self) -> None:
        self.reader.close()


class ResultRing(ShmSender):
    """Segmenter side of the results hop (used by worker.ResultSender): a handback ring. ``free``
    says whether a result can go into the ring now; ``pack`` puts its parts there. If the ring
    cannot be made it says so once and results go on as payload (the sink takes either)."""

    WHAT = "results"
    HANDBACK = True

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.slots = int(options.get("result_slots", RESULT_SLOTS))

    @staticmethod
    def wanted(options: dict[str, Any] | None) -> bool:
        """On for same-host links (``Endpoints.extra["shm"]``) unless ``result_slots`` is 0."""
        return bool(options) and int(options.get("result_slots", RESULT_SLOTS)) > 0

    def free(self) -> bool:
        return self.failed is not None or self.writer is None or self.writer.free()

    def unclaimed(self) -> bool:
        """True while the ring is in use and no sink ever handed a slot back: the sink may not see
        this host's /dev/shm (another container), or may still be starting."""
        return self.failed is None and self.writer is not None and not self.writer.claimed()

    def give_up(self, why: str) -> None:
        """Results go as payload from now on. The file stays until close: results already in it
        are still read by a sink that was only slow to start."""
        self.failed = why
        warn(f"shared-memory results are off for this stream ({why}); sending results as payload")

    @property
    def reclaimed(self) -> int:
        return self.writer.reclaimed if self.writer is not None else 0


class ResultTaker:
    """Sink side: copies a result's parts out of its slot and hands the slot back, in one step."""

    def __init__(self, max_bytes: int = MAX_PART_BYTES) -> None:
        self.reader = RingReader(max_rings=16)  # one ring per worker that sends results here
        self.copies = CopyPool()
        self.max_bytes = max_bytes  # the link's message limit: a slot's parts keep to it as a payload's do

    def take(self, pkt: Packet, counters: dict[str, Any]) -> bool:
        """Puts copies of the slot's parts into ``pkt.arrays`` and releases the slot. False (and
        counted) if the slot no longer holds the result (``shm_stale``: its producer took it back
        from a sink before this one) or the descriptor or parts are malformed; packets without
        ``shm`` pass through untouched."""
        desc = pkt.header.get("shm")
        if desc is None:
            return True
        try:
            arrays = {k: self.copies.copy(v) for k, v in self.reader.resolve(desc, self.max_bytes).items()}
            if not self.reader.valid(desc):
                raise StaleSlot("slot reused while copying")
            validate(pkt.kind, {k: v for k, v in pkt.header.items() if k != "shm"}, arrays)
            pkt.arrays.update(arrays)
            counters["shm_results"] = counters.get("shm_results", 0) + 1
            return True
        except (StaleSlot, ProtocolError) as exc:
            _count_bad(counters, exc)
        finally:
            self.reader.release(desc)  # whatever became of it: the slot is the producer's again
        return False

    def close(self) -> None:
        self.reader.close()


__all__ = ["attach", "CopyPool", "ShmSender", "ShmReceiver", "ResultRing", "ResultTaker", "wanted", "DEFAULT_SLOTS", "RESULT_SLOTS"]
