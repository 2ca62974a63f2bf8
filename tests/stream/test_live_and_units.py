"""Live source fault handling (with a fake camera: there is none here), device errors, and the
small pieces: reorder buffer, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from stream import PipelineConfig, run_pipeline
from stream.metrics import Histogram
from stream.sink import ReorderBuffer, iou


class FakeCamera:
    """cv2.VideoCapture stand-in: ``frames`` good reads, then the device is gone for good."""

    opened = 0

    def __init__(self, index, *a):
        FakeCamera.opened += 1
        self.first = FakeCamera.opened == 1
        self.left = 20 if self.first else 0

    def isOpened(self):
        return self.first

    def set(self, *a):
        return True

    def read(self):
        import time

        time.sleep(1 / 30)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((48, 64, 3), 90, np.uint8)

    def release(self):
        pass


def test_camera_that_disappears_is_retried_then_a_clear_error(monkeypatch, capfd):
    FakeCamera.opened = 0
    monkeypatch.setattr("stream.live.cv2.VideoCapture", FakeCamera)
    report = run_pipeline(PipelineConfig(source={"kind": "live", "camera": 3, "mic": None, "retries": 2, "backoff_s": 0.01},
                                         backend={"kind": "null"}, transport="inproc"))
    assert any("camera 3 disappeared" in e for e in report["errors"]), report["errors"]
    assert FakeCamera.opened == 1 + 3  # the first open, then three reopen attempts (retries + 1)
    assert report["frames"]["processed"] > 0 and report["frames"]["accounted"]
    assert "retrying" in capfd.readouterr().err


def test_missing_camera_is_a_clear_error():
    report = run_pipeline(PipelineConfig(source={"kind": "live", "camera": 57, "mic": None, "retries": 1, "backoff_s": 0.01},
                                         backend={"kind": "null"}, transport="inproc"))
    assert any("camera 57 could not be opened" in e for e in report["errors"]), report["errors"]


def test_missing_microphone_is_a_clear_error(monkeypatch):
    sd = pytest.importorskip("sounddevice")
    import threading

    from stream.live import LiveSource
    from stream.stage import StageError

    def no_device(*a, **k):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "InputStream", no_device)  # also on machines that do have a sound card
    src = LiveSource(mic="default", retries=1, backoff_s=0.01)
    src.env = type("E", (), {"abort": threading.Event(), "stop": threading.Event()})()
    with pytest.raises(StageError, match="microphone 'default' could not be opened"):
        src._open_mic(first=True)


def test_reorder_buffer_releases_in_chain_order_and_is_bounded():
    rb = ReorderBuffer(size=3, timeout_ms=1000)
    rb.push(5, 2, "b", 0)  # frames 3, 4 were dropped upstream: prev of 5 is 2
    assert rb.pop_ready(0) == []
    rb.push(2, -1, "a", 0)
    assert rb.pop_ready(0) == ["a", "b"]
    rb.push(9, 7, "d", 0)  # 7 is lost for good
    rb.push(11, 9, "e", 0)
    assert rb.pop_ready(1) == []
    assert rb.pop_ready(2_000_000_000) == ["d", "e"] and rb.breaks == 1  # timeout gives up the link
    for s in range(20, 25):  # 19 never comes: more than `size` wait behind it
        rb.push(s, s - 1, s, 3_000_000_000)
    assert rb.pop_ready(3_000_000_000) == [20, 21, 22, 23, 24] and rb.breaks == 2
    rb.push(30, 28, "x", 4_000_000_000)
    rb.push(26, 25, "y", 4_000_000_000)  # released out of chain order would go backwards
    assert rb.pop_ready(9_000_000_000, flush=True) == ["y", "x"]
    rb.push(1, 0, "late", 0)
    assert rb.late == 1
    rb.push(0, rb.last, "restart", 0)  # a restarted source: the chain goes on from seq 0
    assert rb.pop_ready(0) == ["restart"] and rb.last == 0


def test_histogram_percentiles_exact_then_bucketed():
    h = Histogram(keep=100)
    for v in range(1, 101):
        h.add(v)
    s = h.summary()
    assert s["p50_ms"] == pytest.approx(50.5) and s["max_ms"] == 100 and s["count"] == 100
    for v in range(101, 1001):
        h.add(v)
    assert h.percentile(50) == pytest.approx(500, rel=0.05)  # from buckets once values are not all kept
    assert h.percentile(99) == pytest.approx(990, rel=0.05)


def test_iou():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    assert iou(a, b) == 1.0
    a[:2] = 1
    b[1:3] = 1
    assert iou(a, b) == pytest.approx(4 / 12)
