"""Segmenter -> sink results through the shared-memory ring with handed-back slots: slot
lifecycle, back-pressure from a slow sink (no result lost), SIGKILL of either side in real
processes, rings unlinked on close."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zmq

from stream.stages.stage import StageEnv, StageError
from stream.wire.protocol import Packet, encode
from stream.wire.shm_link import ResultTaker
from stream.wire.shm_ring import RingFull, RingReader, RingWriter, StaleSlot
from stream.wire.transport import Endpoints, make_endpoints

from .stage_harness import Harness

ROOT = Path(__file__).resolve().parents[2]


def mask(i: int) -> dict[str, np.ndarray]:
    return {"mask": np.full((12, 16), i % 251, np.uint8)}


def rings(folder: str = "/dev/shm") -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith("icf-ring-")}


def leaked(before: set[str]) -> set[str]:
    """New rings whose producer is gone (other test runs on this machine may own live ones)."""
    return {n for n in rings() - before if not os.path.exists(f"/proc/{n.split('-')[2]}")}


def test_handback_slots_are_written_only_once_handed_back(tmp_path):
    w, r = RingWriter(slots=3, directory=str(tmp_path), handback=True), RingReader(directory=str(tmp_path))
    try:
        descs = [w.write(mask(i)) for i in range(3)]
        assert [d["slot"] for d in descs] == [0, 1, 2] and w.held() == 3
        assert not w.free()
        with pytest.raises(RingFull):  # never laps: slot 0 still holds an unread result
            w.write(mask(3))
        assert int(r.resolve(descs[0])["mask"][0, 0]) == 0
        assert r.release(descs[0]) and w.held() == 2 and w.free()
        again = w.write(mask(3))
        assert again["slot"] == 0 and again["gen"] > descs[0]["gen"]
        assert not r.release(descs[0])  # an older generation of slot 0 hands back nothing
        assert not w.free()  # slot 1 is next and still held
        for d in (descs[1], descs[2], again):
            assert int(r.resolve(d)["mask"][0, 0]) in (1, 2, 3) and r.release(d)
        assert w.held() == 0 and w.reclaimed == 0
    finally:
        r.close()
        w.close()
    assert os.listdir(tmp_path) == []  # unlinked on close


def test_frame_rings_still_lap_and_ignore_releases(tmp_path):
    w, r = RingWriter(slots=2, directory=str(tmp_path)), RingReader(directory=str(tmp_path))
    try:
        first = w.write(mask(1))
        r.resolve(first)
        assert not r.release(first)  # no handback: nothing to give back
        w.write(mask(2))
        w.write(mask(3))  # laps slot 0 without waiting, as before
        with pytest.raises(StaleSlot):
            r.resolve(first)
        assert w.free() and w.held() == 0
    finally:
        r.close()
        w.close()


def test_taker_copies_out_and_hands_back_on_receipt(tmp_path):
    w = RingWriter(slots=2, directory=str(tmp_path), handback=True)
    taker = ResultTaker()
    taker.reader.directory = str(tmp_path)
    try:
        head = {"stream": "s", "seq": 0, "capture_ns": 0, "pts_ns": 0, "prev_seq": -1, "t": {}, "parts": []}
        desc = w.write(mask(5))
        pkt = Packet(header=dict(head, kind="result", shm=desc), arrays={})
        counters: dict = {}
        assert taker.take(pkt, counters) and counters["shm_results"] == 1
        assert w.held() == 0  # handed back at once
        bad = Packet(header=dict(head, kind="result", shm=dict(desc, parts=[dict(desc["parts"][0], dtype="float32")])), arrays={})
        assert not taker.take(bad, counters) and counters["malformed"] == 1
        w.write(mask(6))
        w.write(mask(7))  # slot 0 reused: the copy the sink holds is untouched
        assert pkt.arrays["mask"].flags.owndata and int(pkt.arrays["mask"][0, 0]) == 5
        stale = Packet(header=dict(head, kind="result", shm=desc), arrays={})
        assert not taker.take(stale, counters) and counters["shm_stale"] == 1
    finally:
        taker.close()
        w.close()


def test_copy_pool_reuses_an_array_only_when_nothing_else_holds_it():
    from stream.wire.shm_link import CopyPool

    pool, src = CopyPool(per_shape=2), np.arange(12, dtype=np.uint8).reshape(3, 4)
    first = pool.copy(src)
    kept = first[1:]  # a view (or a ZeroMQ send with copy=False) keeps its base alive
    first_id = id(first)
    del first
    second = pool.copy(src + 1)
    assert id(second) != first_id and int(kept[0, 0]) == 4  # the held array was not overwritten
    del kept
    del second
    again = pool.copy(src + 2)
    assert id(again) == first_id and int(again[0, 0]) == 2  # free again: reused, no fresh allocation
    assert sum(len(v) for v in pool.pool.values()) == 2


CONSUMER = """
import json, sys, time
from stream.wire.shm_ring import RingReader
r = RingReader(directory=sys.argv[1])
d = json.loads(sys.stdin.readline())
r.resolve(d)
r.release(d)  # claims the ring as its consumer
print("claimed", flush=True)
time.sleep(60)  # then takes nothing more until killed
"""


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True, **kw)


def test_a_killed_consumer_gives_its_slots_back(tmp_path):
    w = RingWriter(slots=2, directory=str(tmp_path), handback=True)
    proc = _python(CONSUMER, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        proc.stdin.write(json.dumps(w.write(mask(0))) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "claimed"
        w.write(mask(1))
        w.write(mask(2))
        assert not w.free() and w.held() == 2  # the consumer is alive and holds both
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert w.free() and w.reclaimed == 2  # its pid is gone: the slots are the producer's again
    w.write(mask(3))
    w.close()
    assert os.listdir(tmp_path) == []


def _endpoints(tmp_path, result_slots: int) -> Endpoints:
    return Endpoints(make_endpoints("ipc", run_dir=str(tmp_path)), extra={"shm": {"result_slots": result_slots}})


SINK = """
import sys, time, zmq
from stream.wire.shm_link import ResultTaker
from stream.wire.transport import recv_packet
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL)
pull.setsockopt(zmq.RCVHWM, 1)
pull.bind(sys.argv[1])
taker = ResultTaker()
_, pkt = recv_packet(pull, {}, max_bytes=1 << 24)
assert taker.take(pkt, {})
print("took", pkt.seq, flush=True)
time.sleep(60)  # a sink that stops taking results, then dies
"""


def test_sigkill_of_the_sink_does_not_wedge_the_segmenter(tmp_path):
    """The sender fills the ring and waits for the sink; the sink is SIGKILLed: the sender gets its
    slots back and ends at its deadline with the payload path's "gone" error, never hangs."""
    from stream.stages.worker import ResultSender

    ep = _endpoints(tmp_path, 2)
    env = StageEnv(ep, threading.Event(), threading.Event(), threading.Event())
    proc = _python(SINK, ep["results"], stdout=subprocess.PIPE)
    ctx = zmq.Context()
    counters: dict = {}
    sender = ResultSender(ctx, env, counters, send_image=False, send_timeout_s=1.0)
    core = SimpleNamespace(model_id="null:null", name="worker0")
    outcome: list = []

    def produce():
        try:
            for seq in range(1000):
                head = {"stream": "s", "seq": seq, "capture_ns": 0, "pts_ns": seq, "prev_seq": seq - 1, "dropped_before": 0}
                sender.result(core, head, Packet(header={}, arrays={}), {}, ({}, mask(seq)["mask"], None))
            outcome.append("never blocked")
        except StageError as exc:
            outcome.append(str(exc))

    th = threading.Thread(target=produce, daemon=True)
    try:
        th.start()
        assert proc.stdout.readline().startswith("took 0")
        deadline = time.monotonic() + 10
        while sender.ring.writer.held() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert counters.get("result_slot_waits"), "the sender never waited for the stalled sink"
        assert th.is_alive() and sender.ring.writer.held() == 2  # back-pressure: blocked, nothing overwritten
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    th.join(15)
    env.abort.set()  # (only so a hanging sender ends after the test failed)
    th.join(2)
    name = sender.ring.writer.name
    sender.close()
    ctx.destroy(linger=0)
    assert outcome and "sink" in outcome[0] and "gone" in outcome[0], outcome
    assert counters.get("result_slots_reclaimed", 0) >= 1
    assert name not in rings()  # the ring is unlinked on close


