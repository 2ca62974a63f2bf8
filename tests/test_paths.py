"""Paths a newcomer meets: the shipped weights by name from any directory, a folder given as a file, the
serve command's exports kept in the engine cache (not ./out), one "error:" per message, and the build
hint's command parses as printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from weights import SHIPPED, SHIPPED_NAME, weights_arg


def test_the_shipped_weights_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    from engine.__main__ import main as engine_main

    monkeypatch.chdir(tmp_path)
    assert Path(weights_arg(SHIPPED_NAME)) == SHIPPED and Path(weights_arg(SHIPPED.name)) == SHIPPED
    assert weights_arg("my.safetensors") == "my.safetensors"
    if not SHIPPED.is_file():
        pytest.skip("shipped weights absent")
    assert engine_main(["info", "--weights", SHIPPED_NAME]) == 0
    assert "checkpoint artifact of model 'icf-lite'" in capsys.readouterr().out
    (tmp_path / SHIPPED.name).write_bytes(b"mine")  # a file of that name here is the user's, not ours
    assert weights_arg(SHIPPED.name) == SHIPPED.name


def test_a_folder_given_as_weights_is_called_a_folder(tmp_path, capsys):
    from engine.__main__ import main as engine_main
    from stream.cli.main import main as stream_main

    assert stream_main(["demo", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert engine_main(["export", "--weights", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_unknown_model_is_one_error(tmp_path, monkeypatch, capsys):
    from stream.cli.main import main as stream_main

    monkeypatch.setenv("ICF_ENGINE_CACHE", str(tmp_path / "cache"))
    assert stream_main(["demo", "--model", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuch'" in err and "error: error:" not in err and "exporting" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_build_hint_command_parses():
    import inspect

    from engine import __main__ as engine_cli
    from stream.cli.main import build_parser

    hint = next(line for line in inspect.getsource(engine_cli._build_aoti).splitlines() if "run it" in line)
    assert "icf-stream demo --weights" in hint
    args = build_parser().parse_args(["demo", "--weights", "x.pt2"])
    assert args.weights == "x.pt2"


@pytest.mark.slow  # ~20 s: one batch-size export of icf-tiny in a child process
def test_serve_exports_into_the_engine_cache_not_the_current_folder(tmp_path, monkeypatch):
    from stream.cli.serve_cli import batch_artifacts

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICF_ENGINE_CACHE", str(tmp_path / "cache"))
    arts = batch_artifacts([1], model="icf-tiny")
    assert Path(arts[1]).is_file() and Path(arts[1]).is_relative_to(tmp_path / "cache")
    assert not (tmp_path / "out").exists()
