"""Live source fault handling (with a fake camera: there is none here), device errors, and the
small pieces: reorder buffer, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from stream import PipelineConfig, run_pipeline
from stream.stages.metrics import Histogram
from stream.stages.sink import ReorderBuffer, iou


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
    monkeypatch.setattr("stream.stages.live.cv2.VideoCapture", FakeCamera)
    monkeypatch.setattr("stream.stages.live._no_device_node", lambda index: False)  # the fake has no /dev node
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


class _FakeSoundDevice:
    """sounddevice stand-in whose every stream fails like a machine with PortAudio but no device:
    the test must not depend on whether this machine has libportaudio2 (sounddevice raises OSError
    at import without it, which importorskip does not skip)."""

    class PortAudioError(Exception):
        pass

    @classmethod
    def InputStream(cls, *a, **k):  # noqa: N802 - sounddevice's name
        raise cls.PortAudioError("Error querying device -1")


class _NoPortAudio:
    """A meta-path finder that makes `import sounddevice` fail as it does without libportaudio2."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


@pytest.fixture
def no_portaudio(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])


def test_missing_microphone_is_a_clear_error(monkeypatch):
    import sys
    import threading

    from stream.stages.live import LiveSource
    from stream.stages.stage import StageError

    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSoundDevice)
    src = LiveSource(mic="default", retries=1, backoff_s=0.01)
    src.env = type("E", (), {"abort": threading.Event(), "stop": threading.Event()})()
    with pytest.raises(StageError, match="microphone 'default' could not be opened"):
        src._open_mic(first=True)


def test_missing_portaudio_names_the_package_and_mic_none(no_portaudio, capsys, tmp_path, monkeypatch):
    from stream.cli.main import main
    from stream.stages.live import import_sounddevice, list_devices
    from stream.stages.stage import StageError

    with pytest.raises(StageError, match="libportaudio2.*--mic none"):
        import_sounddevice()
    assert "libportaudio2" in list_devices()["microphone_error"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["live", "--mic", "default", "--model", "icf-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "libportaudio2" in err and "--mic none" in err, err
    assert list(tmp_path.iterdir()) == []  # refused before anything was exported or written


def test_missing_camera_fails_fast_at_start_up(monkeypatch):
    """No device node: an error at once, not after retries; a URL that never opens: within the budget."""
    from stream.stages import live
    calls, clock = [], [0.0]  # a fake clock: the retry budget is logic, not wall time
    monkeypatch.setattr(live, "time", type("T", (), {"monotonic": staticmethod(lambda: clock[0]),
                                                     "sleep": staticmethod(lambda s: clock.__setitem__(0, clock[0] + s))}))

    class NeverOpens(FakeCamera):
        def __init__(self, *a):
            calls.append(clock[0])

        def isOpened(self):
            return False

    monkeypatch.setattr("stream.stages.live.cv2.VideoCapture", NeverOpens)
    report = run_pipeline(PipelineConfig(source={"kind": "live", "camera": 57, "mic": None}, backend={"kind": "null"}, transport="inproc"))
    assert any("no /dev/video57" in e and "icf-stream devices" in e for e in report["errors"]), report["errors"]
    assert calls == []
    report = run_pipeline(PipelineConfig(source={"kind": "live", "camera": "rtsp://127.0.0.1:9/none", "mic": None},
                                         backend={"kind": "null"}, transport="inproc"))
    assert any("could not be opened" in e for e in report["errors"]), report["errors"]
    assert len(calls) > 1 and calls[-1] <= live.FIRST_OPEN_BUDGET_S  # retried, within the start-up budget


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
