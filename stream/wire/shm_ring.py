"""Frames by shared memory between processes of one host: a ring of fixed slots in /dev/shm.

The producer (a source) copies each frame's parts into the next slot and sends over ZeroMQ only
the header with a ``shm`` descriptor ``{"ring", "slot", "gen", "parts": [{name, shape, dtype,
offset}]}``; the consumer maps the same file and reads NumPy views of the slot, no copy.

Slot rule (a seqlock per slot, no locks anywhere, so neither side can wedge the other):
- the producer sets the slot's generation to an odd number, writes, then sets it to the next even
  number, which travels in the header;
- a consumer may use the slot while its generation still equals the header's: it checks before
  reading (``resolve``) and again after its last read (``valid``). A different number means the
  producer lapped the ring (the frame is stale, newer ones exist) or died mid-write (odd): the
  frame is dropped and counted, never read torn.
- slots are reused round-robin, so memory is fixed: slots x slot_bytes per producer.
Handed-back slots (``RingWriter(handback=True)``, the segmenter -> sink results): the one
consumer also writes, per slot, the generation it is done with (``release``), and the producer
writes a slot only once it was handed back (``free``). Each word has one writer (generations:
the producer; handed-back generations and the consumer pid: the consumer), so this needs no lock
either, and nothing is ever lapped: a slow consumer back-pressures the producer, which waits
(with its own deadline) exactly where a ZeroMQ send would block at its high-water mark. A
consumer that died (its pid, seen alive before, is gone) or was replaced (another pid claimed the
ring) hands back nothing more: the producer takes its slots back (``reclaimed``); a message still
on its way to a new consumer then meets a newer generation and is dropped as stale, never torn.
Lifecycle: the producer creates ``/dev/shm/icf-ring-<pid>-<random>`` and unlinks it on close; a
producer that was killed (SIGKILL runs no cleanup) leaves its file, which the next ``sweep_stale``
(run by every ``RingWriter``) removes because that pid is gone. A consumer that dies holds nothing
the producer waits for. Mapped pages outlive the unlink until the last process unmaps them.
Memory order: x86 keeps stores in order and loads in order, which is what the seqlock needs; the
generation is an aligned 8-byte word (atomic on x86-64 and aarch64).
"""

from __future__ import annotations

import math
import mmap
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

import numpy as np

from stream.wire.protocol import DTYPES, ProtocolError, slot_parts

