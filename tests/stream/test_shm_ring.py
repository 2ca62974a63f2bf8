"""The shared-memory frame ring: slot lifecycle, reuse, generation checks, and crashes of either
side in real processes (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stream.wire.protocol import ProtocolError
from stream.wire.shm_ring import RingReader, RingWriter, StaleSlot, sweep_stale

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shm_dir(tmp_path):
    """A private folder stands in for /dev/shm (same code path, tmpfs or not), so tests never
    see each other's rings; one test below uses the real /dev/shm."""
    return str(tmp_path)


def frame(i: int, h: int = 48, w: int = 64) -> dict[str, np.ndarray]:
    img = np.full((h, w, 3), i % 251, np.uint8)
    img[0, 0] = (1, 2, 3)
    return {"image": img, "gt_mask": np.full((h, w), i % 2, np.uint8)}


def test_round_trip_views_without_copy(shm_dir):
    w, r = RingWriter(slots=4, directory=shm_dir), RingReader(directory=shm_dir)
    try:
        desc = w.write(frame(7))
        json.dumps(desc)  # travels in the JSON header
        got = r.resolve(desc)
        np.testing.assert_array_equal(got["image"], frame(7)["image"])
        np.testing.assert_array_equal(got["gt_mask"], frame(7)["gt_mask"])
        assert not got["image"].flags.writeable and not got["image"].flags.owndata  # a view of the slot
        assert r.valid(desc)
    finally:
        r.close()
        w.close()


def test_big_endian_and_strided_parts_arrive_as_values(shm_dir):
    w, r = RingWriter(slots=2, directory=shm_dir), RingReader(directory=shm_dir)
    try:
        be = np.arange(6, dtype=">f4").reshape(2, 3)
        strided = np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2]
        got = r.resolve(w.write({"a": be, "b": strided}))
        np.testing.assert_array_equal(got["a"], be)
        np.testing.assert_array_equal(got["b"], strided)
        assert got["a"].dtype.byteorder in ("<", "=")
    finally:
        r.close()
        w.close()


def test_slots_are_reused_round_robin_and_the_file_is_fixed(shm_dir):
    w = RingWriter(slots=3, directory=shm_dir)
    descs = [w.write(frame(i)) for i in range(7)]
    assert [d["slot"] for d in descs] == [0, 1, 2, 0, 1, 2, 0]
    assert len({d["ring"] for d in descs}) == 1 and w.rings_made == 1
    assert len(os.listdir(shm_dir)) == 1
    gens = [d["gen"] for d in descs]
    assert all(g % 2 == 0 for g in gens) and gens[3] > gens[0]
    w.close()
    assert os.listdir(shm_dir) == []  # unlinked on close: nothing leaks


def test_lapped_slot_is_stale_before_and_after_reading(shm_dir):
    w, r = RingWriter(slots=2, directory=shm_dir), RingReader(directory=shm_dir)
    try:
        first = w.write(frame(1))
        view = r.resolve(first)["image"]
        w.write(frame(2))
        assert r.valid(first)  # slot 1 written: slot 0 untouched
        w.write(frame(3))  # slot 0 reused while we held a view of it
        assert not r.valid(first)
        assert view[1, 1, 0] == 3  # the view now shows the new frame: that is why valid() exists
        with pytest.raises(StaleSlot):
            r.resolve(first)
    finally:
        r.close()
        w.close()