PRODUCER = """
import sys, threading, time
import numpy as np, zmq
from types import SimpleNamespace
from stream.wire.protocol import Packet
from stream.stages.stage import StageEnv
from stream.wire.transport import Endpoints
from stream.stages.worker import ResultSender
ep = Endpoints({"results": sys.argv[1]}, extra={"shm": {"result_slots": 4}})
env = StageEnv(ep, threading.Event(), threading.Event(), threading.Event())
sender = ResultSender(zmq.Context(), env, {}, send_image=False)
core = SimpleNamespace(model_id="null:null", name="worker0")
for seq in range(5):
    head = {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "pts_ns": seq, "prev_seq": seq - 1, "dropped_before": 0}
    sender.result(core, head, Packet(header={}, arrays={}), {"capture": time.monotonic_ns()}, ({}, np.ones((12, 16), np.uint8), None))
print(sender.ring.writer.name, flush=True)
time.sleep(60)  # killed mid-stream: no EOS, no cleanup
"""


def test_sigkill_of_the_segmenter_does_not_wedge_the_sink(tmp_path):
    """A producer sends five results through its ring and is SIGKILLed: the sink delivered them,
    keeps serving the next producer (whose first ring sweeps the dead one's file) and ends."""
    from stream.stages.sink import SinkStage
    from stream.stages.worker import ResultSender

    h = Harness(tmp_path, SinkStage(reorder_timeout_ms=100, eos_timeout_s=1.0))
    h.ep.extra["shm"] = {"result_slots": 4}
    try:
        h.start()
        proc = _python(PRODUCER, h.ep["results"], stdout=subprocess.PIPE)
        try:
            dead_ring = proc.stdout.readline().strip()
            deadline = time.monotonic() + 10
            while h.stage.counters.get("delivered", 0) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert h.stage.counters["delivered"] == 5 and h.stage.counters["shm_results"] == 5
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert dead_ring in rings()  # SIGKILL ran no cleanup
        sender = ResultSender(h.ctx, h.env, {}, send_image=False)  # a restarted segmenter
        core = SimpleNamespace(model_id="null:null", name="worker0")
        head = {"stream": "s", "seq": 5, "capture_ns": time.monotonic_ns(), "pts_ns": 5, "prev_seq": 4, "dropped_before": 0}
        sender.result(core, head, Packet(header={}, arrays={}), {"capture": time.monotonic_ns()}, ({}, np.ones((12, 16), np.uint8), None))
        assert dead_ring not in rings()  # the new ring's writer swept the dead producer's file
        sender.send(encode("eos", {"stream": "s", "seq": 6, "capture_ns": 0, "dispatched": 6, "frames_sent": 6, "last_seq": 5,
                                   "last_dispatched": 5}))
        h.thread.join(10)
        assert not h.thread.is_alive(), "the sink did not end"
        sender.close()
        assert h.report["frames"]["processed"] == 6 and h.report["frames"]["accounted"], h.report["frames"]
    finally:
        h.close()


