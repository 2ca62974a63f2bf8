"""The recorder on real files (any container PyAV reads, any rate, NaN in the file's own audio) and
outputs that a failed run never damages (issue 26.3 / 26.4 / 26.12, issue 23.3 / 23.4)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stream.outputs import Recorder


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
