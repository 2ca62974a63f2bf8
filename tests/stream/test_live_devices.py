"""The live path with real components (marker `live`, run by `make test-live` / .ci/run after it installs
Debian's libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins ffmpeg):

- a virtual microphone: a PulseAudio null sink fed a known signal, recorded through PortAudio
  (sounddevice, ALSA's `pulse` device) by the live source's own code;
- a network camera: ffmpeg serving a stream over HTTP, opened by `icf-stream live --camera URL`
  (OpenCV) and `icf-stream run --video URL` (PyAV, with its audio), never read faster than real time;
- A/V alignment: flashes and beeps at known times, the offset the pipeline applied measured in its recording.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.stages.live import CATCH_UP_NS

from .conftest import ROOT

pytestmark = pytest.mark.live
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
FPS = 15


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: pulseaudio pulseaudio-utils ffmpeg; .ci/run installs them)")


@pytest.fixture(scope="module")
def pulse_mic():
    """A running PulseAudio with a null sink `icfmic` whose monitor is the default source."""
    _need("pulseaudio", "pactl", "paplay")
    try:
        import sounddevice
    except OSError:
        pytest.skip("needs libportaudio2")
    started = False
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--load=module-native-protocol-unix",
                        "--load=module-always-sink"], check=True, capture_output=True)
        started = True
        for _ in range(50):
            if subprocess.run(["pactl", "info"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
    if "icfmic" not in subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=icfmic"], check=True, capture_output=True)
    subprocess.run(["pactl", "set-default-source", "icfmic.monitor"], check=True)
    sounddevice._terminate()  # PortAudio lists devices when it starts: again, now that the server runs
    sounddevice._initialize()
    yield "pulse"
    if started:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True)


def _wav(path: Path, freq: float, seconds: float, rate: int = 44100) -> Path:
    import wave

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def test_virtual_microphone_records_a_known_tone(pulse_mic, tmp_path):
    import threading

    from stream.stages.live import LiveSource, import_sounddevice

    import_sounddevice()
    src = LiveSource(mic=pulse_mic, retries=1, backoff_s=0.1)
    src.env = type("E", (), {"abort": threading.Event(), "stop": threading.Event()})()
    src._open_mic(first=True)
    player = subprocess.Popen(["paplay", "--device=icfmic", str(_wav(tmp_path / "tone.wav", 440, 20.0))])
    try:
        deadline = time.monotonic() + 15  # PulseAudio takes a moment to start delivering on a busy machine
        while src.mic.written < 32000 and time.monotonic() < deadline:
            time.sleep(0.1)
        _, samples = src.mic.take()
    finally:
        src._close_mic()
        player.kill()
        player.wait(timeout=10)
    assert samples.size > 16000  # 16 kHz mono, as the model takes it
    tail = samples[-16000:]
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(tail.size)))
    assert abs(np.fft.rfftfreq(tail.size, 1 / 16000)[spectrum.argmax()] - 440) < 5
    assert np.sqrt(np.mean(tail**2)) > 0.05  # the signal, not silence


def _serve(url: str, *inputs: str, realtime: bool = True, seconds: float = 6.0) -> subprocess.Popen:
    """ffmpeg serving MPEG-TS over HTTP (one client); -re: at real-time pace like a camera."""
    cmd = ["ffmpeg", "-loglevel", "error", *(["-re"] if realtime else []), *inputs, "-t", str(seconds),
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS), "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-f", "mpegts", "-listen", "1", url]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    return p


def _url() -> str:
    from stream.wire.transport import free_tcp_port

    return f"http://127.0.0.1:{free_tcp_port()}/cam.ts"


def _stream(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_network_camera_served_at_full_speed_is_read_at_real_time(tiny_onnx, tmp_path):
    """The server pushes as fast as TCP allows (no -re): the camera is still read at 15 fps."""
    _need("ffmpeg")
    url = _url()
    server = _serve(url, "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}", realtime=False, seconds=10)
    try:
        proc = _stream("live", "--camera", url, "--mic", "none", "--weights", tiny_onnx, "--backend", "onnxruntime",
                       "--transport", "inproc", "--seconds", "3", "--out", str(tmp_path), "-q")
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    src = report["stages"]["source"]["counters"]
    rate = src["frames_sent"] / src["elapsed_s"]
    # never faster than the stream's clock, beyond the one-off catch-up of a start-up backlog (CATCH_UP_NS)
    assert 3 * FPS * 0.6 <= src["frames_sent"] <= (src["elapsed_s"] + CATCH_UP_NS / 1e9) * FPS + 2 and rate <= FPS * 1.25, src
    assert src["paced_waits"] > 0


def test_network_stream_with_audio_through_run(tiny_onnx, tmp_path):
    _need("ffmpeg")
    url = _url()
    server = _serve(url, "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}", "-f", "lavfi", "-i", "sine=f=440:sample_rate=44100",
                    seconds=3)
    try:
        proc = _stream("run", "--video", url, "--weights", tiny_onnx, "--backend", "onnxruntime", "--transport", "inproc",
                       "--out", str(tmp_path), "-q")
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    src = json.loads((tmp_path / "report.json").read_text())["stages"]["source"]["counters"]
    assert src["frames_sent"] >= 2 * FPS and src["audio_samples"] >= 2 * 16000, src  # pictures and sound
    assert src["frames_sent"] / src["elapsed_s"] <= FPS * 1.1


def flash_beep_inputs(seconds: float, events: tuple[float, ...]) -> list[str]:
    """lavfi sources: a white picture and a 1 kHz beep for one frame period at each event time."""
    def on(var: str) -> str:
        return "+".join(f"between({var},{t:.4f},{t + 1 / FPS - 1e-3:.4f})" for t in events)

    video = f"color=c=black:size=320x240:rate={FPS},format=yuv420p,geq=lum='if({on('T')},250,16)':cb=128:cr=128"
    audio = f"aevalsrc='if({on('t')},0.8*sin(2*PI*1000*t),0)':s=16000"
    return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-t", str(seconds)]


def av_offset_ms(recording: Path) -> list[float]:
    """Per flash: beep onset minus flash time in the pipeline's own recording (its video pts and the
    audio samples it placed), in ms. Positive: the sound comes later than the picture."""
    import av

    with av.open(str(recording)) as c:
        flashes, was = [], False
        for f in c.decode(video=0):
            lit = f.to_ndarray(format="gray")[120:, :].mean() > 120  # below the text band
            if lit and not was:
                flashes.append(float(f.time))
            was = lit
    with av.open(str(recording)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    env = np.abs(pcm) > 0.3
    onsets = [i / rate for i in np.flatnonzero(env[1:] & ~env[:-1]) + 1]
    beeps = [t for i, t in enumerate(onsets) if i == 0 or t - onsets[i - 1] > 0.3]
    nearest = [min(beeps, key=lambda b: abs(b - f)) - f for f in flashes if beeps]
    return [1000 * d for d in nearest if abs(d) < 0.5]  # a flash whose beep was cut off by the end is not a pair


def test_av_alignment_of_a_network_stream_is_within_one_frame(tiny_onnx, tmp_path):
    """Flash + beep at 1, 2, 3 s through ffmpeg -> HTTP -> `icf-stream run --video URL --record`:
    the recording shows where the pipeline put each beep relative to its flash."""
    _need("ffmpeg")
    url = _url()
    server = _serve(url, *flash_beep_inputs(4.0, (1.0, 2.0, 3.0)), seconds=4.0)
    try:
        proc = _stream("run", "--video", url, "--weights", tiny_onnx, "--backend", "onnxruntime", "--transport", "inproc",
                       "--out", str(tmp_path), "-q")
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    offsets = av_offset_ms(tmp_path / "overlay.mp4")
    print(f"A/V offset per flash (ms): {[round(o, 1) for o in offsets]}; one frame = {1000 / FPS:.1f} ms")
    assert len(offsets) == 3
    assert max(abs(o) for o in offsets) <= 1000 / FPS


def test_av_offset_of_camera_and_microphone_is_steady(pulse_mic, tiny_onnx, tmp_path):
    """The live path end to end: one ffmpeg plays flashes to a network camera (HTTP) and the beeps to
    the virtual microphone at the same instants; `icf-stream live --camera URL --mic pulse --record`.
    The offset in the recording is what the pipeline applied: the audio stamped by PortAudio's ADC time,
    the picture by its arrival (so it includes the camera's network and decode latency)."""
    _need("ffmpeg")
    url = _url()
    events = (3.0, 4.0, 5.0, 6.0)
    cmd = ["ffmpeg", "-loglevel", "error", "-re", *flash_beep_inputs(15.0, events),
           "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "1", "-pix_fmt", "yuv420p",
           "-f", "mpegts", "-flush_packets", "1", "-listen", "1", url,
           "-map", "1:a", "-f", "pulse", "-buffer_duration", "20", "icfmic"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    try:
        proc = _stream("live", "--camera", url, "--mic", pulse_mic, "--weights", tiny_onnx, "--backend", "onnxruntime",
                       "--transport", "inproc", "--seconds", "9", "--out", str(tmp_path), "-q")
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    offsets = av_offset_ms(tmp_path / "overlay.mp4")
    print(f"live A/V offset per flash (ms): {[round(o, 1) for o in offsets]}; one frame = {1000 / FPS:.1f} ms")
    assert len(offsets) >= 3
    spread = max(offsets) - min(offsets)
    assert spread <= 1000 / FPS  # a steady offset: audio and pictures on one clock, no drift
    # The level itself (measured 148-169 ms, sound after picture, on the PulseAudio null-sink chain) is the
    # virtual devices' unreported buffering, and misses the one-frame target: reported in the README,
    # not asserted away. The network-stream test above holds the pipeline's own alignment to one frame.


def test_virtual_microphone_chain_latency(pulse_mic):
    """How late the virtual devices deliver sound: a click written into the null sink (pacat, 20 ms
    asked) lands this long after, on the microphone's own clock (measured 289-426 ms; README). Steady."""
    import threading

    from stream.stages.live import LiveSource
    from stream.wire.transport import stamp

    _need("pacat")
    src = LiveSource(mic=pulse_mic, retries=1, backoff_s=0.1)
    src.env = type("E", (), {"abort": threading.Event(), "stop": threading.Event()})()
    src._open_mic(first=True)
    p = subprocess.Popen(["pacat", "--playback", "-d", "icfmic", "--rate=16000", "--channels=1", "--format=float32le",
                          "--latency-msec=20"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while src.mic.anchor_ns is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert src.mic.anchor_ns is not None, "the virtual microphone delivered nothing"
        sent, t_next = [], time.monotonic()
        for k in range(300):  # 3 s in 10 ms blocks, a click each second
            while time.monotonic() < t_next:
                time.sleep(0.001)
            if k % 100 == 50:
                sent.append(stamp())
            p.stdin.write(np.full(160, 0.9 if k % 100 == 50 else 0.0, np.float32).tobytes())
            p.stdin.flush()
            t_next += 0.01
        time.sleep(1.5)
    finally:
        p.stdin.close()
        p.wait(timeout=10)
        src._close_mic()
    n = src.mic.written
    first = max(0, n - src.mic.buf.size)
    buf = src.mic.buf[np.arange(first, n) % src.mic.buf.size]
    times = src.mic.anchor_ns + (first + np.arange(buf.size)) * 1_000_000_000 // 16000
    on = (buf > 0.85) & (times >= sent[0])  # the clicks (0.9), not what earlier tests left in the sink
    idx = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    late = [(times[i] - s) / 1e6 for s, i in zip(sent, idx)]
    print(f"virtual microphone chain: a click lands {[round(x, 1) for x in late]} ms after it was written")
    assert len(late) >= 2 and all(x > 0 for x in late) and max(late) - min(late) < 20
