"""The recorder on real files (any container PyAV reads, any rate, NaN in the file's own audio) and
outputs that a failed run never damages (issue 26.3 / 26.4 / 26.12, issue 23.3 / 23.4)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stream.stages.recorder import Recorder


def write_media(path: Path, fmt: str, vcodec: str | None, acodec: str, rate: int, layout: str = "mono",
                bad_audio: bool = False) -> Path:
    """One second: 30 frames of 64x48 video (unless ``vcodec`` is None) and a 440 Hz tone, with
    NaN and Inf in the tone when ``bad_audio`` (a float PCM track carries them as they are)."""
    import av

    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream(vcodec, rate=30) if vcodec else None
        if v is not None:
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream(acodec, rate=rate, layout=layout)
        if v is not None:
            for i in range(30):
                f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, 30)
                out.mux(v.encode(f))
            out.mux(v.encode())
        ch = 1 if layout == "mono" else 2
        tone = np.tile((0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32), (ch, 1))
        if bad_audio:
            tone[:, 1000:1100], tone[:, 2000:2100] = np.nan, np.inf
        fmt_name, n = a.codec_context.format.name, a.codec_context.frame_size or 1024
        for pos in range(0, rate, n):
            chunk = tone[:, pos:pos + n]
            if fmt_name == "s16":
                data = (chunk.T * 32767).astype(np.int16).reshape(1, -1)
            else:
                data = chunk if fmt_name.endswith("p") else chunk.T.reshape(1, -1).copy()
            af = av.AudioFrame.from_ndarray(data, format=fmt_name, layout=layout)
            af.sample_rate, af.pts = rate, pos
            out.mux(a.encode(af))
        out.mux(a.encode())
    return path


CONTAINERS = {  # name: (format, video codec, audio codec, rate, layout, NaN in the audio)
    "ts": ("mpegts", "libx264", "aac", 48000, "stereo", False),
    "mkv": ("matroska", "libx264", "aac", 44100, "mono", False),
    "webm": ("webm", "libvpx", "libopus", 48000, "stereo", False),
    "wav": ("wav", None, "pcm_s16le", 16000, "mono", False),
    "wav22k": ("wav", None, "pcm_s16le", 22050, "mono", False),
    "nan.mkv": ("matroska", "libx264", "pcm_f32le", 16000, "mono", True),
}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_the_recording_keeps_the_input_audio_of_any_container(name, tmp_path):
    """Before: .ts / .mkv / .webm failed after one frame (the file's time base taken for samples),
    a wav at 16 or 22.05 kHz failed to open the AAC encoder, NaN in a file's own track stopped it."""
    import av

    fmt, vcodec, acodec, rate, layout, bad = CONTAINERS[name]
    src = write_media(tmp_path / f"in.{name.split('.')[-1]}", fmt, vcodec, acodec, rate, layout, bad)
    rec = Recorder(tmp_path / "out.mp4", source_audio=str(src))
    for i in range(30):
        rec.add_frame(np.full((48, 64, 3), 100, np.uint8), i * 33_333_333)
    rec.close()
    with av.open(str(tmp_path / "out.mp4")) as c:
        a = c.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
        out_rate = a.codec_context.sample_rate
    assert out_rate == rate and a.layout.name == layout
    assert abs(samples.size / (1 if layout == "mono" else 2) / out_rate - 1.0) < 0.05  # the whole second, re-timed
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0.1  # sanitised, and the tone is there


def _outputs(folder: Path) -> dict[str, str]:
    return {"record": str(folder / "overlay.mp4"), "masks": str(folder / "masks.npz"), "metrics": str(folder / "metrics.jsonl")}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_run_leaves_the_earlier_outputs_untouched(media, tmp_path):
    """23.4: a failed run truncated metrics.jsonl, replaced the report and left the old overlay and
    masks beside the new log. Now a run's files are staged and committed together: a failed run's
    go to NAME.failed.EXT, the earlier run's stay byte for byte, nothing hidden is left behind."""
    from stream.cli.main import _run  # the CLI's run: pipeline, report, the list of outputs it prints
    from stream.graph.pipeline import PipelineConfig

    out = tmp_path / "out"

    def run(video: Path) -> int:
        return _run(PipelineConfig(source={"kind": "file", "video": str(video), "pace": "fast"}, backend={"kind": "null"},
                                   transport="inproc", **_outputs(out)), str(out / "report.json"), quiet=True)

    assert run(media["av"]) == 0
    before = _snapshot(out)
    assert set(before) == {"overlay.mp4", "masks.npz", "metrics.jsonl", "report.json"}
    data = media["long"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # decodes for a while, then fails
    assert run(cut) == 2
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before  # the earlier run's outputs, untouched
    assert set(after) - set(before) <= {"overlay.failed.mp4", "masks.failed.npz", "metrics.failed.jsonl", "report.failed.json"}
    assert "report.failed.json" in after and not [n for n in after if n.startswith(".") or ".partial" in n]


FULL_DISK = r"""
import resource, signal, sys
from stream.graph.pipeline import PipelineConfig, run_pipeline
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC would
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
out = sys.argv[1]
report = run_pipeline(PipelineConfig(source={"kind": "synthetic", "seconds": 2.0, "width": 320, "height": 240, "pace": "fast"},
                                     backend={"kind": "null"}, transport="inproc", record=out + "/overlay.mp4",
                                     masks=out + "/masks.npz", metrics=out + "/metrics.jsonl"))
print("ERRORS", report["errors"])
"""


def test_a_full_disk_never_renames_a_file_it_could_not_finish(media, tmp_path):
    """26.4 / 26.12: with the disk full the mask archive failed first, then the recorder renamed a
    truncated overlay.mp4 into place, and an empty .m.npz.partial stayed. A file limit
    (RLIMIT_FSIZE) makes every write past 60 KB fail: the error names the path and the free
    space, nothing incomplete gets a name, no temporary file stays."""
    import subprocess
    import sys

    from stream.graph.pipeline import PipelineConfig, run_pipeline

    out = tmp_path / "out"
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(media["av"]), "pace": "fast"}, backend={"kind": "null"},
                                         transport="inproc", **_outputs(out)))
    assert not report["errors"]
    before = _snapshot(out)
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(out), str(60_000)], capture_output=True, text=True, timeout=300)
    errors = proc.stdout.split("ERRORS", 1)[-1]
    assert "cannot finish" in errors and "MiB free in" in errors and str(out) in errors, proc.stdout + proc.stderr[-2000:]
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before
    for name, data in after.items():
        assert not name.startswith(".") and ".partial" not in name, name  # no spool, no temporary archive
        assert name in before or len(data) < 60_000  # a failed run's complete files only (NAME.failed.EXT)
    assert "overlay.failed.mp4" not in after  # the recording could not be finished: never named


