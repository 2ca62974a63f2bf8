"""Outputs under faults (issue 14): mask archive memory, recorder input protection and crashes,
poisoned audio and odd frame sizes at the recorder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from stream.stages.outputs import MaskStore


def test_mask_store_memory_is_flat_and_round_trips(tmp_path):
    """14.5: the store held every mask and unpacked them all at shutdown (4.9 GB after 4 min).
    200 VGA masks with ground truth: the old store peaked at 191 MiB here; now memory does not grow with N."""
    rng = np.random.default_rng(0)
    path = tmp_path / "masks.npz"
    store = MaskStore(path)
    keep = {}
    tracemalloc.start()
    try:
        for i in range(200):
            mask = np.zeros((480, 640), np.uint8)
            mask[rng.integers(0, 400):, rng.integers(0, 600):] = 1
            gt = np.roll(mask, 5, axis=1)
            if i in (0, 151, 199):
                keep[i] = (mask.copy(), gt.copy())
            store.add(i, i * 33_333_333, 10 + i, mask, gt)
        store.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert not list(tmp_path.glob(".*"))  # spools and the partial file are gone
    with np.load(path) as z:
        assert z["masks"].shape == (200, 480, 640) and z["gt"].shape == (200, 480, 640)
        for i, (m, g) in keep.items():
            np.testing.assert_array_equal(z["masks"][i], m)
            np.testing.assert_array_equal(z["gt"][i], g)
        assert z["seq"].tolist() == list(range(200)) and z["capture_ns"][5] == 15


def test_mask_store_keeps_semantic_labels_and_drops_gt_when_partial(tmp_path):
    store = MaskStore(tmp_path / "m.npz")
    store.add(0, 0, 0, np.full((4, 6), 7, np.uint8), np.ones((4, 6), np.uint8))
    store.add(1, 1, 1, np.full((4, 6), 2, np.uint8), None)  # a frame without ground truth
    store.close()
    with np.load(tmp_path / "m.npz") as z:
        assert z["masks"][:, 0, 0].tolist() == [7, 2] and "gt" not in z.files


def _frames_in(path) -> tuple[int, int]:
    """(video frames, audio frames) PyAV decodes from ``path``."""
    import av

    with av.open(str(path)) as c:
        v = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        a = sum(1 for _ in c.decode(audio=0)) if c.streams.audio else 0
    return v, a


def test_recorder_survives_nan_and_inf_audio(tmp_path):
    """14.2: NaN / Inf samples stopped the AAC encoder ("avcodec_send_frame() returned 22")."""
    from stream.stages.recorder import Recorder

    rec = Recorder(tmp_path / "o.mp4")
    tone = np.full(16000, 0.2, np.float32)
    tone[100:200], tone[300], tone[301] = np.nan, np.inf, -np.inf
    for i in range(30):
        rec.add_audio(i * 533, tone[i * 533:(i + 1) * 533])
        rec.add_frame(np.full((48, 64, 3), i * 8, np.uint8), i * 33_333_333)
    rec.close()
    v, a = _frames_in(tmp_path / "o.mp4")
    assert v == 30 and a >= 10


def test_recorder_pads_tiny_and_scales_changed_frames(tmp_path):
    """14.3: a 1-pixel-wide frame crashed the recorder (IndexError), also mid-stream."""
    from stream.stages.recorder import Recorder

    rec = Recorder(tmp_path / "o.mp4")
    rec.add_frame(np.zeros((5, 1, 3), np.uint8), 0)  # 1 pixel wide, odd height: padded to 2x6
    rec.add_frame(np.zeros((1, 9, 3), np.uint8), 40_000_000)  # another size mid-stream: scaled
    rec.add_frame(np.zeros((6, 2, 3), np.uint8), 80_000_000)
    rec.close()
    assert rec.size == (2, 6) and rec.resized == 1 and _frames_in(tmp_path / "o.mp4")[0] == 3


KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from stream.stages.recorder import Recorder
    rec = Recorder(sys.argv[1], fps_hint=30)
    for i in range(150):  # 5 s: two keyframes (one every 2 s) are on disk before the kill
        rec.add_audio(i * 533, np.zeros(533, np.float32))
        rec.add_frame(np.full((64, 96, 3), i, np.uint8), i * 33_333_333)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_recorder_leaves_a_playable_partial_file(tmp_path):
    """14.14 + 14.10: killing the sink left overlay.mp4 without a moov atom (unplayable). Now the
    recording is fragmented MP4 under a temporary name: the final name never holds a broken file."""
    out = tmp_path / "overlay.mp4"
    proc = subprocess.run([sys.executable, "-c", KILLED, str(out)], env=dict(os.environ), capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists()
    partial = tmp_path / "overlay.partial.mp4"
    frames, _ = _frames_in(partial)
    assert frames >= 60  # everything up to the last fragment boundary


def test_recording_onto_the_input_is_refused(media, tmp_path):
    """14.10: --record onto the input file destroyed it (12 MB -> 85 KB): same inode is refused,
    also through another name (a hard link), before anything starts."""
    from stream import PipelineConfig, run_pipeline
    from stream.graph.graph import PipelineError

    video = tmp_path / "in.mp4"
    video.write_bytes(media["av"].read_bytes())
    os.link(video, tmp_path / "alias.mp4")
    size = video.stat().st_size
    for target in (video, tmp_path / "alias.mp4"):
        cfg = PipelineConfig(source={"kind": "file", "video": str(video)}, backend={"kind": "null"}, transport="inproc",
                             record=str(target))
        with pytest.raises(PipelineError, match="input"):
            run_pipeline(cfg)
    assert video.stat().st_size == size
    cfg = PipelineConfig(source={"kind": "file", "video": str(video)}, backend={"kind": "null"}, transport="inproc",
                         masks=str(tmp_path))  # 14.15: a bad output is found before the run, and named
    with pytest.raises(PipelineError, match="directory"):
        run_pipeline(cfg)


def test_frames_too_small_or_too_big_fail_clearly():
    """14.3 / 14.4: 1-pixel frames and frames over the message limit were dropped one by one (the
    run exited 0 with nothing processed); the source now refuses them with a message."""
    from stream.stages.sources import frame_refusal

    assert "too small" in frame_refusal(np.zeros((1, 640, 3), np.uint8), 32 << 20)
    assert "MiB" in frame_refusal(np.zeros((2880, 5120, 3), np.uint8), 32 << 20)
    assert frame_refusal(np.zeros((1080, 1920, 3), np.uint8), 32 << 20) is None


def test_a_one_pixel_video_ends_the_run_with_an_error(tmp_path):
    import av

    from stream import PipelineConfig, run_pipeline

    path = tmp_path / "thin.nut"
    with av.open(str(path), "w") as c:
        s = c.add_stream("rawvideo", rate=30)
        s.width, s.height, s.pix_fmt = 1, 16, "rgb24"
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.zeros((16, 1, 3), np.uint8), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(path), "pace": "fast"},
                                         backend={"kind": "null"}, transport="inproc"))
    assert not report["ok"] and any("too small" in e for e in report["errors"])


def test_a_corrupt_audio_packet_is_skipped_and_counted(tmp_path):
    """14.15: one undecodable audio packet ended the whole run; ffmpeg decodes through it."""
    import av

    from stream import PipelineConfig, run_pipeline

    from .conftest import write_mp4

    path = write_mp4(tmp_path / "av.mp4", seconds=2.0)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(audio=0) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = packets[10]
    data[pos:pos + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(path), "pace": "fast"},
                                         backend={"kind": "null"}, transport="inproc"))
    assert report["ok"], report["errors"]
    assert report["stages"]["source"]["counters"]["corrupt_audio_packets"] == 1
    assert report["frames"]["sent"] == 60


def test_media_errors_carry_no_raw_ffmpeg_numbers(tmp_path):
    """14.15: messages showed "[Errno 1094995529] ..."; now FFmpeg's words and the file."""
    from stream import PipelineConfig, run_pipeline

    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(bad)}, backend={"kind": "null"}, transport="inproc"))
    (err,) = report["errors"]
    assert str(bad) in err and "Errno" not in err and "Invalid data" in err


