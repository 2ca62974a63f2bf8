"""Mistakes at the command line fail before any pipeline process starts: one line naming the problem and
the fix, exit 2. Each of these used to surface only after the processes had started and a stage had failed
(10-20 s on a busy 2-core machine; a missing microphone after a minute of retries, never naming --mic none).
"No process started" is checked directly: run_pipeline must not be called."""

from __future__ import annotations

import shutil

import pytest

from stream.cli.main import main


@pytest.fixture
def no_pipeline(monkeypatch, tmp_path):
    """Fails the test if the pipeline is started; runs in an empty folder with a private cache."""
    import stream.graph.pipeline

    def started(*a, **k):
        raise AssertionError("the pipeline started: the mistake was not caught before the processes")

    monkeypatch.setattr(stream.graph.pipeline, "run_pipeline", started)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ICF_ENGINE_CACHE", str(tmp_path / "engine-cache"))
    return tmp_path


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_non_video_and_truncated_files(no_pipeline, media, capsys):
    text = no_pipeline / "notes.mp4"
    text.write_text("not a video\n")
    truncated = no_pipeline / "truncated.mp4"
    truncated.write_bytes(media["av"].read_bytes()[:2000])
    for bad in (text, truncated, media["corrupt"]):
        _refused(capsys, ["run", "--video", str(bad), "--model", "icf-tiny"], f"--video {bad}", "truncated or not media")
    _refused(capsys, ["run", "--video", str(media["av"]), "--audio", str(media["silent"]), "--model", "icf-tiny"],
             "--audio", "has no audio stream")


@pytest.mark.parametrize("address", ["foo", "tcp://999.1.1.1:5556", "tcp://127.0.0.1:99999"])
def test_bad_publish_address(no_pipeline, media, capsys, address):
    _refused(capsys, ["run", "--video", str(media["av"]), "--model", "icf-tiny", "--publish", address],
             f"--publish {address}", "tcp://127.0.0.1:5556")


def test_publish_address_in_use(no_pipeline, media, capsys):
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        _refused(capsys, ["demo", "--model", "icf-tiny", "--publish", f"tcp://127.0.0.1:{port}", "--out", "o"], "cannot bind")
    finally:
        sock.close(linger=0)
    assert not (no_pipeline / "o").exists()


def test_tampered_onnx(no_pipeline, tiny_onnx, media, capsys):
    from engine.spec import sidecar_path

    onnx = no_pipeline / "tiny.onnx"
    shutil.copy(tiny_onnx, onnx)
    shutil.copy(sidecar_path(tiny_onnx), sidecar_path(onnx))
    with open(onnx, "r+b") as f:
        f.seek(onnx.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    _refused(capsys, ["run", "--video", str(media["av"]), "--weights", str(onnx)], "does not match its sidecar", "Re-export")


def test_no_camera(no_pipeline, capsys):
    missing = next(i for i in range(40, 100) if not __import__("os").path.exists(f"/dev/video{i}"))
    _refused(capsys, ["live", "--camera", str(missing), "--mic", "none", "--model", "icf-tiny"],
             f"/dev/video{missing}", "icf-stream devices")
    _refused(capsys, ["live", "--camera", str(no_pipeline / "cam"), "--mic", "none", "--model", "icf-tiny"], "does not exist")


def test_no_such_microphone_names_mic_none(no_pipeline, capsys):
    """Needs PortAudio (Debian libportaudio2: .ci/run installs it); without it the CLI names the package (tested
    in test_live_and_units.py). The camera is a URL here, so only the microphone is looked at."""
    try:
        import sounddevice as sd
    except OSError:
        pytest.skip("needs libportaudio2")
    argv = ["live", "--camera", "rtsp://127.0.0.1:9/none", "--model", "icf-tiny"]
    _refused(capsys, [*argv, "--mic", "no-such-microphone-xyz"], "not an input device", "--mic none")
    _refused(capsys, [*argv, "--mic", "999"], "not an input device", "--mic none")
    try:
        sd.query_devices(kind="input")
    except sd.PortAudioError:  # this machine has no microphone at all: the default one is missing too
        _refused(capsys, [*argv, "--mic", "default"], "no default microphone", "--mic none")
