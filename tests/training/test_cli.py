"""icf-train end to end on tiny settings: synth, fit (+ resume), eval; the objective; DDP (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import model
from training.__main__ import main
from training.config import load_config
from training.data import build_dataset, collate, prepare_batch
from training.objective import TrainModule
from training.trainer import StepBatches, lr_factor

TINY = [
    "--model=icf-tiny",
    "--image_size=[64,64]",
    "--device=cpu",
    "--batch_size=2",
    "--frames=2",
    "--workers=0",
    "--val_clips=1",
    "--warmup_steps=1",
    "--log_every=1",
]
REPO = Path(__file__).resolve().parents[2]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(word in out for word in ("synth", "fit", "eval"))


def test_synth_mp4(tmp_path):
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--format",
                "mp4",
                "--count",
                "1",
                "--width",
                "64",
                "--height",
                "48",
                "--fps",
                "5",
                "--seconds",
                "1",
            ]
        )
        == 0
    )
    assert len(list(tmp_path.glob("*.mp4"))) == 1 and len(list(tmp_path.glob("*.npz"))) == 1


def test_synth_avsbench_writes_logmel(tmp_path):
    assert (
        main(["synth", "--out", str(tmp_path), "--format", "avsbench-ms3", "--mode", "multi", "--count", "1", "--fps", "2"]) == 0
    )
    pkl = next(tmp_path.rglob("*.pkl"))
    assert torch.load(pkl, weights_only=True).shape == (5, 1, 96, 64)


def test_fit_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "--config", "synthavs", "--quiet", f"--out_dir={out}", "--steps=2", "--val_every=1", "--ckpt_every=1", *TINY]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "bce", "dice"} <= set(log[0]) and any("val" in row for row in log)
    for f in ("best.safetensors", "best.json", "last.safetensors", "last.opt.pt", "metrics.json", "config.json"):
        assert (out / f).is_file(), f
    net = model.load_checkpoint(out / "best.safetensors")
    assert net.config.name == "icf-tiny" and tuple(net.config.image_size) == (64, 64)
    state = torch.load(out / "last.opt.pt", weights_only=True)
    assert state["step"] == 2 and any(k.startswith("sc.") for k in state["aux"])
    assert (out / "curves.csv").read_text().splitlines()[0].startswith("step,")
    printed = capsys.readouterr().out
    assert str(out / "best.safetensors") in printed and str(out / "last.safetensors") in printed
    from bench.__main__ import main as bench_main

    assert bench_main(["plot", str(out / "log.jsonl")]) == 0 and (out / "curves.png").stat().st_size > 5000
    assert main([*args[:5], "--steps=3", *args[6:], "--resume"]) == 0  # continues at step 2
    steps = [row["step"] for row in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in row]
    assert steps == [1, 2, 3]
    capsys.readouterr()
    report = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "--data",
            "synthavs:silence",
            "--data",
            "synthavs:single",
            "--weights",
            str(out / "last.safetensors"),
            "--clips",
            "2",
            "--workers",
            "0",
            "--json",
            str(report),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| synthavs:silence | 2 |" in table and "empty rate" in table
    rows = json.loads(report.read_text())
    assert rows[0]["empty_frames"] == 10 and rows[1]["mIoU"] is not None


def test_synth_few_clips_still_has_val_and_test(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--count", "4", "--fps", "2"]) == 0
    rows = (tmp_path / "s4_meta_data.csv").read_text().splitlines()
    assert [r.rsplit(",", 1)[1] for r in rows[1:]] == ["train", "train", "val", "test"]
    assert {p.name for p in (tmp_path / "s4_data" / "gt_masks").iterdir()} == {"train", "val", "test"}


def test_fit_defaults_to_the_cpu_recipe_on_a_cpu_and_takes_both_spellings(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["fit", "--print-config", "--batch-size=3", "--val_clips", "5"]) == 0
    captured = capsys.readouterr()
    cfg = json.loads(captured.out)
    assert cfg["name"] == "icf-synthavs-cpu" and cfg["batch_size"] == 3 and cfg["val_clips"] == 5
    assert "CPU recipe" in captured.err
    assert main(["fit", "--config", "synthavs", "--device=cpu", "--steps=1", "--print-config"]) == 0
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "batch_size=8" in capsys.readouterr().out  # --help lists the config keys


def test_fit_rejects_unknown_override(capsys):
    assert main(["fit", "--config", "synthavs", "--bogus=1"]) == 2
    assert "unknown training config key" in capsys.readouterr().err


def test_saved_config_gets_the_target_size(tmp_path):
    out = tmp_path / "small"
    assert (
        main(
            [
                "fit",
                "--config",
                "synthavs",
                "--quiet",
                f"--out_dir={out}",
                "--steps=1",
                "--val_data=",
                *TINY,
                "--image_size=[96,96]",
                "--train_size=[64,64]",
            ]
        )
        == 0
    )
    assert tuple(model.read_checkpoint_config(out / "last.safetensors").image_size) == (96, 96)


def test_objective_variants_give_finite_losses_and_gradients():
    cfg = load_config("synthavs", ["--model=icf-tiny", "--image_size=[64,64]"])
    ds = build_dataset("synthavs:mixed,clips=4", split="train", size=(64, 64), frames=2)
    torch.manual_seed(0)
    for over in (
        {},
        {"sc": False},
        {"cdcl": False, "sc": False},  # SC without CDCL is refused (it would change nothing)
        {"frame_text": False, "segment_text": False, "video_text": False, "text_bridge": False, "sc": False, "cdcl": False},
    ):
        c = cfg.replace(**over)
        net = model.build_model("icf-tiny", **c.model_kwargs()).train()
        module = TrainModule(net, c)
        batch = prepare_batch(collate([ds[i] for i in range(4)]), torch.device("cpu"), 8)
        loss, parts = module(batch, ramp=1.0)
        assert torch.isfinite(loss), over
        loss.backward()
        assert net.head.query[0].weight.grad is not None
        assert ("sc_noise" in parts) == c.sc and any(k.startswith("cdcl") for k in parts) == c.cdcl


def test_semantic_objective():
    cfg = load_config("synthavs", ["--model=icf-tiny", "--image_size=[64,64]", "--semantic=true"])
    net = model.build_model("icf-tiny", **cfg.model_kwargs()).train()
    ds = build_dataset("synthavs:semantic,clips=2", split="train", size=(64, 64), frames=2)
    batch = prepare_batch(collate([ds[0], ds[1]]), torch.device("cpu"), 8)
    loss, parts = TrainModule(net, cfg)(batch)
    assert torch.isfinite(loss) and "ce" in parts and "sc_noise" in parts


def test_step_batches_deterministic_and_resumable():
    full = list(StepBatches(10, batch=3, rank=1, world=2, start=0, steps=4, seed=0, fresh=False))
    tail = list(StepBatches(10, batch=3, rank=1, world=2, start=2, steps=4, seed=0, fresh=False))
    assert full[2:] == tail and all(0 <= i < 10 for b in full for i in b)
    fresh = list(StepBatches(0, batch=2, rank=0, world=2, start=0, steps=2, seed=0, fresh=True))
    assert fresh == [[0, 1], [4, 5]]


def test_lr_schedule():
    cfg = load_config("synthavs", ["--warmup_steps=10", "--min_lr_ratio=0.1"])
    assert lr_factor(0.0, 0, cfg) == pytest.approx(0.1)
    assert lr_factor(0.0, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(1.0, 500, cfg) == pytest.approx(0.1)
    assert lr_factor(0.5, 500, cfg) == pytest.approx(0.55)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(tmp_path):
    """torchrun, 2 CPU processes, gloo (~12 s on 2 cores: kept in the default run)."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "training", "fit",
           "--config", "synthavs", "--quiet", f"--out_dir={out}", "--steps=2", "--val_every=100", *TINY]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "last.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2


