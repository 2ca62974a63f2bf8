"""The icf-stream command line: devices, help, missing weights, clean shutdown on signals, and the
subscriber example from docs/protocol.md against a running pipeline."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.cli.main import build_parser, main

from .conftest import ROOT, children_of

ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_help_and_devices(capsys):
    for cmd in ("demo", "live", "run", "devices"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert "--publish" in capsys.readouterr().out
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cameras:" in out and "microphones:" in out  # "none found" on a machine without devices


def test_demo_without_weights_says_how_to_get_them(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("stream.cli.main.SHIPPED_WEIGHTS", tmp_path / "absent.safetensors")
    monkeypatch.setattr("stream.cli.main.SYNTH_WEIGHTS", tmp_path / "absent.safetensors")  # the synthetic scene's
    assert main(["demo", "--seconds", "1", "--out", str(tmp_path / "o")]) == 2
    msg = capsys.readouterr().err
    assert "absent.safetensors" in msg and "icf-train" in msg and "--model" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, says", [
    (["demo", "--mode", "foo"], "invalid choice: 'foo'"),
    (["demo", "--size", "640by480"], "not WxH"),
    (["demo", "--seconds", "-1"], "is not a number > 0"),
    (["demo", "--workers", "0"], "is not a whole number > 0"),
    (["demo", "--weights", "absent.safetensors"], "absent.safetensors not found"),
    (["demo", "--weights", "README.md"], "not a checkpoint or engine artifact"),
    (["demo", "--weights", "x.onnx", "--model", "icf-tiny"], "one of --weights"),
    (["run", "--video", "absent.mp4", "--out", "o"], "absent.mp4' does not exist"),
    (["live", "--size", "big", "--out", "o"], "not WxH"),
    (["node", "--graph", "absent.json"], "absent.json not found"),
])
def test_bad_arguments_are_refused_before_anything_is_written(argv, says, tmp_path, monkeypatch, capsys):
    """Validation before side effects: no output folder, no cache entry, one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("not a model")
    (tmp_path / "out" / "demo").mkdir(parents=True)
    (tmp_path / "out" / "demo" / "report.json").write_text("{}")  # an earlier run's report must survive
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors: usage + one error line, exit 2
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "out"]
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["demo", "report.json"]
    assert (tmp_path / "out" / "demo" / "report.json").read_text() == "{}"


def test_unknown_model_is_one_line_and_leaves_no_cache_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").mkdir()  # the user's cache folder (~/.cache) exists; nothing may be left in it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--model", "icf-huge", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'icf-huge'" in err and "icf-tiny" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.rglob("*")] == ["cache"]


