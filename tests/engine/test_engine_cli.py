"""icf-engine CLI: export / info / check / build, exit codes and messages."""

from __future__ import annotations

import json

import pytest

from engine.__main__ import build_parser, main
from engine.trt_common import tensorrt_installed


def test_export_info_check_round_trip(tmp_path, capsys):
    assert main(["export", "--model", "icf-tiny", "--out", str(tmp_path), "--stem", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "exported" in out and "onnx.checker OK" in out and "max abs logit diff" in out
    onnx_path = tmp_path / "tiny.onnx"
    assert (tmp_path / "tiny.json").is_file() and (tmp_path / "tiny-weights.safetensors").is_file()

    assert main(["info", "--weights", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "onnx artifact of model 'icf-tiny'" in out and "integrity : OK" in out
    assert "RGB float32 in [0,1], NCHW, mean/std applied inside the graph" in out

    report = tmp_path / "check.json"
    assert main(["check", "--weights", str(onnx_path), "--backend", "onnxruntime", "--threads", "2",
                 "--random-frames", "1", "--synthetic-frames", "2", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "PASS: max abs diff <= 0.0001 x max(1, value range of the reference)" in out
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["max_abs_logit_diff"] <= 1e-4 and doc["mask_iou"]["pooled"] >= 0.99


def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys):
    assert main(["check", "--weights", str(tmp_path / "absent.onnx")]) == 2
    assert main(["info"]) == 2
    assert main(["export", "--weights", str(tmp_path / "absent.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert main(["export", "--model", "icf-huge", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "absent.onnx not found" in err and "unknown model 'icf-huge'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_info_reports_tampering(tiny_copy, capsys):
    tiny_copy.write_bytes(tiny_copy.read_bytes() + b"\0")
    assert main(["info", "--weights", str(tiny_copy)]) == 2
    assert "integrity : FAILED" in capsys.readouterr().out


def test_check_refuses_tampered_artifact(tiny_copy, capsys):
    tiny_copy.write_bytes(tiny_copy.read_bytes() + b"\0")
    assert main(["check", "--weights", str(tiny_copy), "--backend", "onnxruntime"]) == 2
    assert "does not match its sidecar" in capsys.readouterr().err


@pytest.mark.skipif(tensorrt_installed(), reason="checks the message shown when TensorRT is missing")
def test_build_without_tensorrt_says_how_to_get_it(exports, tmp_path, capsys):
    rc = main(["build", "--onnx", str(exports["icf-tiny"]), "--precision", "fp16", "--out", str(tmp_path / "x.plan")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "pip install -e '.[trt]'" in err
    assert not (tmp_path / "x.plan").exists()


def test_help_for_every_subcommand(capsys):
    for cmd in ("export", "build", "check", "info"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([cmd, "--help"])
        assert exc.value.code == 0
    assert "--calib-data" in capsys.readouterr().out
