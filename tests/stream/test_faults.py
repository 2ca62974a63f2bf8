"""Faults of issue 14, each reproduced with a fixture the test makes: poisoned audio, hostile but
well-formed messages, a bad worker, unbounded outputs. Real sockets, stages in threads."""

from __future__ import annotations

import json
import time

import numpy as np
import zmq

from stream.stages.context import ContextKeeper
from stream.stages.context_stage import ContextStage
from stream.wire.order import RESYNC
from stream.wire.protocol import encode, finite

from .stage_harness import frame, only_lane, segmenter_running


def audio(first: int, samples: np.ndarray, seq: int = 0) -> list:
    return encode("audio", {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "first_sample": first,
                            "sample_rate": 16000}, {"samples": samples})


def test_finite_replaces_nan_and_inf_and_clips():
    x = np.array([0.5, np.nan, np.inf, -np.inf, 3.0], np.float32)
    clean, bad = finite(x, -1.0, 1.0)
    assert bad == 3 and clean.tolist() == [0.5, 0.0, 0.0, 0.0, 1.0]
    ok = np.zeros(4, np.float32)
    assert finite(ok)[0] is ok  # clean input: no copy


def test_keeper_never_stores_a_nonfinite_text():
    k = ContextKeeper(4, 3, 2, ring_rate=60)  # a ring clock faster than the frames: every frame pushes
    k.state_for(0)
    k.record(0, np.ones(4), np.ones(4))
    k.state_for(33_000_000)
    k.record(33_000_000, np.full(4, np.nan), np.ones(4))  # a poisoned frame
    state = k.state_for(66_000_000)
    assert k.rejected == 1
    assert all(np.isfinite(a).all() for a in state.as_inputs().values())
    assert state.frame_valid.sum() == 1  # the good frame is in, the poisoned one is not


