"""A stream stage run in a thread on real ipc sockets, with the test playing its neighbours
(the fuzz, fault, ring and results tests share it; the ``harness`` fixture is in conftest)."""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from stream.stages.stage import StageEnv, run_stage
from stream.wire.protocol import encode
from stream.wire.transport import Endpoints, make_endpoints


class Harness:
    """Runs one stage in a thread with real ipc sockets; the test plays its neighbours."""

    def __init__(self, tmp_path, stage) -> None:
        self.ctx = zmq.Context()
        self.ep = Endpoints(make_endpoints("ipc", run_dir=str(tmp_path)))
        self.stop, self.abort, self.go = threading.Event(), threading.Event(), threading.Event()
        self.go.set()
        self.stage = stage
        self.env = StageEnv(self.ep, self.stop, self.abort, self.go)
        self.report = None

    def start(self) -> None:
        def run():
            self.report = run_stage(self.stage, self.ctx, self.env)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def sock(self, kind, link, bind, **opts):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        for k, v in opts.items():
            s.setsockopt(k, v)
        (s.bind if bind else s.connect)(self.ep[link])
        return s

    def publisher(self, link: str):
        """An XPUB bound at ``link``, as the stage's upstream would bind it: a PUB that also hears
        the stage's subscription, for ``subscribed``."""
        return self.sock(zmq.XPUB, link, True)

    def subscribed(self, *pubs, timeout_s: float = 60.0) -> None:
        """Readiness handshake: returns once the stage's SUB socket has subscribed at each of
        ``pubs`` (from ``publisher``), so what is published next reaches it (ZeroMQ drops what a
        PUB sends before the subscription arrived)."""
        for pub in pubs:
            assert xpub_subscribed(pub, 1, timeout_s, self.abort) == 1, f"the stage did not subscribe within {timeout_s:g} s"

    def close(self) -> None:
        self.abort.set()
        if hasattr(self, "thread"):
            self.thread.join(10)
        self.ctx.destroy(linger=0)  # also on failure: an open socket would hang interpreter exit
        assert not hasattr(self, "thread") or not self.thread.is_alive()


def segmenter(**options):
    """The one-worker segmenter of the single-stream graph: the multi-stream segmenter with one lane,
    the harness's own stream (stream.graph.graph.stage_specs builds it so), on the null model."""
    from stream.stages.multistream import MultiSegmenterStage

    return MultiSegmenterStage(backend={"kind": "null"}, max_batch=1, **options)


def segmenter_running(harness, *, audio: bool = False, **options):
    """A started one-lane segmenter (``segmenter(**options)``) with the test as its source (video, and
    audio when asked: XPUBs it has subscribed to) and its sink (a PULL on the results link).
    Returns (harness, video, audio or None, pull)."""
    import zmq

    h = harness(segmenter(**options))
    video = h.publisher("video")
    asock = h.publisher("audio") if audio else None
    pull = h.sock(zmq.PULL, "results", True)
    h.start()
    h.subscribed(video, *([asock] if asock is not None else []))
    return h, video, asock, pull


def only_lane(h, timeout_s: float = 60.0):
    """The segmenter's one lane, once open() has built it (its sockets subscribe while it is being built)."""
    deadline = time.monotonic() + timeout_s
    while len(getattr(h.stage, "lanes", ())) < 1:
        assert time.monotonic() < deadline and h.thread.is_alive(), "the segmenter never built its lane"
        time.sleep(0.01)
    return h.stage.lanes[0]


def frame(seq: int) -> list:
    return encode("frame", {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "pts_ns": seq * 33_333_333,
                            "t": {"capture": time.monotonic_ns()}}, {"image": np.zeros((16, 20, 3), np.uint8)})


def run_with_slow_sink(cfg, delay_s: float, run_dir) -> dict:
    """run_pipeline's graph for ``cfg`` with every stage a thread of this process, on real sockets
    of cfg's transport, and the sink replaced by a test double that needs ``delay_s`` per result
    (a slow consumer: a display, a disk, a network). Returns the pipeline's report."""
    from stream.graph.graph import endpoints_for, stage_specs, supervisor_clock
    from stream.graph.node import build_stage, run_stages
    from stream.graph.pipeline import _assemble
    from stream.stages.sink import SinkStage

    class SlowSink(SinkStage):
        def _deliver(self, pkt) -> None:
            super()._deliver(pkt)
            time.sleep(delay_s)  # the consumer's own work, not a wait for anything

    specs = stage_specs(cfg)
    stages = {name: build_stage(spec) for name, spec in specs.items()}
    stages["sink"] = SlowSink(**specs["sink"]["options"])
    stop, abort, go = threading.Event(), threading.Event(), threading.Event()
    t0 = time.monotonic()
    reports, errors = run_stages(stages, endpoints_for(cfg, str(run_dir)), stop, abort, go, cfg.stream_id,
                                 supervise=supervisor_clock(cfg, stop, abort))
    return _assemble(cfg, reports, errors, time.monotonic() - t0)


def xpub_subscribed(sock: zmq.Socket, expected: int, timeout_s: float, abort) -> int:
    """Readiness handshake on a test's plain XPUB (libzmq applies subscriptions itself and hands each new one to
    recv as b"\\x01" + topic): blocks until ``expected`` subscriptions arrived; returns how many did."""
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < expected and time.monotonic() < deadline and not abort.is_set():
        if sock.poll(50):
            seen += sock.recv()[:1] == b"\x01"
    return seen