SHM_DIR = "/dev/shm"
MAGIC = b"ICFRING2"
# 8 uint64 words: magic, slot count, slot size, owner pid, consumer pid, flags, 2 reserved; then one
# generation per slot at GENS_AT and one handed-back generation per slot at RELEASED_AT
HEADER_BYTES = 4096
HEAD_WORDS = 8
MAX_SLOTS = (HEADER_BYTES - HEAD_WORDS * 8) // 16
GENS_AT = HEAD_WORDS * 8
RELEASED_AT = GENS_AT + MAX_SLOTS * 8
HANDBACK = 1  # flags bit: the consumer hands slots back and the producer waits for them
ALIGN = 64  # every part starts on a cache line
MAX_RING_BYTES = 4 << 30  # a ring is slots x one frame's parts; a bigger file is forged (a sparse 128 TiB file cost ENOMEM)
MAX_PART_BYTES = 32 << 20  # the default message limit (transport.Endpoints.max_bytes)
NAME_RE = re.compile(r"^icf-ring-(\d+)-[0-9a-f]{8,32}$")  # the only files a reader will open


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def sweep_stale(directory: str = SHM_DIR) -> list[str]:
    """Unlinks rings whose producer process no longer exists; returns their names."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = NAME_RE.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def layout(arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], int]:
    """Part descriptors (offsets within a slot) and the bytes a slot needs for these arrays."""
    parts, offset = [], 0
    for name, arr in arrays.items():
        if arr.dtype.name not in DTYPES:
            raise ValueError(f"part '{name}': dtype {arr.dtype} is not in the wire format")
        parts.append({"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name, "offset": offset})
        offset = _align(offset + arr.nbytes)
    return parts, max(offset, ALIGN)


class _Mapping:
    """One ring file mapped into this process: the generation words and the slot area."""

    def __init__(self, path: str, *, create: bool, slots: int = 0, slot_bytes: int = 0, flags: int = 0) -> None:
        open_flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, open_flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if create:
                # allocate now: on a full tmpfs this fails here with ENOSPC instead of a SIGBUS on
                # some later write into a sparse page
                os.posix_fallocate(fd, 0, HEADER_BYTES + slots * slot_bytes)
            st = os.fstat(fd)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):
                raise ProtocolError(f"shared-memory ring {path} is not a regular file")
            if size < HEADER_BYTES:
                raise ProtocolError(f"shared-memory ring {path} is truncated ({size} bytes)")
            if size > MAX_RING_BYTES:
                raise ProtocolError(f"shared-memory ring {path} is {size} bytes (limit {MAX_RING_BYTES})")
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        # the descriptor stays open: ``intact`` checks the file's size before a slot is touched (a
        # same-user process that truncates the file would otherwise kill us with SIGBUS)
        self.fd, self.size = fd, size
        head = self.head = np.frombuffer(self.mm, np.uint64, count=HEAD_WORDS, offset=0)
        if create:
            self.mm[:8] = MAGIC
            head[1:4] = (slots, slot_bytes, os.getpid())
            head[5] = flags
        elif bytes(self.mm[:8]) != MAGIC:
            self.close()
            raise ProtocolError(f"{path} is not a frame ring (bad magic)")
        self.slots, self.slot_bytes, self.owner, self.flags = (int(v) for v in (*head[1:4], head[5]))
        if not (0 < self.slots <= MAX_SLOTS) or self.slot_bytes <= 0 or HEADER_BYTES + self.slots * self.slot_bytes > size:
            self.close()
            raise ProtocolError(f"{path}: ring header ({self.slots} slots x {self.slot_bytes} B) does not fit its {size} bytes")
        self.gens = np.frombuffer(self.mm, np.uint64, count=self.slots, offset=GENS_AT)
        self.released = np.frombuffer(self.mm, np.uint64, count=self.slots, offset=RELEASED_AT)
        self.data = np.frombuffer(self.mm, np.uint8, count=self.slots * self.slot_bytes, offset=HEADER_BYTES)
        self.path = path

    def slot(self, i: int) -> np.ndarray:
        return self.data[i * self.slot_bytes:(i + 1) * self.slot_bytes]

    def intact(self) -> bool:
        """The file still holds every mapped byte (one fstat, ~1 us)."""
        try:
            return self.fd >= 0 and os.fstat(self.fd).st_size >= self.size
        except OSError:
            return False

    def close(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
            self.fd = -1
        self.head = self.gens = self.released = self.data = None  # drop our views first so the mmap can close
        try:
            self.mm.close()
        except BufferError:
            pass  # a caller still holds a view of a slot: the mapping goes when that view does


class RingWriter:
    """The producer's end. ``write(arrays)`` -> the ``shm`` header descriptor. The ring is made on
    the first write, sized for that frame; a larger frame later starts a new ring (the old file is
    unlinked; readers that still map it keep their pages until they let go).
    Options: slots (how many frames may be in flight: the sockets' high-water marks plus the one
    being processed, with margin), directory (/dev/shm), handback (the consumer hands slots back
    and ``write`` only fills a slot that is ``free``: see the module docstring)."""

    def __init__(self, *, slots: int = 16, directory: str = SHM_DIR, handback: bool = False) -> None:
        if not 2 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between 2 and {MAX_SLOTS}, not {slots}")
        if not os.path.isdir(directory):
            raise RuntimeError(f"shared-memory folder {directory} does not exist; run with shared memory off (--no-shm)")
        self.slots, self.directory, self.handback = slots, directory, handback
        self.ring: _Mapping | None = None
        self.name: str | None = None
        self.next = 0
        self.rings_made = 0
        self.reclaimed = 0  # slots taken back from a consumer that died or was replaced
        self.consumer = 0  # the pid that claimed the ring, and whether /proc showed it alive
        self.consumer_seen = False
        self.own = np.zeros(0, np.uint64)  # the generation of every slot as this writer wrote it: the ring's words are not trusted
        self.corrupt_words = 0  # handed-back words that held no generation of ours (another process wrote them)
        self.swept = sweep_stale(directory)

    def free(self) -> bool:
        """True when ``write`` may fill the next slot now (always, without handback)."""
        ring = self.ring
        if not self.handback or ring is None:
            return True
        if not ring.intact():  # truncated by someone: never touch it again, the next write makes a new ring
            self._unlink()
            return True
        pid = int(ring.head[4])
        if pid != self.consumer:  # a consumer claimed the ring: one stat per new consumer, not per frame
            replaced = self.consumer != 0
            self.consumer, self.consumer_seen = pid, Path(f"/proc/{pid}").exists()
            if replaced:  # the old consumer's slots will never come back
                self._reclaim()
        # a handed-back word is this slot's generation (handed back), the one before (not yet) or
        # 0 (never written); anything else was written by someone else: the slot is taken back
        own = self.own
        ok = (ring.released == own) | (ring.released == own - np.uint64(2)) | (ring.released == 0)
        if not ok.all():
            bad = ~ok
            self.corrupt_words += int(np.count_nonzero(bad))
            ring.released[bad] = own[bad]
        # the lowest handed-back slot, not the next in turn: a sink that keeps up gets the same one
        # or two slots back again and again, warm in the caches and TLBs of both processes
        handed = np.flatnonzero(ring.released == own)
        if handed.size:
            self.next = int(handed[0])
            return True
        if self.consumer_seen and not Path(f"/proc/{self.consumer}").exists():
            self.consumer_seen = False  # seen alive, now gone (SIGKILL hands nothing back)
            self._reclaim()
            return True
        return False

    def claimed(self) -> bool:
        """True once a consumer handed back a slot of the current ring (it can map it)."""
        return self.ring is not None and self.ring.intact() and int(self.ring.head[4]) != 0

    def held(self) -> int:
        """Slots the consumer has not handed back yet (0 without handback)."""
        ring = self.ring
        return 0 if not self.handback or ring is None or not ring.intact() else int(np.count_nonzero(ring.released != self.own))

    def _reclaim(self) -> None:
        ring = self.ring
        held = ring.released != self.own
        self.reclaimed += int(np.count_nonzero(held))
        ring.released[held] = self.own[held]  # the consumer is gone: its words are ours now

    def _open(self, slot_bytes: int) -> None:
        self._unlink()
        self.name = f"icf-ring-{os.getpid()}-{secrets.token_hex(8)}"
        path = os.path.join(self.directory, self.name)
        try:
            self.ring = _Mapping(path, create=True, slots=self.slots, slot_bytes=slot_bytes, flags=HANDBACK if self.handback else 0)
        except OSError:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            raise
        self.next = 0
        self.own = np.zeros(self.slots, np.uint64)
        self.rings_made += 1
        self.consumer, self.consumer_seen = 0, False

    def write(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        arrays = {k: v.astype(v.dtype.newbyteorder("<")) if v.dtype.byteorder == ">" else v for k, v in arrays.items()}  # wire order
        parts, need = layout(arrays)
        if self.ring is None or need > self.ring.slot_bytes or not self.ring.intact():
            self._open(_align(need))  # first, bigger, or a ring someone truncated: a new file
        if not self.free():
            raise RingFull(f"slot {self.next} of {self.name} was not handed back yet")
        ring, i = self.ring, self.next
        self.next = (i + 1) % ring.slots
        gen = int(self.own[i]) + 1 | 1  # odd: being written (from our own count: the ring's word may be anything)
        ring.gens[i] = gen
        slot = ring.slot(i)
        for desc, arr in zip(parts, arrays.values()):
            slot[desc["offset"]:desc["offset"] + arr.nbytes] = arr.reshape(-1).view(np.uint8)
        ring.gens[i] = self.own[i] = gen + 1  # even: complete
        return {"ring": self.name, "slot": i, "gen": gen + 1, "parts": parts}

    def _unlink(self) -> None:
        if self.ring is not None:
            try:
                os.unlink(self.ring.path)
            except FileNotFoundError:
                pass
            self.ring.close()
            self.ring = None

    def close(self) -> None:
        self._unlink()


class RingReader:
    """The consumer's end: maps rings named in headers (only ``icf-ring-*`` files in its folder)
    and hands out read-only views. Keeps the ``max_rings`` most recently used mappings."""

    def __init__(self, *, directory: str = SHM_DIR, max_rings: int = 4) -> None:
        self.directory = directory
        self.max_rings = max_rings
        self.maps: dict[str, _Mapping] = {}

    def _mapping(self, name: Any) -> _Mapping:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ProtocolError(f"shm ring name {name!r} is not an icf ring")
        m = self.maps.pop(name, None)
        if m is None:
            try:
                m = _Mapping(os.path.join(self.directory, name), create=False)
            except (FileNotFoundError, PermissionError) as exc:
                raise StaleSlot(f"ring {name} is gone ({exc.__class__.__name__})") from None
            except (OSError, ValueError, OverflowError) as exc:  # a folder, a FIFO, a huge sparse file: not a ring
                raise ProtocolError(f"ring {name} cannot be mapped: {exc.__class__.__name__}: {exc}"[:200]) from None
            while len(self.maps) >= self.max_rings:
                self.maps.pop(next(iter(self.maps))).close()
        self.maps[name] = m  # most recent last
        return m

    def resolve(self, desc: Any, max_bytes: int = MAX_PART_BYTES) -> dict[str, np.ndarray]:
        """Read-only views of the slot's parts. Raises ProtocolError for a malformed descriptor
        (also parts over ``max_bytes`` in all: a forged slot must not bypass the message size
        limit), StaleSlot when the slot no longer holds that frame."""
        parts = slot_parts(desc)
        if sum(math.prod(shape) * dtype.itemsize for _, shape, dtype, _ in parts) > max_bytes:
            raise ProtocolError(f"shm parts exceed the {max_bytes} byte message limit")
        slot, gen = desc["slot"], desc["gen"]
        m = self._mapping(desc.get("ring"))
        if not m.intact():  # truncated since we mapped it: reading would be a SIGBUS
            self.maps.pop(desc["ring"]).close()
            raise StaleSlot(f"ring {desc['ring']} was truncated")
        if not 0 <= slot < m.slots:
            raise ProtocolError(f"shm slot {slot} outside ring of {m.slots}")
        if int(m.gens[slot]) != gen:
            raise StaleSlot(f"slot {slot} holds generation {int(m.gens[slot])}, header says {gen}")
        data = m.slot(slot)
        out: dict[str, np.ndarray] = {}
        for name, shape, dtype, offset in parts:
            n = math.prod(shape) * dtype.itemsize
            if offset < 0 or offset + n > m.slot_bytes:
                raise ProtocolError(f"shm part '{name}' ({n} B at {offset}) outside a {m.slot_bytes} B slot")
            view = data[offset:offset + n].view(dtype).reshape(shape)
            view.flags.writeable = False
            out[name] = view
        return out

    def valid(self, desc: dict[str, Any]) -> bool:
        """True while the slot still holds the frame of ``desc`` (call after the last read)."""
        m = self.maps.get(desc.get("ring"))
        return m is not None and m.intact() and int(m.gens[desc["slot"]]) == desc["gen"]

    def release(self, desc: Any) -> bool:
        """Hands the slot of ``desc`` back to its producer (handback rings; a no-op otherwise).
        Only while the slot still holds that generation: a newer one belongs to a newer message.
        Never maps a ring (a ring this reader never resolved holds nothing of ours). Also names
        this process the ring's consumer, whose disappearance gives the producer its slots back."""
        m = self.maps.get(desc.get("ring")) if isinstance(desc, dict) else None
        slot, gen = (desc.get("slot"), desc.get("gen")) if m is not None else (None, None)
        if m is None or not m.flags & HANDBACK or type(slot) is not int or type(gen) is not int or not 0 <= slot < m.slots \
                or not m.intact():
            return False
        pid = os.getpid()
        if m.head[4] != pid:
            m.head[4] = pid
        if int(m.gens[slot]) != gen:
            return False
        m.released[slot] = gen
        return True

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.maps.clear()


class StaleSlot(Exception):
    """The slot was reused (or its ring is gone) before this reader got to it: drop the frame."""


class RingFull(Exception):
    """A handback ring's next slot is still held by its consumer: wait (``RingWriter.free``)."""


__all__ = ["RingWriter", "RingReader", "StaleSlot", "RingFull", "sweep_stale", "layout", "SHM_DIR"]
