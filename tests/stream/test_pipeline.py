"""Real multi-process runs over real sockets on a generated MP4."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zmq

from stream import PipelineConfig, run_pipeline


def _check_accounting(report: dict, sent: int) -> None:
    f = report["frames"]
    assert report["ok"], report["errors"]
    assert f["sent"] == sent
    assert f["processed"] + f["dropped"] == sent, f
    assert f["accounted"], f
    ctx = report["stages"]["context"]["counters"]
    # the context's own view agrees with the sink's chain view
    assert ctx["transport_gaps"] + ctx["superseded"] + ctx["dispatched"] + ctx.get("tail_lost", 0) == sent


def _masks_in_order(npz_path, metrics_path, report, size=(240, 320)):
    data = np.load(npz_path)
    lines = [json.loads(x) for x in open(metrics_path)]
    n = report["frames"]["processed"]
    assert data["masks"].shape == (n, *size) and data["masks"].dtype == np.uint8
    assert len(lines) == n  # one mask per processed frame
    seq = data["seq"]
    assert (np.diff(seq) > 0).all(), "masks must come out in capture order"
    assert [x["seq"] for x in lines] == seq.tolist()
    return data, lines


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_file_multiprocess_every_frame_one_mask(transport, media, tiny_onnx, tmp_path):
    cfg = PipelineConfig(source={"kind": "file", "video": str(media["av"])},
                         backend={"kind": "engine", "artifact": tiny_onnx, "backend": "onnxruntime"},
                         transport=transport, masks=str(tmp_path / "m.npz"), metrics=str(tmp_path / "m.jsonl"),
                         record=str(tmp_path / "o.mp4"))
    report = run_pipeline(cfg)
    _check_accounting(report, 60)
    # how many of the 60 frames keep up with 30 fps depends on the machine's load (the old bound, 45, failed
    # at 25-40 with a training run and other test runs on 2 cores, before and after 24.1): bench measures it
    assert report["frames"]["processed"] > 0
    _masks_in_order(tmp_path / "m.npz", tmp_path / "m.jsonl", report)
    lat = report["latency_ms"]
    for stage in ("to_context", "to_worker", "inference", "to_sink", "capture_to_mask"):
        assert lat[stage]["count"] == report["frames"]["processed"]
    import av

    with av.open(str(tmp_path / "o.mp4")) as c:  # finalised: readable, with both tracks
        assert c.streams.video and c.streams.audio
        assert sum(1 for _ in c.decode(video=0)) == report["stages"]["sink"]["recorded_frames"]


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_tcp_with_curve_and_publish(media, tmp_path):
    from stream.wire.transport import free_tcp_port

    port = free_tcp_port()
    cfg = PipelineConfig(source={"kind": "file", "video": str(media["av"])}, backend={"kind": "null"},
                         transport="tcp", curve=True, publish=f"tcp://127.0.0.1:{port}")
    report = run_pipeline(cfg)
    _check_accounting(report, 60)
    assert report["stages"]["sink"]["counters"]["published"] == report["frames"]["processed"] > 0


def test_two_workers_keep_order(media, tmp_path):
    # jittery 20-70 ms "model": two workers overtake each other; the sink must restore order
    cfg = PipelineConfig(source={"kind": "file", "video": str(media["av"])},
                         backend={"kind": "null", "delay_ms": 20, "jitter_ms": 50}, workers=2, transport="ipc",
                         masks=str(tmp_path / "m.npz"), metrics=str(tmp_path / "m.jsonl"))
    report = run_pipeline(cfg)
    _check_accounting(report, 60)
    _, lines = _masks_in_order(tmp_path / "m.npz", tmp_path / "m.jsonl", report)
    assert {x["worker"] for x in lines} == {"worker0", "worker1"}
    assert report["frames"]["reorder_breaks"] == 0
    assert report["stages"]["sink"]["queues"]["reorder_depth"]["max"] >= 1


def test_slow_sink_bounded_latency_and_counted_drops(media, tmp_path):
    # the sink needs 120 ms per frame against a 30 fps source: it must drop (counted), not queue
    from .stage_harness import run_with_slow_sink

    cfg = PipelineConfig(source={"kind": "file", "video": str(media["long"])}, backend={"kind": "null"},
                         transport="ipc", sink={"max_age_ms": 300})
    report = run_with_slow_sink(cfg, 0.120, tmp_path)
    _check_accounting(report, 120)
    f = report["frames"]
    assert f["dropped"] >= 60 and f["processed"] <= 50
    lat = report["latency_ms"]["capture_to_output"]
    assert lat["max_ms"] < 1500, lat  # bounded: a growing queue would reach seconds over 4 s
    assert report["queues"]["reorder_depth"]["max"] <= 16


def test_inproc_single_process(media):
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(media["av"]), "pace": "fast"},
                                         backend={"kind": "null"}, transport="inproc"))
    _check_accounting(report, 60)


def test_file_without_audio_runs_with_silence(media, capfd):
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(media["silent"])},
                                         backend={"kind": "null"}, transport="inproc"))
    _check_accounting(report, 30)
    assert "no audio track" in capfd.readouterr().err
    assert report["stages"]["context"]["counters"]["audio_underruns"] == 0


def test_corrupt_file_is_a_clear_error(media):
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(media["corrupt"])},
                                         backend={"kind": "null"}, transport="ipc", startup_timeout_s=60))
    assert not report["ok"]
    assert any("corrupt.mp4" in e for e in report["errors"]), report["errors"]


@pytest.mark.parametrize("node", ["segmenter", "sink"])
def test_a_crashed_stage_ends_the_others_at_once_with_the_real_cause(node, tmp_path):
    """26.10: after a stage was SIGKILLed the others drained on the clock and the run ended 10 s
    later with a second, misleading error (a SIGKILLed sink: the segmenter's "the sink ... is
    gone"). Now a crash aborts the run: one error, the crash's own."""
    import os
    import signal
    import threading

    from .conftest import node_process, wait_for_lines

    result: dict = {}
    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": 30.0, "width": 160, "height": 120}, backend={"kind": "null"},
                         transport="ipc", masks=str(tmp_path / "m.npz"), metrics=str(tmp_path / "m.jsonl"))
    th = threading.Thread(target=lambda: result.update(run_pipeline(cfg)))
    th.start()
    proc = node_process(node, th.is_alive)
    wait_for_lines(tmp_path / "m.partial.jsonl", 10, th.is_alive)  # masks are coming out: the run is going
    os.kill(proc.pid, signal.SIGKILL)
    th.join(60)
    assert not th.is_alive()
    assert result["errors"] == [f"process {node} exited with code -9 without a report"], result["errors"]
    assert result["frames"]["sent"] < 900  # ended at once, not at the source's end
    assert result["outputs"][str(tmp_path / "m.npz")] in (None, str(tmp_path / "m.failed.npz"))  # never under its own name