def test_a_slow_sink_loses_no_result(monkeypatch, tmp_path):
    """A sink that needs 60 ms per result behind a 2-slot result ring: the segmenter waits for a
    free slot before it runs a frame (back-pressure) instead of overwriting one, so every dispatched frame reaches the sink
    (none lost in flight, none stale) and every frame sent is accounted for, as on the payload path."""
    from stream import PipelineConfig
    from stream.graph import graph

    from .stage_harness import run_with_slow_sink

    before = rings()
    monkeypatch.setattr(graph, "RESULT_SLOTS", 2)
    report = run_with_slow_sink(PipelineConfig(source={"kind": "synthetic", "seconds": 1.5, "width": 160, "height": 120, "fps": 30},
                                               backend={"kind": "null", "image_size": [32, 32]}, transport="ipc",
                                               sink={"max_age_ms": 10_000}), 0.060, tmp_path)
    assert report["ok"], report["errors"]
    ctx, sink = report["stages"]["context"]["counters"], report["stages"]["sink"]["counters"]
    frames = report["frames"]
    assert ctx.get("sink_busy", 0) > 0  # the sink was slow enough to push back (the segmenter held its frame)
    assert sink["shm_results"] == ctx["dispatched"] and sink.get("shm_stale", 0) == 0
    assert frames["dropped_by"]["lost_in_flight"] == 0 and frames["processed"] == ctx["dispatched"]
    assert frames["accounted"], frames
    assert not leaked(before)  # both rings unlinked


