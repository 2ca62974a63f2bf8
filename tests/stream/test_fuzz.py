"""Fuzzed messages into running stages over real sockets: each one is dropped and counted, the
stage keeps working (it still processes a valid message afterwards)."""

from __future__ import annotations

import json
import time

import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.stages.context_stage import ContextStage
from stream.stages.sink import SinkStage
from stream.stages.worker import WorkerStage
from stream.wire.protocol import encode

from .stage_harness import frame, only_lane, segmenter_running

JSONV = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6),
                     lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=5), x, max_size=3), max_leaves=8)


def mutate(data, parts: list) -> list:
    """A damaged copy of a valid message, or plain garbage."""
    choice = data.draw(st.integers(0, 6))
    parts = [bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else p for p in parts]
    if choice == 0:
        return data.draw(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
    header = json.loads(parts[0])
    if choice == 1:  # a header field replaced by anything
        header[data.draw(st.sampled_from(sorted(header) + ["x"]))] = data.draw(JSONV)
    elif choice == 2 and header["parts"]:  # a part descriptor damaged
        desc = data.draw(st.sampled_from(header["parts"]))
        desc[data.draw(st.sampled_from(["shape", "dtype", "name", "encoding"]))] = data.draw(JSONV)
    elif choice == 3 and len(parts) > 1:  # truncated or padded payload
        i = data.draw(st.integers(1, len(parts) - 1))
        parts[i] = parts[i][: data.draw(st.integers(0, max(len(parts[i]) - 1, 0)))] if data.draw(st.booleans()) else parts[i] + b"\x00"
    elif choice == 4:  # a part missing or extra
        return parts[:-1] if data.draw(st.booleans()) else parts + [b"zz"]
    elif choice == 5:  # a plausible header whose arrays are the wrong shape
        header["parts"] = [dict(d, shape=[1] * len(d["shape"])) for d in header["parts"]]
        parts = [parts[0]] + [np.zeros(1, np.dtype(d["dtype"])).tobytes() * 1 for d in header["parts"]]
    else:  # huge claimed shape
        if header["parts"]:
            header["parts"][0]["shape"] = [65536, 65536, 3]
    return [json.dumps(header).encode(), *parts[1:]]


def job(seq: int, prev: int) -> list:
    arrays = {"image": np.full((16, 20, 3), 100, np.uint8), "audio": np.zeros((1, 15600), np.float32),
              "frame_ring": np.zeros((1, 30, 32), np.float32), "frame_valid": np.zeros((1, 30), np.float32),
              "segment_ring": np.zeros((1, 4, 32), np.float32), "segment_valid": np.zeros((1, 4), np.float32)}
    return encode("job", {"stream": "s", "seq": seq, "capture_ns": time.monotonic_ns(), "pts_ns": seq * 33_333_333,
                          "prev_seq": prev, "dropped_before": 0, "t": {"capture": time.monotonic_ns()}}, arrays)


def frame_comes_back(video, sock, last_seq, header_at: int = 0, answer=None, timeout_s: float = 60.0) -> dict:
    """After a fuzz: sends the next valid frame until it comes back on ``sock`` (a job or a result;
    ``answer`` is called for each message on the way). A handshake instead of a sleep for the fuzzed
    messages still in flight (one of them may take the seq a frame was sent with). Its header."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seq = (last_seq() or 0) + 1
        video.send_multipart(frame(seq))
        while sock.poll(500):
            header = json.loads(sock.recv_multipart()[header_at])
            if answer is not None:
                answer()
            if header.get("seq") == seq:
                return header
    raise AssertionError(f"no valid frame came back within {timeout_s:g} s of the fuzz")


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def test_worker_survives_fuzzed_jobs(harness):
    h = harness(WorkerStage(backend={"kind": "null"}, index=0))
    router = h.sock(zmq.ROUTER, "jobs", True)
    pull = h.sock(zmq.PULL, "results", True)
    h.start()
    wid = router.recv_multipart()[0]  # the worker's first "ready"

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        router.send_multipart([wid, b"", *mutate(data, job(7, 6))], copy=True)
        assert router.poll(5000), "the worker stopped answering"
        router.recv_multipart()  # it always gives its credit back
        while pull.poll(50):
            pull.recv_multipart()
        assert h.thread.is_alive()

    fuzz()
    router.send_multipart([wid, b"", *job(8, 7)])
    assert pull.poll(5000)
    header = json.loads(pull.recv_multipart()[0])
    assert header["kind"] == "result" and header["seq"] == 8 and "error" not in header
    assert h.stage.counters["malformed"] + h.stage.counters["errors"] > 0




def test_context_survives_fuzzed_frames_audio_and_ready(harness):
    h = harness(ContextStage(workers=1, audio_wait_ms=0))
    video = h.publisher("video")
    audio = h.publisher("audio")
    h.start()
    dealer = h.sock(zmq.DEALER, "jobs", False)
    geometry = {"width": 32, "frame_ring": 30, "segment_ring": 4, "audio_samples": 15600}
    ready = encode("ready", {"stream": "s", "seq": 0, "capture_ns": 0, "job": -1, "ok": False, "geometry": geometry})
    dealer.send_multipart([b"", *ready])
    h.subscribed(video, audio)
    seq = iter(range(10**6))

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        target = data.draw(st.sampled_from(["video", "audio", "ready"]))
        if target == "video":
            video.send_multipart(mutate(data, frame(next(seq))))
        elif target == "audio":
            chunk = encode("audio", {"stream": "s", "seq": 0, "capture_ns": 0, "first_sample": 0}, {"samples": np.zeros(64, np.float32)})
            audio.send_multipart(mutate(data, chunk))
        else:
            dealer.send_multipart([b"", *mutate(data, ready)])
        assert h.thread.is_alive()

    fuzz()
    head = frame_comes_back(video, dealer, lambda: h.stage.last_seq, header_at=1,
                            answer=lambda: dealer.send_multipart([b"", *ready]))  # each job answered, as a worker would
    assert head["kind"] == "job"
    assert h.stage.counters["malformed"] > 0


def test_sink_survives_fuzzed_results(harness):
    h = harness(SinkStage())
    h.start()
    push = h.sock(zmq.PUSH, "results", False)

    def result(seq, prev):
        t = time.monotonic_ns()
        return encode("result", {"stream": "s", "seq": seq, "capture_ns": t, "pts_ns": 0, "prev_seq": prev, "dropped_before": 0,
                                 "t": {"capture": t}}, {"mask": np.zeros((16, 20), np.uint8), "image": np.zeros((16, 20, 3), np.uint8)})

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        push.send_multipart(mutate(data, result(3, 2)))
        assert h.thread.is_alive()

    fuzz()
    last = h.stage.reorder.last  # a fuzzed result may have been a valid link of the chain
    push.send_multipart(result(last + 1, last))
    deadline = time.monotonic() + 5
    while h.stage.counters["delivered"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.stage.counters["delivered"] >= 1
    assert h.stage.counters["malformed"] > 0


def test_oversized_messages_are_dropped_and_counted(harness):
    h = harness(SinkStage())
    h.start()
    push = h.sock(zmq.PUSH, "results", False)
    push.send_multipart([b'{"kind":"result"}', b"\x00" * (40 << 20)])  # over the 32 MiB message limit
    deadline = time.monotonic() + 5
    while h.stage.counters.get("oversized", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.stage.counters.get("oversized") == 1
    push.send_multipart([b"x" * (70 << 20)])  # over libzmq's hard cap: the peer is cut off, we live on
    time.sleep(0.3)
    assert h.thread.is_alive()


def test_inline_segmenter_survives_fuzzed_frames(harness):
    """One worker runs inside the segmenter: garbage frames must not reach the model."""
    h, video, _, pull = segmenter_running(harness, audio_wait_ms=0)
    seq = iter(range(10**6))

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        video.send_multipart(mutate(data, frame(next(seq))))
        assert h.thread.is_alive()

    fuzz()
    header = frame_comes_back(video, pull, lambda: only_lane(h).intake.last_seq)
    assert header["kind"] == "result" and "error" not in header
    assert h.stage.counters["malformed"] > 0


def test_hostile_but_wellformed_headers(harness):
    """Messages that pass the wire format but carry nonsense where stages compute with values."""
    h, video, audio, pull = segmenter_running(harness, audio=True, audio_wait_ms=0)
    bad = [encode("frame", {"stream": "s", "seq": 0, "capture_ns": 0, "pts_ns": 0, "t": [1, 2]}, {"image": np.zeros((8, 8, 3), np.uint8)}),
           encode("frame", {"stream": "s", "seq": 1, "capture_ns": 0, "pts_ns": 2**62, "t": {"x": "y"}}, {"image": np.zeros((8, 8, 3), np.uint8)}),
           encode("eos", {"stream": "s", "seq": 2, "capture_ns": 0, "last_seq": "many", "frames_sent": None})]
    for msg in bad:
        video.send_multipart(msg)
    audio.send_multipart(encode("audio", {"stream": "s", "seq": 0, "capture_ns": 0, "first_sample": 2**62}, {"samples": np.ones(8, np.float32)}))
    audio.send_multipart(encode("audio", {"stream": "s", "seq": 1, "capture_ns": 0, "first_sample": 0}, {"samples": np.ones(8, np.float32)}))
    deadline = time.monotonic() + 30
    while h.stage.counters.get("malformed", 0) < 4 and time.monotonic() < deadline:  # every bad message was read
        time.sleep(0.01)
    intake = only_lane(h).intake
    video.send_multipart(frame((intake.last_seq or 0) + 1))
    got = []
    while pull.poll(2000):
        got.append(json.loads(pull.recv_multipart()[0]))
        if got[-1]["seq"] == intake.last_seq:
            break
    assert h.thread.is_alive() and got and "error" not in got[-1]
    # all four are refused by protocol.py's per-kind ranges (t not stamps, pts and first_sample
    # beyond 2^53, eos counts not integers): the ring never sees the wild sample number
    assert h.stage.counters["malformed"] == 4 and intake.ring.resets == 0


def test_restarted_source_is_followed(harness):
    """A source that restarts begins again at seq 0: counted as a reset, its frames still run."""
    h, video, _, pull = segmenter_running(harness, audio_wait_ms=0)
    seqs = []
    for s in [*range(100, 103), *range(0, 3)]:
        video.send_multipart(frame(s))
        assert pull.poll(3000)
        head = json.loads(pull.recv_multipart()[0])
        seqs.append((head["seq"], head["prev_seq"]))
    assert [s for s, _ in seqs] == [100, 101, 102, 0, 1, 2]
    assert seqs[3][1] == 102  # the chain goes on across the restart
    assert h.stage.counters["seq_resets"] == 1
    assert h.stage.counters["transport_gaps"] == 100  # frames 0..99 never reached us: counted as lost
