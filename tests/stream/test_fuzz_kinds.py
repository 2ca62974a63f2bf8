"""Every message kind of docs/protocol.md, well formed but hostile, into a running graph.

A real context stage, worker and sink run as threads over ipc sockets; the test plays the source
and, between valid frames, an attacker on every link: hostile ``frame`` / ``audio`` / ``eos`` on
the video and audio links, ``ready`` from a stranger on the jobs link, ``result`` / ``mask`` / ``event`` /
``eos`` / ``job`` pushed at the sink. The messages pass the wire format (valid JSON, parts that
match their descriptors); their values are what hurts: boundary and out-of-range integers, wrong
types, NaN / Inf samples, wrong shapes, junk concepts and geometries, forged EOS. After each one
the graph must keep delivering: one of the next few valid frames comes out as a mask (a forged
but plausible seq may cost a few frames while the chain resyncs, never the stream)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.stages.context_stage import ContextStage
from stream.stages.sink import SinkStage
from stream.stages.stage import StageEnv, run_stage
from stream.stages.worker import WorkerStage
from stream.wire.order import RESYNC
from stream.wire.protocol import KINDS, encode
from stream.wire.transport import Endpoints, make_endpoints

from .stage_harness import xpub_subscribed

F32 = np.float32
INTS = st.sampled_from([-(2**63) - 1, -(2**63), -1, 0, 1, 2**31, 2**53 - 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64])
HOSTILE = (INTS | st.floats(allow_nan=True, allow_infinity=True) | st.none() | st.booleans() | st.text(max_size=300)
           | st.lists(st.one_of(INTS, st.text(max_size=4), st.lists(st.text(max_size=3) | INTS, max_size=3)), max_size=4)
           | st.dictionaries(st.text(max_size=8), INTS | st.text(max_size=3), max_size=4))
GEOMETRY = {"width": 32, "frame_ring": 30, "segment_ring": 4, "audio_samples": 15600}


def valid(kind: str, seq: int) -> tuple[dict, dict]:
    """A valid header and parts of ``kind`` (what the attacker starts from)."""
    img, m = np.zeros((16, 20, 3), np.uint8), np.zeros((16, 20), np.uint8)
    t = time.monotonic_ns()
    base = {"stream": "s", "seq": seq, "capture_ns": t, "t": {"capture": t}}
    return {
        "frame": (dict(base, pts_ns=seq * 33_333_333), {"image": img}),
        "audio": (dict(base, first_sample=seq * 533), {"samples": np.zeros(533, F32)}),
        "job": (dict(base, pts_ns=seq * 33_333_333, prev_seq=seq - 1),
                {"image": img, "audio": np.zeros((1, 15600), F32), "frame_ring": np.zeros((1, 30, 32), F32),
                 "frame_valid": np.zeros((1, 30), F32), "segment_ring": np.zeros((1, 4, 32), F32), "segment_valid": np.zeros((1, 4), F32)}),
        "ready": (dict(base, job=seq, ok=True, geometry=GEOMETRY), {"frame_text": np.zeros((1, 32), F32), "segment_text": np.zeros((1, 32), F32)}),
        "result": (dict(base, pts_ns=seq * 33_333_333, prev_seq=seq - 1, concepts=[["x", 0.5]], mask_kind="binary"), {"mask": m, "image": img}),
        "mask": (dict(base, pts_ns=0), {"mask": m}),
        "event": (dict(base, pts_ns=0, event="started", concept="x"), {}),
        "eos": (dict(base, frames_sent=seq, last_seq=seq - 1, dispatched=0), {}),
    }[kind]


@st.composite
def hostile(draw, kind: str, seq: int) -> list:
    head, arrays = valid(kind, seq)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["header", "array", "nonfinite"] if arrays else ["header"]))
        if what == "header":
            head[draw(st.sampled_from(sorted(head) + ["concepts", "geometry", "prev_seq", "pts_ns", "dispatched", "token"]))] = draw(HOSTILE)
        elif what == "array":  # another shape or dtype, bytes always matching the descriptor
            name = draw(st.sampled_from(sorted(arrays)))
            shape = draw(st.lists(st.integers(0, 40), min_size=0, max_size=4))
            arrays[name] = np.zeros(shape, draw(st.sampled_from([np.uint8, F32, np.float64, np.int64])))
        else:  # NaN / Inf inside a float part
            floats = [n for n, a in arrays.items() if a.dtype == F32 and a.size]
            if floats:
                name = draw(st.sampled_from(floats))
                a = arrays[name].copy()
                a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38]))
                arrays[name] = a
    head.pop("kind", None)
    try:
        return encode(kind, head, arrays)
    except (TypeError, ValueError):  # json.dumps refused the value: send it as text the way a foreign sender might
        return [json.dumps({"kind": kind, "v": 1, **{k: str(v) for k, v in head.items()}, "parts": []}).encode()]


class Graph:
    """context (1 worker over the jobs link) + worker (null model) + sink, threads over ipc."""

    def __init__(self, tmp_path) -> None:
        self.ctx = zmq.Context()
        self.ep = Endpoints(make_endpoints("ipc", run_dir=str(tmp_path)), token="run-token")
        self.stop, self.abort, self.go = threading.Event(), threading.Event(), threading.Event()
        self.go.set()
        env = StageEnv(self.ep, self.stop, self.abort, self.go, "s")
        self.sink = SinkStage(publish=True, reorder_timeout_ms=100, max_age_ms=10_000)
        self.context = ContextStage(workers=1, audio_wait_ms=0, job_timeout_s=0.5)
        self.worker = WorkerStage(backend={"kind": "null"}, index=0)
        self.threads = []
        for stage in (self.sink, self.context, self.worker):  # binders first: each is open before the next starts
            opened = threading.Event()
            th = threading.Thread(target=run_stage, args=(stage, self.ctx, env, opened), daemon=True)
            th.start()
            self.threads.append(th)
            assert opened.wait(60), f"{stage.name} did not open"

    def sock(self, kind, link, bind, **opts):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        for k, v in opts.items():
            s.setsockopt(getattr(zmq, k), v)
        (s.bind if bind else s.connect)(self.ep[link])
        return s

    def close(self) -> None:
        self.abort.set()
        for th in self.threads:
            th.join(10)
        self.ctx.destroy(linger=0)
        assert not any(th.is_alive() for th in self.threads)


FUZZ = settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck))


def test_every_kind_hostile_and_the_graph_keeps_delivering(tmp_path):
    g = Graph(tmp_path)
    try:
        video, audio = g.sock(zmq.XPUB, "video", True), g.sock(zmq.XPUB, "audio", True)
        push = g.sock(zmq.PUSH, "results", False)
        stranger = g.sock(zmq.DEALER, "jobs", False, ROUTING_ID=b"stranger")
        masks = g.sock(zmq.SUB, "masks", False, SUBSCRIBE=b"")
        for pub in (video, audio):  # the context stage's subscriptions reached them (readiness handshake)
            assert xpub_subscribed(pub, 1, 60, g.abort) == 1
        # the masks subscription: the first deliver() sends frames until one comes back as a mask
        state = {"seq": 0}
        links = {"frame": [video], "audio": [audio], "eos": [video, audio, push], "ready": [stranger],
                 "result": [push], "mask": [push], "event": [push], "job": [push, stranger]}
        assert sorted(links) == sorted(KINDS)  # every kind of docs/protocol.md is driven

        def deliver() -> bool:
            """Valid frames until one comes out as a mask (at most RESYNC + 4)."""
            for _ in range(RESYNC + 4):
                state["seq"] += 1
                seq = state["seq"]
                audio.send_multipart(encode("audio", *valid("audio", seq)))
                video.send_multipart(encode("frame", *valid("frame", seq)))
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    if masks.poll(50) and json.loads(masks.recv_multipart()[0])["seq"] == seq:
                        return True
            return False

        assert deliver()

        @FUZZ
        @given(data=st.data())
        def fuzz(data):
            kind = data.draw(st.sampled_from(KINDS))
            msg = data.draw(hostile(kind, state["seq"] + data.draw(st.sampled_from([1, 2, 50, 10**6]))))
            sock = data.draw(st.sampled_from(links[kind]))
            sock.send_multipart([b"", *msg] if sock is stranger else msg)
            assert all(th.is_alive() for th in g.threads), "a stage died"
            assert deliver(), f"the graph stopped delivering after a hostile {kind}"

        fuzz()
        c = {**g.context.counters, **g.sink.counters}
        assert c.get("malformed", 0) + c.get("forged_eos", 0) + c.get("refused_jumps", 0) > 0
        assert g.sink.eos is None  # no forged EOS was obeyed
    finally:
        g.close()