def test_rotation_metadata_is_applied(tmp_path):
    """14.15: a video with a display rotation reached the model sideways. A portrait phone clip
    stored as 32x48 with a 90-degree rotation is seen as 48 wide, 32 tall, marker where ffmpeg
    shows it (bottom-left for a top-left marker turned counterclockwise)."""
    from fractions import Fraction

    import av

    from stream import PipelineConfig, run_pipeline

    path = tmp_path / "phone.mp4"
    img = np.zeros((48, 32, 3), np.uint8)
    img[:8, :8] = 255
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 32, 48, "yuv420p"
        s.set_display_rotation(90)
        for i in range(10):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            c.mux(s.encode(f))
        c.mux(s.encode())
    report = run_pipeline(PipelineConfig(source={"kind": "file", "video": str(path), "pace": "fast"}, backend={"kind": "null"},
                                         transport="inproc", masks=str(tmp_path / "m.npz"), record=str(tmp_path / "o.mp4")))
    assert report["ok"] and report["stages"]["source"]["counters"]["rotated_deg"] == 90
    with np.load(tmp_path / "m.npz") as z:
        assert z["masks"].shape[1:] == (32, 48)
    with av.open(str(tmp_path / "o.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    # marker bottom-left, as ffmpeg shows it (the overlay's text band darkens this small frame to ~35 %)
    assert first[24:32, 0:8].mean() > 60 and first[0:8, 0:8].mean() < 20
