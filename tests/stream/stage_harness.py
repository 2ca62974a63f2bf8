"""A stream stage run in a thread on real ipc sockets, with the test playing its neighbours
(the fuzz, fault, ring and results tests share it; the ``harness`` fixture is in conftest)."""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from stream.protocol import encode
from stream.stage import StageEnv, run_stage
from stream.transport import Endpoints, make_endpoints


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

    def close(self) -> None:
        self.abort.set()
        if hasattr(self, "thread"):
            self.thread.join(10)
        self.ctx.destroy(linger=0)  # also on failure: an open socket would hang interpreter exit
        assert not hasattr(self, "thread") or not self.thread.is_alive()


def frame(seq: int) -> list:
    return encode("frame", {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "pts_ns": seq * 33_333_333,
                            "t": {"capture": time.monotonic_ns()}}, {"image": np.zeros((16, 20, 3), np.uint8)})
