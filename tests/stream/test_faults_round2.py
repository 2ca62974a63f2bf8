"""Faults of issue 26 (round 2) that live in the source and the sockets: a timeline that goes
back, subscription floods, CURVE clients with a key nobody allowed. Each test builds its fault."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import zmq

from stream.protocol import decode

from .conftest import FPS


def write_backwards_ts(path, seconds: float = 1.0, copies: int = 2):
    """MPEG-TS files concatenated byte for byte: every copy's timestamps restart at the first's,
    so the timeline jumps back by ``seconds`` at each seam (as `cat a.ts b.ts` does)."""
    import av

    one = path.with_suffix(".one.ts")
    with av.open(str(one), "w", format="mpegts") as out:
        v = out.add_stream("mpeg2video", rate=FPS)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * (i % 30), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(frame))
        out.mux(v.encode())
    path.write_bytes(one.read_bytes() * copies)
    return path


def test_a_timeline_that_goes_back_is_never_read_faster_than_real_time(harness, tmp_path):
    """26.8: a file whose pts jumps back was read at 86 fps (every frame up to the old position
    released at once). Now each frame waits at least about one frame step after the one before;
    the check is a lower bound on time, which a loaded machine only makes easier to meet."""
    from stream.sources import FileSource

    video = write_backwards_ts(tmp_path / "back.ts")
    h = harness(FileSource(video=str(video), pace="realtime", video_subs=0, audio_subs=0))
    sub = h.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 1000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(h.ep["video"])
    h.start()
    stamps, pts = [], []
    while True:
        assert sub.poll(10_000), "the source went silent"
        msg = decode(sub.recv_multipart())
        if msg.kind == "eos":
            break
        stamps.append(msg.header["capture_ns"])
        pts.append(msg.header["pts_ns"])
    assert len(stamps) >= 1.5 * FPS  # a few may be lost while the SUB connects
    seam = next(k for k in range(1, len(pts)) if pts[k] < pts[k - 1])  # the fault is really in the file
    step_s, t = 1 / FPS, np.asarray(stamps) / 1e9
    # lower bounds on time only (a loaded machine can make frames late, never early)
    assert t[-1] - t[seam] >= (len(t) - 1 - seam) * step_s * 0.8, t[-1] - t[seam]  # no burst after the seam
    assert t[-1] - t[0] >= (len(t) - 1) * step_s * 0.9, t[-1] - t[0]
    h.thread.join(10)
    assert h.stage.counters["pts_backwards"] >= 1