def test_a_killed_sinks_spools_are_swept_by_the_next_run(tmp_path):
    """26.12: a killed sink left .masks.npz.*.spool files that no later run removed."""
    import subprocess

    from stream.stages.outputs import MaskStore

    dead = subprocess.Popen(["true"])
    dead.wait()
    left = [tmp_path / f".masks.npz.{dead.pid}-abc123.spool", tmp_path / f".masks.npz.{dead.pid}.partial"]
    for p in left:
        p.write_bytes(b"x" * 100)
    mine = tmp_path / f".other.npz.{__import__('os').getpid()}-abc.spool"  # a live writer's spool stays
    mine.write_bytes(b"x")
    store = MaskStore(tmp_path / "masks.npz")
    store.add(0, 0, 0, np.zeros((4, 4), np.uint8), None)
    store.close()
    assert not any(p.exists() for p in left) and mine.exists()
    assert np.load(tmp_path / "masks.npz")["masks"].shape == (1, 4, 4)


@pytest.mark.parametrize("rate", [16000, 22050])
def test_run_with_audio_from_a_wav_records(rate, tiny_onnx, tmp_path, capsys):
    """23.3: `run --video video_only.mp4 --audio speech.wav --out DIR` crashed whenever it recorded
    (avcodec_open2("aac") returned 22, then "the sink is gone"). The CLI also says where the recording went."""
    import av

    from stream.cli.main import main

    from .conftest import write_mp4

    video = write_mp4(tmp_path / "video_only.mp4", 1.0, audio=False)
    wav = write_media(tmp_path / "speech.wav", "wav", None, "pcm_s16le", rate)
    out = tmp_path / "out"
    assert main(["run", "--video", str(video), "--audio", str(wav), "--out", str(out), "--weights", tiny_onnx,
                 "--backend", "onnxruntime", "--threads", "1"]) == 0
    assert str(out / "overlay.mp4") in capsys.readouterr().out
    with av.open(str(out / "overlay.mp4")) as c:
        a = c.streams.audio[0]
        assert a.codec_context.sample_rate == rate and sum(f.samples for f in c.decode(a)) > 0.9 * rate
