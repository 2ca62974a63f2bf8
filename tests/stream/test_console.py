"""The terminal side of a run: start banner, status lines, -q, --view parsing at the command line."""

from __future__ import annotations

import pytest

from stream.cli import console
from stream.cli.console import status_text
from stream.cli.main import main

pytest.importorskip("aiohttp", reason="the live view needs aiohttp (a dependency in pyproject.toml)")


def test_banner_view_url_and_status_lines(media, tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "STATUS_EVERY_S", 0.2)  # the clip is 2 s long; plain lines every 0.2 s
    rc = main(["run", "--video", str(media["av"]), "--weights", tiny_onnx, "--backend", "onnxruntime",
               "--view", "18300", "--out", str(tmp_path / "o")])
    assert rc == 0
    out, err = capsys.readouterr()
    head = out.split("\nmodel ")[0]  # the banner, before the summary
    assert "icf-stream run:" in head and "Ctrl-C to stop" in head
    assert "live view: http://127.0.0.1:183" in head
    assert f"outputs: {tmp_path / 'o' / 'overlay.mp4'}" in head
    status = [x for x in err.splitlines() if x.startswith("status: cam0 running:")]
    assert status and " fps, p50 " in status[-1] and "dropped " in status[-1]


@pytest.mark.slow
def test_quiet_prints_no_banner_or_status(media, tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "STATUS_EVERY_S", 0.2)
    assert main(["-q", "run", "--video", str(media["av"]), "--weights", tiny_onnx, "--backend", "onnxruntime",
                 "--view", "off"]) == 0
    out, err = capsys.readouterr()
    assert "Ctrl-C" not in out and "status:" not in err


def test_bad_view_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--video", "x.mp4", "--view", "web"])
    assert e.value.code == 2
    assert "--view" in capsys.readouterr().err


def test_status_text():
    stats = {"cam1": {"state": "running", "fps": 14.52, "p50_ms": 80.4, "p99_ms": 201, "hears": "nothing", "dropped": 3},
             "cam0": {"state": "starting"}}
    assert status_text(stats) == ["cam0 starting: - fps, p50 - / p99 - ms, hears -, dropped 0",
                                  "cam1 running: 14.5 fps, p50 80 / p99 201 ms, hears nothing, dropped 3"]