def test_bigger_frame_starts_a_new_ring_and_unlinks_the_old(shm_dir):
    w, r = RingWriter(slots=2, directory=shm_dir), RingReader(directory=shm_dir)
    try:
        small = w.write(frame(1))
        r.resolve(small)
        big = w.write(frame(2, h=96, w=128))
        assert big["ring"] != small["ring"] and os.listdir(shm_dir) == [big["ring"]]
        assert r.resolve(big)["image"].shape == (96, 128, 3)
        assert r.valid(small)  # our mapping outlives the unlink: a frame in hand stays readable
    finally:
        r.close()
        w.close()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(ring="../../etc/passwd"), "not an icf ring"),
    (lambda d: d.update(slot=99), "outside ring"),
    (lambda d: d.update(gen=3), "even positive gen"),
    (lambda d: d["parts"][0].update(offset=10**9), "outside a"),
    (lambda d: d["parts"][0].update(dtype="object"), "malformed"),
    (lambda d: d["parts"][0].update(shape=[-1]), "bad shape"),
])
def test_hostile_descriptors_are_protocol_errors(shm_dir, mutate, message):
    w, r = RingWriter(slots=2, directory=shm_dir), RingReader(directory=shm_dir)
    try:
        desc = json.loads(json.dumps(w.write(frame(1))))
        mutate(desc)
        with pytest.raises(ProtocolError, match=message):
            r.resolve(desc)
    finally:
        r.close()
        w.close()


def test_missing_ring_is_stale_not_a_crash(shm_dir):
    w, r = RingWriter(slots=2, directory=shm_dir), RingReader(directory=shm_dir)
    desc = w.write(frame(1))
    w.close()
    with pytest.raises(StaleSlot):
        r.resolve(desc)
    r.close()


PRODUCER = """
import json, sys, time, numpy as np
from stream.wire.shm_ring import RingWriter
w = RingWriter(slots=4, directory=sys.argv[1])
d = w.write({"image": np.full((48, 64, 3), 9, np.uint8)})
if sys.argv[2] == "mid-write":  # die with a slot half written (generation odd)
    w.ring.gens[d["slot"]] += 1
print(json.dumps(d), flush=True)
time.sleep(60)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("when", ["after-write", "mid-write"])
def test_killed_producer_neither_wedges_the_reader_nor_leaks(shm_dir, when):
    proc = _spawn(PRODUCER, shm_dir, when)
    try:
        desc = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    r = RingReader(directory=shm_dir)
    try:
        if when == "after-write":  # a complete frame stays readable after its producer died
            assert int(r.resolve(desc)["image"][0, 0, 0]) == 9
        else:  # a torn slot is refused, never read
            with pytest.raises(StaleSlot):
                r.resolve(desc)
        assert os.listdir(shm_dir) == [desc["ring"]]  # SIGKILL ran no cleanup ...
        assert sweep_stale(shm_dir) == [desc["ring"]]  # ... the next producer's sweep removes it
        assert os.listdir(shm_dir) == []
        w = RingWriter(slots=2, directory=shm_dir)  # and a new producer starts cleanly
        assert r.resolve(w.write(frame(5)))["image"][1, 1, 0] == 5
        w.close()
    finally:
        r.close()


CONSUMER = """
import json, sys, time
from stream.wire.shm_ring import RingReader
r = RingReader(directory=sys.argv[1])
view = r.resolve(json.loads(sys.stdin.readline()))["image"]
print(int(view[1, 1, 0]), flush=True)
time.sleep(60)  # holds a view of the slot until killed
"""


def test_killed_consumer_never_blocks_the_producer(shm_dir):
    w = RingWriter(slots=2, directory=shm_dir)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CONSUMER), shm_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        proc.stdin.write(json.dumps(w.write(frame(4))) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "4"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    r = RingReader(directory=shm_dir)
    for i in range(10):  # the producer goes on through the slot the dead consumer held
        assert r.resolve(w.write(frame(i)))["image"][1, 1, 0] == i
    r.close()
    w.close()
    assert os.listdir(shm_dir) == []


def test_real_dev_shm_owner_sweep_keeps_live_rings():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    w = RingWriter(slots=2)
    try:
        w.write(frame(1))
        RingWriter(slots=2).close()  # another producer's sweep must not touch a live ring
        assert os.path.exists(os.path.join("/dev/shm", w.name))
    finally:
        w.close()
    assert not os.path.exists(os.path.join("/dev/shm", w.name))


def test_concurrent_reads_never_return_a_torn_frame(shm_dir):
    """A producer process writes flat frames (every byte = its number) as fast as it can; every
    frame this reader accepts (valid after reading) must be uniform."""
    code = """
