"""Reports carry no absolute paths of the machine that made them."""

from __future__ import annotations

import json
import sys

from bench.report import command_line, portable, write_json


def test_paths_become_relative_or_short(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/abs/repo/bench/gpu.py", "--out", str(tmp_path / "out" / "gpu"), "--x=/root/elsewhere", "n"])
    assert command_line() == "python -m bench.gpu --out out/gpu --x=.../elsewhere n"
    doc = {"a": "/tmp/icf-bench-xyz/m.onnx", "b": ["plain text", "/ not a path", 3], "c": {"d": str(tmp_path / "r.json")}}
    assert portable(doc) == {"a": ".../m.onnx", "b": ["plain text", "/ not a path", 3], "c": {"d": "r.json"}}
    saved = json.loads(write_json(tmp_path / "r.json", doc).read_text())
    assert saved["a"] == ".../m.onnx"
