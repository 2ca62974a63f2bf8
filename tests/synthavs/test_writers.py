"""SynthAVS writers: exact AVSBench S4 / MS3 layouts and MP4 + npz ground truth."""

from __future__ import annotations

import wave

import cv2
import numpy as np

from synthavs import SceneConfig, SceneGenerator
from synthavs.writers import write_avsbench, write_mp4


def test_s4_layout(tmp_path):
    gen = SceneGenerator(SceneConfig(mode="single", seed=0, fps=5))
    calls = []
    root = write_avsbench(gen, tmp_path / "s4", layout="s4", count=10, logmel_writer=lambda p, a: calls.append((p, a.shape)))
    rows = (root / "s4_meta_data.csv").read_text().strip().splitlines()
    assert rows[0] == "name,start,category,split" and len(rows) == 11
    name, _, cat, split = rows[1].split(",")
    assert split == "train"
    data = root / "s4_data"
    frame = cv2.imread(str(data / "visual_frames" / split / cat / name / f"{name}_5.png"))
    assert frame.shape == (224, 224, 3)
    masks = sorted((data / "gt_masks" / split / cat / name).iterdir())
    assert [m.name for m in masks] == [f"{name}_1.png"]  # S4 train: only the first frame annotated
    test_name, _, test_cat, test_split = rows[10].split(",")
    assert test_split == "test" and len(list((data / "gt_masks" / "test" / test_cat / test_name).iterdir())) == 5
    with wave.open(str(data / "audio_wav" / split / cat / f"{name}.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16_000, 1, 2, 80_000)
    assert calls[0] == (data / "audio_log_mel" / split / cat / f"{name}.pkl", (80_000,))
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) <= {0, 255}


def test_ms3_layout(tmp_path):
    gen = SceneGenerator(SceneConfig(mode="multi", seed=1, fps=5))
    root = write_avsbench(gen, tmp_path / "ms3", layout="ms3", count=2, split="val")
    rows = (root / "ms3_meta_data.csv").read_text().strip().splitlines()
    assert rows[0] == "name,split"
    name = rows[1].split(",")[0]
    data = root / "ms3_data"
    assert (data / "visual_frames" / name / f"{name}.mp4_3.png").is_file()
    assert len(list((data / "gt_masks" / "val" / name).iterdir())) == 5
    assert (data / "audio_wav" / "val" / f"{name}.wav").is_file()


def test_mp4_and_ground_truth(tmp_path):
    import av

    gen = SceneGenerator(SceneConfig(width=96, height=64, fps=10, mode="multi", seed=2))
    root = write_mp4(gen, tmp_path / "mp4", count=1, seconds=2)
    path = next(root.glob("*.mp4"))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (64, 96, 3)
    gt = np.load(path.with_suffix(".npz"))
    clip = gen.clip(0, seconds=2)
    assert np.array_equal(gt["masks"], clip.masks) and gt["sounding"].shape == (2, 8) and int(gt["fps"]) == 10
    assert np.abs(frames[3].astype(int) - clip.frames[3]).mean() < 6  # lossy, but the same picture
    assert (root / "manifest.json").is_file()