import sys, numpy as np, time
from stream.wire.shm_ring import RingWriter
w = RingWriter(slots=2, directory=sys.argv[1])
print(w.write({"image": np.zeros((240, 320, 3), np.uint8)})["ring"], flush=True)
i, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 1.5:
    i += 1
    w.write({"image": np.full((240, 320, 3), i % 256, np.uint8)})
w.close()
"""
    proc = _spawn(code, shm_dir)
    ring = proc.stdout.readline().strip()
    r = RingReader(directory=shm_dir)
    accepted = refused = 0
    try:
        deadline = time.monotonic() + 1.0
        m = r._mapping(ring)
        while time.monotonic() < deadline:
            slot = accepted % 2
            gen = int(m.gens[slot])
            if gen % 2 or gen == 0:  # being written, or not written yet
                continue
            desc = {"ring": ring, "slot": slot, "gen": gen, "parts": [{"name": "image", "shape": [240, 320, 3], "dtype": "uint8", "offset": 0}]}
            try:
                img = np.array(r.resolve(desc)["image"])
            except StaleSlot:
                refused += 1
                continue
            if r.valid(desc):
                assert img.min() == img.max(), "accepted a torn frame"
                accepted += 1
            else:
                refused += 1
    finally:
        r.close()
        proc.wait(10)
    assert accepted > 0


@pytest.mark.parametrize("transport, shm", [("ipc", "auto"), ("inproc", "on"), ("ipc", "off")])
def test_pipeline_frames_travel_by_shared_memory(transport, shm):
    """Real pipeline (processes for ipc), null model: with the ring on, every frame the context
    received came through a slot, ground truth still reaches the sink (mIoU computed), and no ring
    file is left behind. Only this run's rings are looked at (named by its stages' pids): other
    pipelines on the machine make and remove their own while this test runs."""
    from stream import PipelineConfig, run_pipeline

    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": 1.0, "width": 320, "height": 240, "fps": 30, "pace": "realtime"},
                         backend={"kind": "null", "image_size": [64, 64]}, transport=transport, shm=shm)
    report = run_pipeline(cfg)
    assert report["ok"], report["errors"]
    ctx = report["stages"]["context"]["counters"]
    assert report["frames"]["processed"] > 10 and ctx.get("malformed", 0) == 0
    used = shm != "off"
    assert (ctx.get("shm_frames", 0) == ctx["received"]) if used else "shm_frames" not in ctx
    assert report["miou"] is not None  # gt_mask was copied out of the slot and forwarded
    pids = {st["pid"] for st in report["stages"].values()}
    assert os.getpid() not in pids or transport == "inproc"  # ipc: every stage ran in its own process
    ours = [n for n in os.listdir("/dev/shm") if any(n.startswith(f"icf-ring-{pid}-") for pid in pids)]
    assert ours == [], f"rings left behind by this run: {ours}"


def test_pipeline_refuses_shm_over_tcp():
    from stream import PipelineConfig, run_pipeline
    from stream.graph.pipeline import PipelineError

    with pytest.raises(PipelineError, match="one host"):
        run_pipeline(PipelineConfig(source={"kind": "synthetic", "seconds": 0.2}, backend={"kind": "null"}, transport="tcp", shm="on"))


def test_sender_falls_back_to_payload_when_the_ring_cannot_be_made(monkeypatch, capsys):
    from stream.wire import shm_link
    def no_room(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shm_link.RingWriter, "write", no_room)
    sender = shm_link.ShmSender({"slots": 4})
    head, arrays = sender.pack({"seq": 0}, frame(1))
    assert "shm" not in head and set(arrays) == {"image", "gt_mask"}  # the frame still goes, as payload
    head, arrays = sender.pack({"seq": 1}, frame(2))
    assert "shm" not in head and sender.failed
    assert capsys.readouterr().err.count("shared-memory frames are off") == 1
    sender.close()


def test_full_tmpfs_is_an_error_at_creation_not_a_sigbus(tmp_path, monkeypatch):
    def enospc(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", enospc)
    w = RingWriter(slots=2, directory=str(tmp_path))
    with pytest.raises(OSError):
        w.write(frame(1))
    assert os.listdir(tmp_path) == []  # the half-made file is gone


def test_lapped_slots_in_a_slow_pipeline_are_counted_and_accounted(monkeypatch, tmp_path):
    """Two slots and a model that needs 120 ms per frame: the source laps the ring while it runs, stale
    frames are dropped (never used) and every frame is still accounted for by the segmenter and the
    sink. (A slow sink no longer laps it: the segmenter never blocks on a sink, it drains on.)"""
    from stream import PipelineConfig
    from stream.graph import graph

    from .stage_harness import run_with_slow_sink

    monkeypatch.setattr(graph, "DEFAULT_SLOTS", 2)
    report = run_with_slow_sink(PipelineConfig(source={"kind": "synthetic", "seconds": 2.0, "width": 160, "height": 120, "fps": 30},
                                               backend={"kind": "null", "image_size": [32, 32], "delay_ms": 120}, transport="ipc",
                                               sink={"max_age_ms": 300}), 0.0, tmp_path)
    assert report["ok"], report["errors"]
    ctx = report["stages"]["context"]["counters"]
    sent = report["frames"]["sent"]
    assert ctx.get("shm_stale", 0) > 0 and report["frames"]["processed"] > 0
    assert ctx["transport_gaps"] + ctx["superseded"] + ctx["dispatched"] + ctx.get("tail_lost", 0) == sent
    assert report["frames"]["accounted"], report["frames"]


def _forged_ring(folder: str, size: int, slots: int = 2, slot_bytes: int = 4096) -> str:
    """A file named like a ring, with a valid header claiming ``slots`` x ``slot_bytes``, ``size``
    bytes long (sparse): what a same-user process can put into /dev/shm."""
    from stream.wire.shm_ring import GENS_AT, MAGIC

    name = f"icf-ring-{os.getpid()}-{os.urandom(8).hex()}"
    with open(os.path.join(folder, name), "wb") as f:
        f.write(MAGIC + np.array([slots, slot_bytes, os.getpid(), 0, 0, 0, 0], np.uint64).tobytes())
        f.seek(GENS_AT)
        f.write(np.full(slots, 2, np.uint64).tobytes())  # every slot at generation 2
        f.truncate(size)
    return name


def _result(desc: dict):
    from stream.wire.protocol import Packet

    head = {"kind": "result", "stream": "s", "seq": 0, "capture_ns": 0, "pts_ns": 0, "prev_seq": -1, "t": {}, "parts": []}
    return Packet(header=dict(head, shm=desc), arrays={})


def test_forged_rings_are_dropped_and_counted_never_fatal(shm_dir):
    """26.5: a result whose ring names a folder (IsADirectoryError), or a huge sparse file (ENOMEM
    when mapped), killed the sink; a forged ring with 64 MiB slots let a 64 MiB mask past the
    32 MiB message limit. Each is now a malformed message, counted, and the sink goes on."""
    from stream.wire.shm_link import ResultTaker

    taker = ResultTaker()
    taker.reader.directory = shm_dir
    folder = f"icf-ring-{os.getpid()}-{'ab' * 8}"
    os.mkdir(os.path.join(shm_dir, folder))
    huge = _forged_ring(shm_dir, 8 << 30, slots=2, slot_bytes=4 << 30)  # sparse: no disk used
    big = 8192 * 8200  # a 64 MiB mask in a forged ring whose slots hold it
    wide = _forged_ring(shm_dir, 4096 + 2 * big, slots=2, slot_bytes=big)
    part = {"name": "mask", "shape": [8192, 8200], "dtype": "uint8", "offset": 0}
    counters: dict = {}
    try:
        for ring in (folder, huge, wide):
            assert not taker.take(_result({"ring": ring, "slot": 0, "gen": 2, "parts": [part]}), counters)
        assert counters["malformed"] == 3 and "shm_results" not in counters, counters
    finally:
        taker.close()


@pytest.mark.parametrize("desc", [
    {"ring": "x", "slot": 0, "gen": 2, "parts": []},  # no parts
    {"ring": "x", "slot": 0, "gen": 2 ** 64, "parts": [{"name": "mask", "shape": [2, 2], "dtype": "uint8", "offset": 0}]},
    {"ring": "x", "slot": -1, "gen": 2, "parts": [{"name": "mask", "shape": [2, 2], "dtype": "uint8", "offset": 0}]},
    {"ring": 5, "slot": 0, "gen": 2, "parts": [{"name": "mask", "shape": [2, 2], "dtype": "uint8", "offset": 0}]},
    {"ring": "x", "slot": 0, "gen": 2, "parts": [{"name": "mask", "shape": [2, 2], "dtype": "uint8", "offset": -5}]},
    {"ring": "x", "slot": 0, "gen": 2, "parts": [{"name": "m", "shape": [2], "dtype": "uint8", "offset": 0}] * 2},
])
def test_every_descriptor_field_is_checked_on_receipt(desc):
    """A forged descriptor fails protocol.validate, before anything is mapped."""
    from stream.wire.protocol import decode, encode

    head = {"stream": "s", "seq": 0, "capture_ns": 0, "pts_ns": 0, "prev_seq": -1, "t": {}, "shm": desc}
    with pytest.raises(ProtocolError, match="shm"):
        decode(encode("result", head))


def test_a_slot_descriptor_on_a_link_without_shared_memory_is_dropped():
    """26.5: a frame with an ``shm`` key and no parts over tcp reached the model without an image
    (KeyError: 'image' in the segmenter, StopIteration with 2 workers)."""
    from stream.wire.protocol import Packet
    from stream.wire.shm_link import attach

    pkt = Packet(header={"kind": "frame", "shm": {"ring": "x", "slot": 0, "gen": 2, "parts": []}}, arrays={})
    counters: dict = {}
    assert not attach(None, pkt, counters) and counters["malformed"] == 1
    assert attach(None, Packet(header={"kind": "frame"}, arrays={}), counters)  # a payload frame passes


HOSTILE_WORDS = """
import os, sys, numpy as np
from stream.wire.shm_ring import RingReader, RingWriter, StaleSlot
folder = sys.argv[1]
img = {"image": np.full((48, 64, 3), 7, np.uint8)}
w, r = RingWriter(slots=2, directory=folder), RingReader(directory=folder)
w.write(img)
w.ring.gens[:] = np.uint64(2**64 - 1)  # all-0xFF generation words: the writer counts its own
d = w.write(img)
assert int(r.resolve(d)["image"][0, 0, 0]) == 7 and r.valid(d)
os.truncate(os.path.join(folder, d["ring"]), 100)  # truncated under both sides: no SIGBUS
try:
    r.resolve(d)
    raise SystemExit("a truncated ring was read")
except StaleSlot:
    pass
assert not r.valid(d)
d2 = w.write(img)  # the writer makes a new ring
assert d2["ring"] != d["ring"] and int(r.resolve(d2)["image"][0, 0, 0]) == 7
h = RingWriter(slots=2, directory=folder, handback=True)
h.write(img)
h.write(img)
assert not h.free()
h.ring.released[:] = np.uint64(12345)  # garbage in the handed-back words
assert h.free() and h.corrupt_words == 2  # taken back, counted; never a wait for slots that never come
os.truncate(os.path.join(folder, h.name), 10)
assert h.free() and h.held() == 0 and not h.claimed()
print("ok")
"""


def test_same_user_writes_into_a_ring_never_kill_or_wedge_either_side(shm_dir):
    """26.9: all-0xFF generation words killed the source (OverflowError), garbage handed-back words
    made the segmenter wait for slots that never came back, a truncated ring killed its reader with
    SIGBUS. (In a child process: a SIGBUS would take the test runner with it.)"""
    proc = subprocess.run([sys.executable, "-c", HOSTILE_WORDS, shm_dir], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
