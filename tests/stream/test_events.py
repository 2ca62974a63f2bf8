"""Sounding events: the rule on its own, then a real pipeline writing them as JSON lines and
publishing them on its PUB socket (the same events in both)."""

from __future__ import annotations

import json
import threading

import zmq

from stream import PipelineConfig, run_pipeline
from stream.stages.events import HOLD_FRAMES, SoundingEvents
from stream.stages.hearing import MASK_EMPTY
from stream.wire.protocol import decode
from stream.wire.transport import free_tcp_port

from .test_api import shipped_onnx  # noqa: F401 - the fixture


def _feed(ev: SoundingEvents, frames: list[tuple[str, float]], start: int = 0) -> list[dict]:
    out = []
    for i, (hears, area) in enumerate(frames, start):
        out += ev.update(i, i * 33_333_333, hears, area)
    return out


def test_started_and_stopped_need_a_steady_change():
    ev = SoundingEvents("cam0")
    assert _feed(ev, [("nothing", 0.0)] * 5) == []
    assert _feed(ev, [("a dog barking", 0.2)] * (HOLD_FRAMES - 1) + [("nothing", 0.0)], 5) == []  # a blip is no event
    got = _feed(ev, [("a dog barking", 0.2)] * HOLD_FRAMES, 10)
    assert [(e["event"], e["concept"], e["seq"]) for e in got] == [("started", "a dog barking", 10 + HOLD_FRAMES - 1)]
    assert got[0]["stream"] == "cam0" and got[0]["mask_area"] == 0.2 and got[0]["time"].endswith("+00:00")
    assert _feed(ev, [("a dog barking", 0.3), ("unsure", 0.3)], 20) == []  # still sounding; unsure once is no change
    got = _feed(ev, [("a siren wailing", 0.1)] * HOLD_FRAMES, 30)
    assert [(e["event"], e["concept"]) for e in got] == [("stopped", "a dog barking"), ("started", "a siren wailing")]
    assert got[0]["mask_area"] == 0.3 and got[0]["duration_s"] > 0  # the largest area while it sounded
    # heard but not painted is not sounding
    got = _feed(ev, [("a siren wailing", MASK_EMPTY / 2)] * HOLD_FRAMES, 40)
    assert [(e["event"], e["concept"]) for e in got] == [("stopped", "a siren wailing")]
    assert ev.finish(50, 0) == []


def test_a_sound_going_at_the_end_stops_there():
    ev = SoundingEvents("cam0", hold=1)
    assert _feed(ev, [("a drum beating", 0.1)])[0]["event"] == "started"
    end = ev.finish(9, 3_000_000_000)
    assert end[0]["event"] == "stopped" and end[0]["pts_ms"] == 3000 and end[0]["duration_s"] == 3.0


def test_pipeline_writes_and_publishes_the_same_events(shipped_onnx, tmp_path):  # noqa: F811
    addr = f"tcp://127.0.0.1:{free_tcp_port('127.0.0.1')}"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b'{"kind":"event"')  # the masks on the same socket are filtered out
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(addr)
    published, done = [], threading.Event()

    def listen():
        while not done.is_set() or sub.poll(200):
            if sub.poll(100):
                published.append(decode(sub.recv_multipart(), kinds=("event",)).header)

    t = threading.Thread(target=listen)
    t.start()
    try:
        cfg = PipelineConfig(source={"kind": "synthetic", "width": 320, "height": 240, "seconds": 3.0},
                             backend={"kind": "engine", "artifact": shipped_onnx, "backend": "onnxruntime"},
                             publish=addr, sink={"events": str(tmp_path / "events.jsonl")})
        report = run_pipeline(cfg)
    finally:
        done.set()
        t.join()
        sub.close()
    assert report["ok"], report["errors"]
    written = [json.loads(x) for x in open(tmp_path / "events.jsonl")]
    assert written, "a SynthAVS single scene through the shipped weights sounds"
    assert written[0]["event"] == "started" and written[-1]["event"] == "stopped"  # the last one closed at the end
    assert [e["event"] for e in written] == ["started", "stopped"] * (len(written) // 2)
    assert all(e["mask_area"] >= MASK_EMPTY for e in written if e["event"] == "started")
    assert report["stages"]["sink"]["counters"]["events"] == len(written)
    keys = ("event", "concept", "seq", "pts_ms", "mask_area")
    assert [{k: e[k] for k in keys} for e in published] == [{k: e[k] for k in keys} for e in written]
