"""The single-stream graph's segmenter is the multi-stream segmenter with one lane: the same
frame-order, audio and end-of-stream behaviour, checked by one test body through both entry points
(the stage the single-stream graph builds, and a multi-stream segmenter given one stream)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from stream.graph.graph import PipelineConfig, PipelineError, stage_specs
from stream.graph.node import build_stage
from stream.stages.multistream import MultiSegmenterStage
from stream.wire.protocol import encode

from .stage_harness import frame


def _single_stream_graph(h) -> MultiSegmenterStage:
    specs = stage_specs(PipelineConfig(source={"kind": "synthetic"}, backend={"kind": "null"}, context={"audio_wait_ms": 5000}))
    assert specs["context"]["type"] == "multi" and "worker0" not in specs  # one worker: no context stage, no hop
    return build_stage(specs["context"])


def _multi_stream_serve(h) -> MultiSegmenterStage:
    return MultiSegmenterStage(streams=[{"stream_id": "s", "endpoints": h.ep}], backend={"kind": "null", "batch_sizes": [1, 2]},
                               audio_wait_ms=5000)


def _audio(first: int, n: int, seq: int) -> list:
    return encode("audio", {"stream": "s", "seq": seq, "capture_ns": 0, "pts_ns": first * 62_500, "sample_rate": 16000,
                            "first_sample": first}, {"samples": np.full(n, 0.1, np.float32)})


@pytest.mark.parametrize("entry", [_single_stream_graph, _multi_stream_serve], ids=["single-stream graph", "multi-stream segmenter"])
def test_frame_order_audio_wait_and_end_of_stream(harness, entry):
    h = harness(None)
    h.stage = entry(h)
    assert isinstance(h.stage, MultiSegmenterStage)
    video, audio = h.publisher("video"), h.publisher("audio")
    pull = h.sock(zmq.PULL, "results", True)
    h.start()
    h.subscribed(video, audio)
    head_start = 53_500  # audio up to frame 100's pts (seq * 33.3 ms): frame 101 must wait for its own (audio_wait_ms)
    audio.send_multipart(_audio(0, head_start, 0))
    heads = []
    for seq in (100, 101, 102, 0, 1, 2):  # a restart: the chain goes on, frames 0..99 counted as lost
        video.send_multipart(frame(seq))
        if seq == 101:  # frame 101 waits for audio up to its pts, then goes with it in the ring
            assert not pull.poll(300)
            audio.send_multipart(_audio(800, 16000 * 4, 1))
        assert pull.poll(30_000)
        heads.append(json.loads(pull.recv_multipart()[0]))
    assert [(x["seq"], x["prev_seq"]) for x in heads] == [(100, -1), (101, 100), (102, 101), (0, 102), (1, 0), (2, 1)]
    assert all(x["kind"] == "result" and "error" not in x for x in heads)
    video.send_multipart(encode("eos", {"stream": "s", "seq": 3, "capture_ns": 0, "frames_sent": 103, "last_seq": 2}))
    assert pull.poll(30_000)
    eos = json.loads(pull.recv_multipart()[0])
    h.thread.join(30)
    assert not h.thread.is_alive() and "error" not in h.report
    assert eos["kind"] == "eos" and eos["last_dispatched"] == 2 and eos["dispatched"] == 6 and eos["tail_lost"] == 0
    c = h.report["counters"]  # one lane: its counters are the stage's
    assert c["seq_resets"] == 1 and c["transport_gaps"] == 100 and c["audio_underruns"] == 0 and c["dispatched"] == 6
    assert c["eos_from_source"] is True and h.report["batching"]["histogram"] == {"1": 6}


def test_one_worker_refuses_scale_out_options():
    cfg = PipelineConfig(source={"kind": "synthetic"}, backend={"kind": "null"}, context={"job_timeout_s": 2})
    with pytest.raises(PipelineError, match=r"context option\(s\) \['job_timeout_s'\] do not apply to one worker"):
        stage_specs(cfg)
    specs = stage_specs(PipelineConfig(source={"kind": "synthetic"}, backend={"kind": "null"}, workers=2, context={"top_k": 2}))
    assert specs["context"]["type"] == "context" and specs["worker1"]["options"]["top_k"] == 2  # the workers name the concepts


@pytest.mark.slow
@pytest.mark.parametrize("entry", [_single_stream_graph, _multi_stream_serve], ids=["single-stream graph", "multi-stream segmenter"])
def test_a_sink_that_goes_away_ends_the_stream(harness, entry):
    """The sink takes one result, then is gone: after the send deadline (10 s) the lane stops. On the
    graph's own stream that is the stage's error naming the sink (the run fails with the reason); in
    the multi-stream serve it ends that stream only, recorded in its lane's counters."""
    h = harness(None)
    h.stage = entry(h)
    video = h.publisher("video")
    pull = h.sock(zmq.PULL, "results", True)
    h.start()
    h.subscribed(video)
    video.send_multipart(frame(0))
    assert pull.poll(30_000) and json.loads(pull.recv_multipart()[0])["seq"] == 0
    pull.close()  # the sink is gone: results queue on the segmenter's side up to the high-water mark, then none goes
    c = h.stage.counters  # one lane: the lane's counters
    for seq in range(1, 200):  # one frame at a time, each taken before the next, until one must wait for the sink
        video.send_multipart(frame(seq))
        while c["dispatched"] < seq + 1 and not c.get("sink_busy"):
            assert h.thread.is_alive()
            time.sleep(0.005)
        if c.get("sink_busy"):
            break
    assert c.get("sink_busy") == 1
    h.thread.join(60)
    assert not h.thread.is_alive()
    if entry is _single_stream_graph:
        assert "took no result for 10 s" in h.report["error"] and h.ep["results"] in h.report["error"]
    else:
        assert "error" not in h.report and "took no result" in h.report["streams"]["s"]["counters"]["sink_gone"]