def test_a_slot_result_reaches_only_a_same_host_sink(tmp_path):
    """The wire format takes a result whose parts wait in a slot; a sink whose link is not
    same-host has nothing to map and counts it as malformed, then goes on."""
    from stream.stages.sink import SinkStage
    from stream.wire.protocol import decode

    from .test_faults import result, wait_for

    w = RingWriter(slots=2, directory=str(tmp_path), handback=True)
    head = {"stream": "s", "seq": 0, "capture_ns": time.monotonic_ns(), "pts_ns": 0, "prev_seq": -1, "t": {}}
    msg = encode("result", dict(head, shm=w.write(mask(1))))
    assert "mask" not in decode(msg).arrays  # well formed: its parts are checked when mapped
    h = Harness(tmp_path, SinkStage(reorder_timeout_ms=100))
    try:
        h.start()
        push = h.sock(zmq.PUSH, "results", False)
        push.send_multipart(msg)
        push.send_multipart(result(0, -1))
        assert wait_for(lambda: h.stage.counters["delivered"] == 1)
        assert h.stage.counters["malformed"] == 1 and w.held() == 1  # never mapped, never handed back
    finally:
        h.close()
        w.close()


def test_a_sink_that_cannot_map_the_ring_gets_payload_results(tmp_path, monkeypatch, capsys):
    """A sink that does not see the segmenter's /dev/shm (another container) hands back nothing:
    the segmenter says so once and sends the rest as payload instead of ending as "sink gone";
    the results lost in the ring are counted (shm_stale), the rest delivered."""
    from stream.stages import worker
    from stream.stages.sink import SinkStage

    monkeypatch.setattr(worker, "RING_UNCLAIMED_S", 0.3)
    h = Harness(tmp_path, SinkStage(reorder_timeout_ms=100))
    h.ep.extra["shm"] = {"result_slots": 2}
    elsewhere = tmp_path / "other-shm"
    elsewhere.mkdir()
    try:
        h.start()
        assert _wait(lambda: getattr(h.stage, "taker", None) is not None)
        h.stage.taker.reader.directory = str(elsewhere)  # the sink's /dev/shm is another one
        counters: dict = {}
        sender = worker.ResultSender(h.ctx, h.env, counters, send_image=False, send_timeout_s=5.0)
        core = SimpleNamespace(model_id="null:null", name="worker0")
        for seq in range(6):
            head = {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "pts_ns": seq, "prev_seq": seq - 1, "dropped_before": 0}
            sender.result(core, head, Packet(header={}, arrays={}), {"capture": time.monotonic_ns()}, ({}, mask(seq)["mask"], None))
        assert _wait(lambda: h.stage.counters["delivered"] == 4)
        assert h.stage.counters["shm_stale"] == 2 and sender.ring.failed
        assert capsys.readouterr().err.count("shared-memory results are off") == 1
        sender.close()
    finally:
        h.close()


def _wait(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()
