"""The frame ring's clock reaches the live keeper: a worker's geometry names the model's ring
rate (from its sidecar), the context stage's keeper runs on it, and a worker whose model samples
the ring at another rate is refused like one with other ring sizes. Real sockets, stage in a thread."""

from __future__ import annotations

import time

import pytest
import zmq

from stream.stages.context_stage import ContextStage
from stream.stages.worker import WorkerCore
from stream.wire.protocol import ProtocolError, encode, validate

from .stage_harness import Harness

GOOD = {"width": 32, "frame_ring": 30, "segment_ring": 4, "audio_samples": 15600}


def test_worker_geometry_carries_the_sidecar_ring_rate():
    assert WorkerCore({"kind": "null", "frame_ring_rate": 2}).geometry()["ring_rate"] == 2
    assert WorkerCore({"kind": "null"}).geometry()["ring_rate"] == 1
    head = {"stream": "s", "seq": 0, "capture_ns": 0, "job": -1, "ok": False}
    validate("ready", dict(head, geometry=dict(GOOD, ring_rate=2)), {})
    validate("ready", dict(head, geometry=GOOD), {})  # older workers name none: 1
    for bad in (0, 1001, 2.5, "2"):
        with pytest.raises(ProtocolError):
            validate("ready", dict(head, geometry=dict(GOOD, ring_rate=bad)), {})


def test_the_context_stage_keeper_runs_on_the_workers_ring_rate(tmp_path):
    h = Harness(tmp_path, ContextStage(workers=2, audio_wait_ms=0))
    try:
        h.start()
        dealers = []
        for name, geo in (("two", dict(GOOD, ring_rate=2)), ("one", GOOD)):  # "one": another model's ring clock
            d = h.ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.setsockopt(zmq.ROUTING_ID, name.encode())
            d.connect(h.ep["jobs"])
            d.send_multipart([b"", *encode("ready", {"stream": "s", "seq": 0, "capture_ns": 0, "job": -1, "ok": False,
                                                     "geometry": geo})])
            dealers.append(d)
            deadline = time.monotonic() + 30  # in this order: the stage took this worker's ready before the next one's
            while len(h.stage.jobs.workers) + h.stage.counters.get("workers_refused", 0) < len(dealers) and time.monotonic() < deadline:
                time.sleep(0.01)
        assert h.stage.keeper is not None and h.stage.keeper.ring_rate == 2
        assert h.stage.geometry["ring_rate"] == 2 and h.stage.counters["workers_refused"] == 1
        for d in dealers:
            d.close()
    finally:
        h.close()
