"""stream.api.Segmenter: the Python API gives the pipeline's own masks, takes any frame size and
audio format, and the README's snippet runs as written."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stream import PipelineConfig, Segmenter, run_pipeline
from stream.api import _mono, _resample
from stream.stages.models import export_cached

from .conftest import ROOT, write_mp4

SHIPPED = ROOT / "weights" / "icf-lite-synthavs.safetensors"


@pytest.fixture(scope="module")
def shipped_onnx() -> str:
    if not SHIPPED.is_file():
        pytest.skip("the shipped weights are not in this checkout (git checkout -- weights/)")
    return str(export_cached(weights=str(SHIPPED), cache_dir=None))


def test_segmenter_gives_the_pipelines_masks_on_a_synthetic_clip(shipped_onnx, tmp_path):
    """The pipeline runs a SynthAVS stream; the Segmenter is fed the frames it processed (dropped
    frames never enter the context) with the audio that arrived since its last frame: same masks."""
    from synthavs import SceneConfig, SceneGenerator

    w, h, fps, seconds = 320, 240, 30, 2.0
    cfg = PipelineConfig(source={"kind": "synthetic", "width": w, "height": h, "fps": fps, "seconds": seconds, "seed": 3},
                         backend={"kind": "engine", "artifact": shipped_onnx, "backend": "onnxruntime"},
                         transport="ipc", masks=str(tmp_path / "m.npz"), metrics=str(tmp_path / "m.jsonl"),
                         # under load a frame may otherwise go before its audio is in (its window's end then reads as
                         # silence, counted as an underrun): the Segmenter is given the whole window, so wait for it
                         context={"audio_wait_ms": 20000})
    report = run_pipeline(cfg)
    assert report["ok"], report["errors"]
    got = np.load(tmp_path / "m.npz")
    by_pts = {int(p): m for p, m in zip(got["pts_ns"], got["masks"])}
    assert len(by_pts) >= 5, report["frames"]
    hears = [__import__("json").loads(x)["concepts"][0][0] for x in open(tmp_path / "m.jsonl")]

    gen = SceneGenerator(SceneConfig(width=w, height=h, fps=fps, seed=3))
    seg = Segmenter(shipped_onnx, backend="onnxruntime")
    sent, compared, top = 0.0, 0, []
    for frame in gen.stream(seconds):
        pts = frame.index * 1_000_000_000 // fps
        if pts not in by_pts:
            continue
        r = seg(frame.image, gen.audio_between(sent, frame.time_s), t=pts / 1e9)
        sent = frame.time_s
        want = by_pts[pts]
        assert r.mask.shape == (h, w)
        differ = np.count_nonzero(r.mask != want)
        assert differ == 0, f"frame {frame.index}: {differ} pixels differ"  # same backend, same options: the same mask
        top.append(next(iter(r.scores)))
        compared += 1
    assert compared == len(by_pts)
    assert top == hears  # the same best concept, frame for frame
    assert any(m.any() for m in by_pts.values()), "the clip should have sounding pixels"


def test_segmenter_any_frame_size_and_audio_format(shipped_onnx, tmp_path):
    seg = Segmenter(shipped_onnx, backend="onnxruntime")
    rng = np.random.default_rng(0)
    r = seg(rng.integers(0, 255, (123, 457, 3), np.uint8), (rng.standard_normal((2, 9600)) * 0.1).astype(np.float32),
            sample_rate=48000)
    assert r.mask.shape == (123, 457) and r.mask.dtype == np.uint8
    assert set(r.scores) == set(seg.concepts) and abs(sum(r.scores.values()) - 1) < 1e-3
    assert list(r.scores.values()) == sorted(r.scores.values(), reverse=True) and len(r.concepts) == 3
    assert r.hears in (*seg.concepts, "nothing", "unsure")
    r2 = seg(np.zeros((720, 1280, 3), np.uint8), (np.zeros((4410, 2)) * 32767).astype(np.int16), sample_rate=44100)
    assert r2.mask.shape == (720, 1280) and r2.pts_s > r.pts_s
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        seg(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="not after the previous frame"):
        seg(np.zeros((10, 10, 3), np.uint8), t=0.0)
    seg.reset()
    assert seg(np.zeros((10, 10, 3), np.uint8), t=0.0).mask.shape == (10, 10)
    with pytest.raises(ValueError, match="not a model artifact"):
        Segmenter(tmp_path / "model.txt")


def test_audio_is_mixed_to_mono_and_resampled():
    stereo = np.stack([np.ones(4800), -np.ones(4800)], axis=1)
    assert np.allclose(_mono(stereo), 0) and _mono(stereo.T).shape == (4800,)
    assert np.allclose(_mono(np.full(10, 16384, np.int16)), 0.5, atol=1e-3)
    t = np.arange(48000) / 48000
    down = _resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 48000)
    assert down.size == 16000
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(down[100:-100] - ref[100:-100]).max() < 0.02  # a 440 Hz tone passes the box filter


def test_readme_python_api_snippet_runs_as_written(tmp_path, monkeypatch):
    """The README's example, verbatim, on a generated clip.mp4 in the current folder."""
    if not SHIPPED.is_file():
        pytest.skip("the shipped weights are not in this checkout")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 6, code
    monkeypatch.chdir(tmp_path)
    write_mp4(tmp_path / "clip.mp4", seconds=0.5)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: printed.append(a)})
    assert len(printed) == 15  # one line per frame of the 0.5 s clip