def test_nan_audio_costs_at_most_its_frame(harness):
    """Ten NaN samples in the audio: the segmenter sanitises them (counted) and the text
    context stays finite, so later frames are not poisoned (issue 14.1). The null backend's frame
    text is the mean audio level, so a NaN that reached it would land in the rings."""
    h, video, asock, pull = segmenter_running(harness, audio=True, audio_wait_ms=200)
    tone = np.full(16000 * 2, 0.1, np.float32)
    tone[16000:16010] = np.nan
    tone[16010] = np.inf
    for pos in range(0, tone.size, 1600):
        asock.send_multipart(audio(pos, tone[pos:pos + 1600], pos // 1600))
    lane = only_lane(h)
    assert wait_for(lambda: lane.intake.ring.end >= tone.size, 30)  # every chunk is in the ring before the frames
    got = 0
    for seq in range(0, 60, 3):  # frames spread over the 2 s, after the NaN too
        video.send_multipart(frame(seq))
        if pull.poll(3000):
            pull.recv_multipart()
            got += 1
    assert got >= 15
    assert h.stage.counters["nonfinite_audio_samples"] == 11
    assert all(np.isfinite(a).all() for a in lane.keeper.state.as_inputs().values())
    assert lane.keeper.state.segment_valid.sum() >= 1  # it really did run past the NaN second


def result(seq: int, prev: int, pts_ns: int | None = None, **extra) -> list:
    t = time.monotonic_ns()
    head = {"stream": "s", "seq": seq, "capture_ns": t, "pts_ns": seq * 33_333_333 if pts_ns is None else pts_ns,
            "prev_seq": prev, "dropped_before": 0, "t": {"capture": t}, **extra}
    return encode("result", head, {"mask": np.zeros((16, 20), np.uint8), "image": np.zeros((16, 20, 3), np.uint8)})


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def sink_harness(harness, token: str | None = None):
    from stream.stages.sink import SinkStage

    h = harness(SinkStage(reorder_timeout_ms=100))
    h.ep.token = token
    h.start()
    return h, h.sock(zmq.PUSH, "results", False)


def test_bad_concepts_cost_one_result_not_the_sink(harness):
    """14.6: a well-formed result whose ``concepts`` is not [[name, p], ...] crashed the readout."""
    h, push = sink_harness(harness)
    push.send_multipart(result(0, -1, concepts="dog"))
    push.send_multipart(result(0, -1, concepts=[["dog", "loud"]]))
    push.send_multipart(result(0, -1, concepts=[["dog", 0.9]]))
    assert wait_for(lambda: h.stage.counters["delivered"] == 1)
    assert h.thread.is_alive() and h.stage.counters["malformed"] == 2


def test_forged_seq_does_not_hijack_the_order(harness):
    """14.7: one result with a huge seq made every later result "late" (57 of 130 processed)."""
    h, push = sink_harness(harness)
    for i in range(10):
        push.send_multipart(result(i, i - 1))
    assert wait_for(lambda: h.stage.counters["delivered"] == 10)
    push.send_multipart(result(10**9, 9, pts_ns=333_333_330))  # far beyond the stream's history: refused outright
    push.send_multipart(result(500, 9))  # a plausible jump: it becomes the chain's head...
    assert wait_for(lambda: h.stage.counters["delivered"] == 11)
    for seq in range(10, 60):  # ...and the real results behind it are followed again after a few
        push.send_multipart(result(seq, seq - 1))
    assert wait_for(lambda: h.stage.counters["delivered"] >= 11 + 50 - RESYNC)
    assert h.stage.counters["refused_jumps"] == 1
    assert h.stage.reorder.resyncs == 1 and h.stage.reorder.late == RESYNC - 1


def test_forged_pts_is_refused(harness):
    h, push = sink_harness(harness)
    push.send_multipart(result(0, -1))
    push.send_multipart(result(1, 0, pts_ns=2**62))  # froze the recording (14.7): outside the wire range
    push.send_multipart(result(1, 0, pts_ns=2**52))  # inside it, but hours beyond the stream's own time
    push.send_multipart(result(1, 0))
    assert wait_for(lambda: h.stage.counters["delivered"] == 2)
    assert h.stage.counters["malformed"] == 1 and h.stage.counters["refused_jumps"] == 1


def test_forged_eos_does_not_stop_the_sink(harness):
    """14.7: an EOS from anyone on the network ended the run after 22 of 752 frames."""
    h, push = sink_harness(harness, token="run-secret")
    push.send_multipart(result(0, -1))
    push.send_multipart(encode("eos", {"stream": "s", "seq": 1, "capture_ns": 0, "dispatched": 0, "frames_sent": 1}))
    push.send_multipart(encode("eos", {"stream": "s", "seq": 1, "capture_ns": 0, "dispatched": 0, "token": "guess"}))
    for seq in range(1, 20):
        push.send_multipart(result(seq, seq - 1))
    assert wait_for(lambda: h.stage.counters["delivered"] == 20)
    assert h.thread.is_alive() and h.stage.counters["forged_eos"] == 2
    push.send_multipart(encode("eos", {"stream": "s", "seq": 20, "capture_ns": 0, "dispatched": 20, "frames_sent": 20,
                                       "token": "run-secret"}))
    h.thread.join(5)
    assert not h.thread.is_alive() and h.report["frames"]["accounted"]


def test_a_worker_with_a_bad_geometry_is_refused(harness):
    """14.8: with 2+ workers one ``ready`` with a bad geometry killed the segmenter."""
    h = harness(ContextStage(workers=2, audio_wait_ms=0))
    video = h.publisher("video")
    h.start()
    good = {"width": 32, "frame_ring": 30, "segment_ring": 4, "audio_samples": 15600}
    bad_geo = dict(good, width=64)  # a worker running another model
    dealers = {}
    for name, geo in (("good", good), ("other", bad_geo), ("none", None)):
        d = h.ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.ROUTING_ID, name.encode())
        d.connect(h.ep["jobs"])
        head = {"stream": "s", "seq": 0, "capture_ns": 0, "job": -1, "ok": False}
        d.send_multipart([b"", *encode("ready", dict(head, geometry=geo) if geo else head)])
        dealers[name] = d
        # in this order: the first worker's geometry is the stream's (handshake: the stage has taken it)
        assert wait_for(lambda: len(h.stage.jobs.workers) + h.stage.counters.get("workers_refused", 0) == len(dealers), 30)
    h.subscribed(video)
    for seq in range(3):
        video.send_multipart(frame(seq))
        assert dealers["good"].poll(3000), "the good worker must still get jobs"
        _, head, *_ = dealers["good"].recv_multipart()
        assert json.loads(head)["kind"] == "job"
        dealers["good"].send_multipart([b"", *encode("ready", {"stream": "s", "seq": seq, "capture_ns": 0, "job": seq, "ok": False})])
    assert h.thread.is_alive()
    assert h.stage.counters["workers_refused"] == 2 and not dealers["other"].poll(100) and not dealers["none"].poll(0)


FLOOD = """
import sys, time, zmq
ctx = zmq.Context()
for addr in sys.argv[1:]:
    s = ctx.socket(zmq.XSUB)
    s.connect(addr)
    for _ in range(5):
        s.send(b"\\x01" + b"x" * (1 << 20))  # a 1 MB subscription
time.sleep(60)  # killed by the test (libzmq 4.3.5 may crash in this process when the victim cuts it off)
"""


def test_publishers_refuse_huge_subscriptions():
    """14.11: 1 MB subscriptions sent to the PUB / XPUB sockets took a source to 4.9 GB. The
    flood comes from another process, as it would; a normal subscriber is still served."""
    import subprocess
    import sys

    from stream.wire.transport import Endpoints, make_endpoints, open_socket

    ctx = zmq.Context()
    ep = Endpoints(make_endpoints("tcp"))
    xpub = open_socket(ctx, zmq.XPUB, ep, "video", bind=True)
    pub = open_socket(ctx, zmq.PUB, ep, "masks", bind=True)
    floods = [subprocess.Popen([sys.executable, "-c", FLOOD, ep[link]]) for link in ("video", "masks")]
    try:
        time.sleep(1.0)
        normal = []
        for addr, topic in ((ep["video"], b'{"kind":"frame"'), (ep["masks"], b"")):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(addr)
            s.setsockopt(zmq.SUBSCRIBE, topic)
            normal.append(s)
        seen = []
        while xpub.poll(1000):
            seen.append(xpub.recv())
        assert seen == [b'\x01{"kind":"frame"'], [len(m) for m in seen]  # the 1 MB ones never arrive
        for _ in range(20):  # the PUB side still serves a normal subscriber
            pub.send(b"mask")
            if normal[1].poll(100):
                break
        assert normal[1].recv() == b"mask"
    finally:
        for flood in floods:
            flood.kill()
            flood.wait()
        ctx.destroy(linger=0)


def test_a_send_to_a_dead_sink_has_a_deadline(tmp_path):
    """14.9: with the sink gone the segmenter's send retried forever (node still running after
    120 s). Now it gives up after its deadline with an error naming the sink."""
    import threading

    from stream.stages.stage import StageEnv, StageError
    from stream.stages.worker import ResultSender
    from stream.wire.transport import Endpoints, make_endpoints

    ctx = zmq.Context()
    env = StageEnv(Endpoints(make_endpoints("ipc", run_dir=str(tmp_path))), threading.Event(), threading.Event(), threading.Event())
    sender = ResultSender(ctx, env, {}, send_timeout_s=0.5)  # nobody binds the results link
    sender.sent_any = True  # the sink was there and died (before any result, a graph's sink may still be starting)
    errors = []

    def send():
        try:
            sender.send(encode("eos", {"stream": "s", "seq": 0, "capture_ns": 0}))
        except StageError as exc:
            errors.append(str(exc))

    th = threading.Thread(target=send, daemon=True)
    th.start()
    th.join(10)
    env.abort.set()  # (only so a hanging send ends after the test failed)
    th.join(2)
    sender.close()
    ctx.destroy(linger=0)
    assert errors and "sink" in errors[0] and "gone" in errors[0]


def test_keys_command_and_a_curve_subscriber(harness, tmp_path):
    """14.12: with --curve the mask socket was a CURVE server whose one-run key was never saved.
    `icf-stream keys` makes key files; the sink publishes with them; a subscriber that holds
    server.key + client.key_secret (as docs/protocol.md shows) gets masks, one without gets none."""
    import zmq.auth

    from stream.cli.main import main
    from stream.stages.sink import SinkStage
    from stream.wire.transport import Security, free_tcp_port

    keys = tmp_path / "keys"
    assert main(["keys", "--out", str(keys)]) == 0
    assert main(["keys", "--out", str(keys)]) == 2  # never overwrites keys silently
    assert oct((keys / "client.key_secret").stat().st_mode & 0o777) == "0o600"
    h = harness(SinkStage(publish=True))
    h.ep.security = Security.load(str(keys))
    h.ep.addresses["masks"] = f"tcp://127.0.0.1:{free_tcp_port()}"
    h.start()
    push = h.sock(zmq.PUSH, "results", False)

    def subscriber(with_keys: bool):
        sub = h.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        if with_keys:  # what an external subscriber does with the two files it was given
            sub.curve_serverkey = zmq.auth.load_certificate(str(keys / "server.key"))[0]
            sub.curve_publickey, sub.curve_secretkey = zmq.auth.load_certificate(str(keys / "client.key_secret"))
        sub.setsockopt(zmq.SUBSCRIBE, b'{"kind":"mask"')
        sub.connect(h.ep["masks"])
        return sub

    good, bad = subscriber(True), subscriber(False)
    got = None
    for seq in range(40):
        push.send_multipart(result(seq, seq - 1))
        if good.poll(100):
            got = json.loads(good.recv_multipart()[0])
            break
    assert got is not None and got["kind"] == "mask"
    assert not bad.poll(300)


def test_a_silent_segmenter_ends_the_sink_with_an_error_naming_it(harness, tmp_path):
    """26.10: a sink whose segmenter was SIGKILLed (no EOS) waited forever. Now a receiver that hears
    nothing for idle_timeout_s ends with an error naming the silent peer, and its outputs are finalised."""
    from stream.stages.sink import SinkStage

    h = harness(SinkStage(reorder_timeout_ms=100, idle_timeout_s=1.0, masks=str(tmp_path / "m.npz")))
    h.start()
    push = h.sock(zmq.PUSH, "results", False)
    for seq in range(3):
        push.send_multipart(result(seq, seq - 1))
    assert wait_for(lambda: h.stage.counters.get("delivered") == 3)
    h.thread.join(30)  # then nothing: the segmenter is gone
    assert not h.thread.is_alive()
    assert "nothing from the segmenter" in h.report["error"] and h.ep["results"] in h.report["error"]


def test_a_silent_source_ends_the_segmenter_with_an_error_naming_it(harness):
    """26.10: the segmenter waited forever for a source that vanished without an EOS."""
    h, pub, _, pull = segmenter_running(harness, idle_timeout_s=1.0)
    for seq in range(3):
        pub.send_multipart(frame(seq))
    assert wait_for(lambda: h.stage.counters.get("received", 0) >= 3, 30)
    h.thread.join(30)
    assert not h.thread.is_alive()
    assert "nothing from the source" in h.report["error"] and h.ep["video"] in h.report["error"]
    pull.close()


def test_forged_drop_counts_and_unstored_masks_are_bounded_and_counted(harness, tmp_path):
    """26.8: a forged dropped_before=10**15 became the report's drop count; masks of another frame
    size were left out of masks.npz without a count."""
    from stream.stages.sink import SinkStage

    h = harness(SinkStage(reorder_timeout_ms=100, masks=str(tmp_path / "m.npz")))
    h.ep.token = "tok"
    h.start()
    push = h.sock(zmq.PUSH, "results", False)
    push.send_multipart(result(0, -1))
    push.send_multipart(result(1, 0, dropped_before=10**15))  # the chain says no frame was dropped between them
    t = time.monotonic_ns()
    other = {"stream": "s", "seq": 5, "capture_ns": t, "pts_ns": 5 * 33_333_333, "prev_seq": 1, "dropped_before": 3, "t": {"capture": t}}
    push.send_multipart(encode("result", other, {"mask": np.zeros((8, 8), np.uint8)}))  # another frame size
    assert wait_for(lambda: h.stage.counters.get("delivered") == 3)
    push.send_multipart(encode("eos", {"stream": "s", "seq": 6, "capture_ns": 0, "dispatched": 3, "frames_sent": 6, "token": "tok"}))
    h.thread.join(10)
    assert not h.thread.is_alive()
    assert h.report["frames"]["dropped_by"]["context_or_transport"] == 3  # seq 2..4, not 10**15
    assert h.report["masks_not_stored"] == {"other_size": 1, "over_limit": 0}