def test_common_options_and_config_key_spelling(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and re.match(r"icf-stream \d", capsys.readouterr().out)
    args = build_parser().parse_args(["run", "--video", "v.mp4", "--no_display", "-q", "--weights", "a.onnx"])
    assert args.no_display and args.quiet and args.weights == "a.onnx"
    with pytest.raises(SystemExit) as exc:  # the retired --engine spelling is argparse's plain error
        build_parser().parse_args(["run", "--video", "v.mp4", "--engine", "a.onnx"])
    assert exc.value.code == 2 and "unrecognized arguments: --engine" in capsys.readouterr().err


def test_shipped_weights_resolve_from_any_directory(tmp_path):
    """From another directory, with the package on the path: the default weights are found."""
    code = "from stream.cli.main import SHIPPED_WEIGHTS as W; print(W.is_absolute() and W.is_file())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_missing_video_file_is_named():
    p = cli("run", "--video", "/nonexistent/clip.mp4", "--model", "icf-tiny")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "/nonexistent/clip.mp4" in err


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.is_file() and sum(1 for _ in open(path)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} frames within {timeout} s")


@pytest.mark.parametrize("how", ["sigint-group", "sigterm"])
def test_signal_shuts_down_cleanly(how, media, tiny_onnx, tmp_path):
    out = tmp_path / "o.mp4"
    p = cli("run", "--video", str(media["long"]), "--weights", tiny_onnx, "--backend", "onnxruntime", "--record", str(out),
            "--masks", str(tmp_path / "m.npz"), "--metrics", str(tmp_path / "m.jsonl"), "--report", str(tmp_path / "r.json"),
            start_new_session=True)
    _wait_lines(tmp_path / "m.partial.jsonl", 15, p)  # the log while the run goes (outputs.MetricsLog)
    kids = children_of(p.pid)
    assert len(kids) >= 3  # source, segmenter, sink (+ multiprocessing's resource tracker)
    if how == "sigint-group":
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    time.sleep(0.2)
    alive = [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split(")")[1][:3]]
    assert not alive, f"orphans left: {alive}"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"]["accounted"] and report["frames"]["sent"] < 120  # stopped early, every frame counted
    import av

    with av.open(str(out)) as c:  # finalised MP4: the moov atom is written, frames decode
        n = sum(1 for _ in c.decode(video=0))
    assert n == report["stages"]["sink"]["recorded_frames"] > 0
    assert np.load(tmp_path / "m.npz")["masks"].shape[0] == report["frames"]["processed"]


def test_documented_subscriber_example_receives_masks(media, tiny_onnx, tmp_path):
    from stream.wire.transport import free_tcp_port

    doc = (ROOT / "docs" / "protocol.md").read_text()
    code = re.search(r"<!-- subscriber-example:start -->\s*```python\n(.*?)```", doc, re.S).group(1)
    assert 15 <= len(code.strip().splitlines()) <= 30
    script = tmp_path / "subscriber.py"
    script.write_text(code)
    addr = f"tcp://127.0.0.1:{free_tcp_port()}"
    sub = subprocess.Popen([sys.executable, str(script), addr, "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pipe = cli("run", "--video", str(media["av"]), "--weights", tiny_onnx, "--backend", "onnxruntime", "--publish", addr)
    try:
        out, err = sub.communicate(timeout=60)
    finally:
        pipe.communicate(timeout=60)
    lines = [x for x in out.splitlines() if x.startswith("mask seq")]
    assert sub.returncode == 0 and len(lines) == 10, (out, err)
    assert "320x240" in lines[0] and "hears" in lines[0]
    assert "hears None" not in out and "sounding " in lines[0]  # the header carries the verdict and the mask area


def test_killed_supervisor_leaves_no_orphans(media, tmp_path):
    p = cli("run", "--video", str(media["long"]), "--model", "icf-tiny", "--backend", "onnxruntime",
            "--metrics", str(tmp_path / "m.jsonl"), start_new_session=True)
    _wait_lines(tmp_path / "m.partial.jsonl", 5, p)  # the log while the run goes (outputs.MetricsLog)
    kids = children_of(p.pid)
    p.kill()  # SIGKILL: no handler runs; the children's watchdogs must notice
    p.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.1)
    alive = [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split(")")[1][:3]]
    assert not alive, f"orphans left after SIGKILL of the supervisor: {alive}"


@pytest.mark.skipif(not __import__("zmq").has("curve"), reason="libzmq without CURVE")
def test_graph_file_nodes_as_separate_processes_with_curve_keys(media, tmp_path):
    """The multi-machine path on one machine: each node started by hand from one graph file,
    tcp with explicit bind / connect addresses and CURVE keys from a folder."""
    from stream.wire.transport import free_tcp_port

    ports = {link: free_tcp_port() for link in ("video", "audio", "jobs", "results", "masks")}
    graph = {
        "pipeline": {"source": {"kind": "file", "video": str(media["av"])}, "backend": {"kind": "null"}, "workers": 2,
                     "transport": "tcp", "masks": str(tmp_path / "m.npz")},
        "endpoints": {k: f"tcp://127.0.0.1:{p}" for k, p in ports.items()},
        "bind": {k: f"tcp://127.0.0.1:{p}" for k, p in ports.items()},
        "curve_keys": str(tmp_path / "keys"),
    }
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    lst = cli("node", "--graph", str(path), "--list")
    assert "source segmenter worker1 sink" in lst.communicate(timeout=30)[0]
    procs = {n: cli("node", "--graph", str(path), "--node", n, "--report", str(tmp_path / f"{n}.json"))
             for n in ("sink", "worker1", "segmenter", "source")}
    for name, p in procs.items():
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, (name, err)
    sink = json.loads((tmp_path / "sink.json").read_text())["stages"]["sink"]
    assert sink["frames"]["accounted"] and sink["frames"]["sent"] == 60 and sink["frames"]["processed"] > 30
    assert (tmp_path / "keys" / "server.key_secret").is_file()


def _stereo_44k(path: Path, seconds: float = 1.5) -> Path:
    """A 320x240 clip whose audio is 44.1 kHz stereo (left 440 Hz, right 880 Hz)."""
    import av

    rate, fps = 44100, 15
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        a = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.full((240, 320, 3), 8 * i % 255, np.uint8), format="rgb24")))
        out.mux(v.encode())
        t = np.arange(int(seconds * rate)) / rate
        tone = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t)]).astype(np.float32) * 0.3
        for pos in range(0, tone.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, pos : pos + 1024]), format="fltp", layout="stereo")
            f.sample_rate, f.pts = rate, pos
            out.mux(a.encode(f))
        out.mux(a.encode())
    return path


