"""The end of a stream when the video link lost its EOS: a slow consumer fills the video link's
shallow queue, the PUB drops what comes last (the last frames and every copy of the EOS), and the
stream must still end with the source's own count (CI failure of stop 28: sink said 119 of 120 sent).
The source also sends its EOS on the audio link, whose queue is deep: that copy is the source's word."""

from __future__ import annotations

import json

import numpy as np
import zmq

from stream.wire.protocol import encode

from .stage_harness import frame, only_lane, segmenter
from .test_fuzz import frame_comes_back


def _eos(last_seq: int) -> list:
    return encode("eos", {"stream": "s", "seq": last_seq + 1, "capture_ns": 0, "frames_sent": last_seq + 1,
                          "last_seq": last_seq, "audio_chunks": 1, "reason": "end"})


def _audio(first: int, n: int) -> list:
    return encode("audio", {"stream": "s", "seq": first // n, "capture_ns": 0, "pts_ns": first * 62_500, "sample_rate": 16000,
                            "first_sample": first}, {"samples": np.zeros(n, np.float32)})


def _run_to_eos(h, pull, frames: list[int], last_seq: int, stop: bool) -> dict:
    video, audio = h.publisher("video"), h.publisher("audio")
    h.start()
    h.subscribed(video, audio)
    audio.send_multipart(_audio(0, 16000 * 6))  # audio far past every frame: no frame waits for it
    for seq in frames:
        video.send_multipart(frame(seq))
    audio.send_multipart(_eos(last_seq))  # the video link's copies were "dropped at the high-water mark"
    if stop:
        h.stop.set()  # the source process is gone
    seen = []
    while pull.poll(60_000):
        head = json.loads(pull.recv_multipart()[0])
        if head["kind"] == "eos":
            h.thread.join(30)
            assert not h.thread.is_alive()
            return {"eos": head, "results": seen, "counters": h.report["counters"]}
        seen.append(head["seq"])
    raise AssertionError("the segmenter never sent its EOS")


def _stage(harness):
    h = harness(segmenter(audio_wait_ms=0, send_image=False))
    pull = h.sock(zmq.PULL, "results", True)
    return h, pull


def test_every_frame_in_and_eos_only_on_the_audio_link_ends_at_once(harness):
    # no stop: the stream ends because the source said frame 4 was its last and frame 4 is in
    h, pull = _stage(harness)
    out = _run_to_eos(h, pull, list(range(5)), 4, stop=False)
    assert out["eos"]["frames_sent"] == 5 and out["eos"]["last_seq"] == 4 and out["eos"]["tail_lost"] == 0
    assert out["counters"]["eos_from_source"] is True


def test_lost_tail_is_counted_against_the_sources_count(harness):
    # frames 5..7 and the video EOS never arrive: after the quiet second the stream ends with the
    # source's count (8 sent), the missing tail counted lost, so the books still balance
    h, pull = _stage(harness)
    out = _run_to_eos(h, pull, list(range(5)), 7, stop=True)
    eos, c = out["eos"], out["counters"]
    assert eos["frames_sent"] == 8 and eos["last_seq"] == 7 and eos["tail_lost"] == 3
    assert c["transport_gaps"] + c["superseded"] + c["dispatched"] + c["tail_lost"] == 8


def test_a_forged_eos_on_the_audio_link_is_refused(harness):
    h, pull = _stage(harness)
    h.ep.token = "run-secret"
    video, audio = h.publisher("video"), h.publisher("audio")
    h.start()
    h.subscribed(video, audio)
    audio.send_multipart(_eos(0))  # no token: anyone's
    video.send_multipart(frame(0))
    # frames after the forged "last frame 0" still come back as results (the stream went on)
    head = frame_comes_back(video, pull, lambda: only_lane(h).intake.last_seq)
    assert head["kind"] == "result" and head["seq"] >= 1
    assert h.thread.is_alive() and h.stage.counters["forged_eos"] == 1
