"""Readers: SynthAVS on the fly, AVSBench S4 / MS3 / AVSS as released, the folder layout, specs."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from synthavs import SceneConfig, SceneGenerator
from synthavs.writers import write_avsbench, write_mp4, write_wav
from training.data import DataError, build_dataset, collate, parse_spec, prepare_batch
from training.data.avss import voc_palette
from training.data.common import read_logmel, segment_windows
from training.synth_to_disk import save_logmel


def test_parse_spec():
    assert parse_spec("synthavs").kind == "synthavs"
    s = parse_spec("synthavs:conflict,split=test,clips=20")
    assert (s.target, s.options) == ("conflict", {"split": "test", "clips": "20"})
    assert parse_spec("synthavs:bias=0.9").options == {"bias": "0.9"}
    s = parse_spec("avsbench-s4:/data/a,b/Single-source,split=val")
    assert (s.kind, s.target, s.options) == ("avsbench-s4", "/data/a,b/Single-source", {"split": "val"})
    with pytest.raises(ValueError, match="unknown data spec"):
        parse_spec("kinetics:/x")
    with pytest.raises(ValueError, match="needs a path"):
        parse_spec("avss")


def test_synth_dataset_sample_and_batch():
    ds = build_dataset("synthavs:multi,clips=3", split="train", size=(64, 96), frames=3, bias=0.8)
    s = ds[1]
    assert s["images"].shape == (3, 64, 96, 3) and s["audio"].shape == (3, 15_600)
    assert s["labels"].shape == (3, 8) and s["gt_valid"].all() and len(ds) == 3
    batch = prepare_batch(collate([ds[0], ds[1]]), torch.device("cpu"), 8)
    assert batch["images"].shape == (2, 3, 3, 64, 96) and batch["images"].dtype == torch.float32
    assert batch["images"].max() <= 1.0 and batch["semantic"].dtype == torch.long
    no_labels = prepare_batch(collate([ds[0]]), torch.device("cpu"), 5)  # K mismatch -> unknown labels
    assert not no_labels["label_valid"].any() and no_labels["labels"].shape == (1, 3, 5)


def test_synth_splits_do_not_share_clips():
    train = build_dataset("synthavs:single", split="train", size=(64, 64), frames=1)
    test = build_dataset("synthavs:single,split=test", split="train", size=(64, 64), frames=1)
    assert not np.array_equal(train[0]["images"], test[0]["images"])
    with pytest.raises(ValueError, match="unknown synthavs spec option"):
        build_dataset("synthavs:single,colour=red", split="train", size=(64, 64))


def test_synth_audio_window_ends_at_the_frames_capture_time():
    ds = build_dataset("synthavs:single,clips=1", split="train", size=(64, 64), frames=2)
    clip = SceneGenerator(ds.scene).clip(0, seconds=2)
    assert float(ds[0]["frame_times"][1]) == pytest.approx(1.9)  # the last frame of segment 2 (fps 10)
    assert np.array_equal(ds[0]["audio"][1], clip.audio[30_400 - 15_600 : 30_400])  # as live: ends at 1.9 s


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s4") / "Single-source"
    gen = SceneGenerator(SceneConfig(mode="single", seed=4, fps=2))
    write_avsbench(gen, root, layout="s4", count=10, logmel_writer=save_logmel)
    return root


def test_s4_reader_as_released(s4_root):
    train = build_dataset(f"avsbench-s4:{s4_root.parent}", split="train", size=(224, 224))
    s = train[0]
    assert s["gt_valid"].tolist() == [True, False, False, False, False]  # S4 train: mask 1 only
    assert s["images"].shape == (5, 224, 224, 3) and s["audio"].shape == (5, 15_600)
    k = int(np.argmax(s["labels"][0]))
    assert train.classes[k] == train.items[0][1] and s["label_valid"].all()
    test = build_dataset(f"avsbench-s4:{s4_root}", split="test", size=(112, 112))
    assert test[0]["gt_valid"].all() and test[0]["masks"].shape == (5, 112, 112)
    # audio windows end at each segment's end
    name, cat = train.items[0]
    from training.data.common import read_wav

    wav = read_wav(s4_root / "s4_data" / "audio_wav" / "train" / cat / f"{name}.wav")
    assert np.allclose(s["audio"], segment_windows(wav, 5))


def test_logmel_pkl_round_trip_and_pkl_only_error(s4_root, tmp_path):
    pkl = next((s4_root / "s4_data" / "audio_log_mel").rglob("*.pkl"))
    lm = read_logmel(pkl)
    assert lm.shape == (5, 1, 96, 64) and np.isfinite(lm).all()
    copy = tmp_path / "Single-source"
    shutil.copytree(s4_root, copy)
    for wav in (copy / "s4_data" / "audio_wav").rglob("*.wav"):
        wav.unlink()
    ds = build_dataset(f"avsbench-s4:{copy}", split="test", size=(64, 64))
    with pytest.raises(DataError, match="raw 16 kHz samples"):
        ds[0]
    bad = tmp_path / "bad.pkl"
    torch.save(torch.zeros(5, 96, 64), bad)
    with pytest.raises(DataError, match=r"bad.pkl holds \(5, 96, 64\)"):
        read_logmel(bad)


def test_missing_and_malformed_files_are_named(s4_root, tmp_path):
    copy = tmp_path / "s4"
    shutil.copytree(s4_root, copy)
    frame = next((copy / "s4_data" / "visual_frames" / "test").rglob("*_3.png"))
    frame.unlink()
    ds = build_dataset(f"avsbench-s4:{copy}", split="test", size=(64, 64))
    with pytest.raises(DataError, match=frame.name):
        ds[0]
    (copy / "s4_meta_data.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="split"):
        build_dataset(f"avsbench-s4:{copy}", split="test", size=(64, 64))
    with pytest.raises(DataError, match="s4_meta_data.csv"):
        build_dataset(f"avsbench-s4:{tmp_path / 'nowhere'}", split="test", size=(64, 64))


def test_ms3_reader(tmp_path):
    gen = SceneGenerator(SceneConfig(mode="multi", seed=5, fps=2))
    write_avsbench(gen, tmp_path / "Multi-sources", layout="ms3", count=2, split="train")
    ds = build_dataset(f"avsbench-ms3:{tmp_path}", split="train", size=(64, 64))
    s = ds[0]
    assert s["gt_valid"].all() and not s["label_valid"].any() and ds.classes is None
    assert s["masks"].max() <= 1


def _write_avss(root, label2idx):
    pal = voc_palette(len(label2idx))
    (root).mkdir(parents=True)
    (root / "label2idx.json").write_text(json.dumps(label2idx))
    rows = [
        "vid,uid,s_min,s_sec,a_obj,split,label",
        "v,clipA,0,0,dog,test,v1m",
        "v,clipB,0,0,dog,test,v2",
        "v,clipC,0,0,dog,train,v1s",
    ]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    for uid, label, n, n_masks in (("clipA", "v1m", 5, 5), ("clipB", "v2", 10, 10), ("clipC", "v1s", 5, 1)):
        d = root / label / uid
        (d / "frames").mkdir(parents=True)
        (d / "labels_rgb").mkdir()
        for i in range(n):
            cv2.imwrite(str(d / "frames" / f"{i}.jpg"), np.full((32, 32, 3), 100, np.uint8))
        for i in range(n_masks):
            m = np.zeros((32, 32, 3), np.uint8)
            m[:8] = pal[2]  # class 2 ("dog") on top rows
            m[8:12] = pal[1]
            cv2.imwrite(str(d / "labels_rgb" / f"{i}.png"), m[..., ::-1].copy())
        write_wav(d / "audio.wav", np.zeros(16_000 * n, np.float32))


def test_avss_reader_palette_padding_and_flags(tmp_path):
    root = tmp_path / "avss"
    _write_avss(root, {"background": 0, "cat": 1, "dog": 2})
    ds = build_dataset(f"avss:{root}", split="test", size=(32, 32))
    assert ds.classes == ["cat", "dog"]
    a = ds[0]  # v1m: 5 real frames padded to 10, all 5 annotated
    assert a["images"].shape == (10, 32, 32, 3) and a["gt_valid"].tolist() == [True] * 5 + [False] * 5
    assert not a["images"][5:].any()
    assert (a["semantic"][0, :8] == 2).all() and (a["semantic"][0, 8:12] == 1).all() and (a["semantic"][0, 12:] == 0).all()
    assert a["labels"][0].tolist() == [1.0, 1.0]
    b = ds[1]
    assert b["gt_valid"].all()
    train = build_dataset(f"avss:{root}", split="train", size=(32, 32))
    assert train[0]["gt_valid"].tolist() == [True] + [False] * 9  # v1s: only the first frame


def test_avss_unknown_colour_is_reported(tmp_path):
    root = tmp_path / "avss"
    _write_avss(root, {"background": 0, "cat": 1, "dog": 2})
    bad = root / "v1m" / "clipA" / "labels_rgb" / "0.png"
    cv2.imwrite(str(bad), np.full((32, 32, 3), 7, np.uint8))
    with pytest.raises(DataError, match="0.png: colour"):
        build_dataset(f"avss:{root}", split="test", size=(32, 32))[0]


def test_voc_palette_first_colours():
    assert voc_palette(4).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]


def test_folder_reader(tmp_path):
    gen = SceneGenerator(SceneConfig(width=64, height=48, fps=10, mode="single", seed=6))
    write_mp4(gen, tmp_path / "videos", count=1, seconds=3)
    name = next((tmp_path / "videos").glob("*.mp4")).stem
    (tmp_path / "masks" / name).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "masks" / name / "2.png"), np.full((48, 64), 255, np.uint8))
    (tmp_path / "labels.csv").write_text(f"{name},dog\n")
    ds = build_dataset(f"folder:{tmp_path}", split="test", size=(32, 32), frames=3)
    s = ds[0]
    assert s["gt_valid"].tolist() == [False, True, False] and s["masks"][1].all()
    assert ds.classes == ["dog"] and s["label_valid"].all()
    assert s["images"].shape == (3, 32, 32, 3) and np.abs(s["audio"]).max() > 0.01