def test_record_keeps_the_source_audio_rate_and_channels(tiny_onnx, tmp_path):
    import av

    clip = _stereo_44k(tmp_path / "stereo.mp4")
    assert main(["run", "--video", str(clip), "--weights", tiny_onnx, "--backend", "onnxruntime", "--transport", "inproc",
                 "--out", str(tmp_path / "o"), "-q"]) == 0
    with av.open(str(tmp_path / "o" / "overlay.mp4")) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.sample_rate, a.codec_context.channels) == (44100, 2)
        pcm = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    assert pcm.shape[1] > 44100  # most of the 1.5 s are there
    spectrum = np.abs(np.fft.rfft(pcm[:, 4096:4096 + 8192], axis=1))
    freqs = np.fft.rfftfreq(8192, 1 / 44100)
    assert abs(freqs[spectrum[0].argmax()] - 440) < 10 and abs(freqs[spectrum[1].argmax()] - 880) < 10  # channels kept apart


def test_predict_writes_masks_overlays_and_json(media, tiny_onnx, tmp_path, capsys):
    """A video gives overlay.mp4 (every frame, its own audio) + masks.npz, no PNGs unless asked; an image gives
    PNGs and is told it hears silence; the bar counts frames; two inputs with one name do not overwrite each
    other; a file that does not decode is skipped and reported, the rest still written."""
    import av
    import cv2

    cv2.imwrite(str(tmp_path / "still.png"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "b").mkdir()
    shutil.copy(media["silent"], tmp_path / "b" / "av.mp4")  # same name as media["av"]
    shutil.copy(media["corrupt"], tmp_path / "broken.mp4")
    out = tmp_path / "p"
    assert main(["predict", str(tmp_path / "still.png"), str(media["av"]), str(tmp_path / "b" / "av.mp4"), str(tmp_path / "broken.mp4"),
                 "--weights", tiny_onnx, "--backend", "onnxruntime", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "still.png is an image: the model hears silence" in err and "skipped" in err and "broken.mp4" in err
    assert "/91" in err and "frame" in err  # 1 + 60 + 30 frames, counted in frames
    doc = json.loads((out / "predictions.json").read_text())
    assert [s["file"] for s in doc["skipped"]] == [str(tmp_path / "broken.mp4")]
    frames = [f for f in doc["frames"] if f["file"] == str(media["av"])]
    assert len(frames) == 60 and [f["index"] for f in frames] == list(range(60))  # every frame, none dropped
    assert frames[-1]["pts_ms"] > 1900 and all(f["hears"] for f in doc["frames"])
    assert doc["outputs"][str(media["av"])] == str(out / "av") and doc["outputs"][str(tmp_path / "b" / "av.mp4")] == str(out / "av-2")
    masks = np.load(out / "av" / "masks.npz")["masks"]
    assert masks.shape == (60, 240, 320) and masks.dtype == np.uint8
    assert np.allclose([f["mask_area"] for f in frames], (masks > 0).mean(axis=(1, 2)))
    with av.open(str(out / "av" / "overlay.mp4")) as c:
        assert c.streams.audio and sum(1 for _ in c.decode(video=0)) == 60
    assert np.load(out / "av-2" / "masks.npz")["masks"].shape[0] == 30
    assert not list((out / "av").glob("*.png"))
    assert cv2.imread(str(out / "still" / "000000_overlay.png")).shape == (48, 64, 3)


def test_predict_audio_for_an_image_and_pngs_on_request(media, tiny_onnx, tmp_path, capsys):
    import cv2

    cv2.imwrite(str(tmp_path / "still.png"), np.full((48, 64, 3), 90, np.uint8))
    out = tmp_path / "p"
    assert main(["predict", str(tmp_path / "still.png"), str(media["silent"]), "--audio", str(media["av"]), "--png", "-q",
                 "--weights", tiny_onnx, "--backend", "onnxruntime", "--out", str(out)]) == 0
    assert "hears silence" not in capsys.readouterr().err
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["audio"] == str(media["av"]) and not doc["skipped"]
    assert len(list((out / "silent").glob("*_mask.png"))) == 30  # --png: one per frame as well
    import av

    with av.open(str(out / "silent" / "overlay.mp4")) as c:
        assert c.streams.audio  # the silent video got --audio's track
    assert main(["predict", str(tmp_path / "still.png"), "--audio", str(media["silent"]), "--out", str(out)]) == 2
    assert "has no audio stream" in capsys.readouterr().err


def test_predict_refuses_bad_inputs_before_loading_anything(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["predict", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "p")]) == 2
    assert main(["predict", str(tmp_path / "absent.png"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "not an image" in err and "absent.png not found" in err and not (tmp_path / "p").exists()