def test_split_and_join_weights(tmp_path):
    import hashlib
    import importlib.util

    found = importlib.util.spec_from_file_location("experiments", REPO / "scripts" / "experiments.py")  # a lab script
    experiments = importlib.util.module_from_spec(found)
    found.loader.exec_module(experiments)
    WEIGHTS_NAME, join_parts, split_file = experiments.WEIGHTS_NAME, experiments.join_parts, experiments.split_file

    data = bytes(range(256)) * 40
    src = tmp_path / "res" / f"{WEIGHTS_NAME}.safetensors"
    src.parent.mkdir()
    src.write_bytes(data)
    (tmp_path / "res" / f"{WEIGHTS_NAME}.json").write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest()}))
    parts = split_file(src, limit=3000)
    assert len(parts) == 4 and not src.exists()
    out = join_parts(tmp_path / "res", tmp_path / "weights")
    assert out.read_bytes() == data and (tmp_path / "weights" / f"{WEIGHTS_NAME}.json").is_file()
    parts[0].write_bytes(b"x" * 3000)
    with pytest.raises(ValueError, match="sha256"):
        join_parts(tmp_path / "res", tmp_path / "w2")


def test_fit_refuses_an_existing_run_a_file_and_a_missing_resume_point(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (run / "last.safetensors").write_bytes(b"old model")
    base = ["fit", "--config", "synthavs", "--quiet", *TINY, "--steps=1"]
    assert main([*base, f"--out_dir={run}"]) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--force" in err
    assert (run / "last.safetensors").read_bytes() == b"old model"  # nothing replaced
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*base, f"--out_dir={afile}"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main([*base, f"--out_dir={tmp_path / 'fresh'}", "--resume"]) == 2
    assert "holds no last.safetensors" in capsys.readouterr().err


def test_mistyped_key_gets_a_did_you_mean(capsys):
    assert main(["fit", "--config", "synthavs", "--bach_size=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bach_size (did you mean batch_size" in err and len(err.splitlines()) == 1
    assert "val_clips" not in err  # not all 60 keys


def test_synth_refuses_a_file_and_a_non_empty_folder(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["synth", "--out", str(afile), "--count", "1"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "s4_meta_data.csv").write_text("name,start,category,split\n")
    assert main(["synth", "--out", str(full), "--count", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (full / "s4_meta_data.csv").read_text() == "name,start,category,split\n"


def test_synth_draws_progress(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--format", "mp4", "--count", "2", "--width", "64", "--height", "48",
                 "--fps", "5", "--seconds", "1"]) == 0
    assert "2/2" in capsys.readouterr().err  # the clip bar


def test_fit_without_validation_names_only_files_it_wrote_and_force_starts_afresh(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "--config", "synthavs", "--quiet", f"--out_dir={out}", "--steps=1", "--ckpt_every=1", "--val_data=", *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert not (out / "best.safetensors").exists() and "best.safetensors" not in printed
    assert f"use it: icf-stream demo --weights {out / 'last.safetensors'}" in printed
    assert main([*args, "--force"]) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 1  # the old log was not appended to


def test_curves_put_counts_off_the_score_axis_and_draw_loss_parts_and_lr():
    from bench.curves import series

    rows = [{"step": 1, "loss": 2.0, "bce": 0.5, "dice": 0.9, "lr": 1e-4, "grad_norm": 3.0, "time": 5.0},
            {"step": 2, "val_mIoU": 0.4, "val_F": 0.5, "val_clips": 64, "val_time": 9.0}]
    s = series(rows)
    assert list(s["loss"]) == ["total", "bce", "dice"]
    assert s["lr"] == {"lr": [(1, 1e-4)]}
    assert set(s["validation"]) == {"mIoU", "F"}
