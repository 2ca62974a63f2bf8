"""Engine errors of issue 14.13: hostile or broken sidecars and CLI misuse give one clear line
naming the file, never a traceback; an edited sidecar is refused by its content digest."""

from __future__ import annotations

import json

import pytest

from engine import runtime, spec
from engine.__main__ import main
from engine.spec import ArtifactError


def _raw_edit(onnx_path, fn) -> None:
    side = spec.sidecar_path(onnx_path)
    doc = json.loads(side.read_text())
    fn(doc)
    side.write_text(json.dumps(doc, indent=2))


def test_exports_record_a_content_digest(tiny_copy):
    doc = spec.read_sidecar(tiny_copy)
    assert doc[spec.DIGEST_KEY] == spec.sidecar_digest(doc)


@pytest.mark.parametrize("edit", [
    lambda d: d["concepts"].__setitem__(0, "forged"),  # masks were labelled with forged names
    lambda d: d["pixel_normalisation"]["mean"].__setitem__(0, 0.9),
    lambda d: d.pop(spec.DIGEST_KEY) and d["concepts"].reverse() or d.__setitem__(spec.DIGEST_KEY, "0" * 64),
])
def test_edited_sidecar_is_refused(tiny_copy, edit, capsys):
    _raw_edit(tiny_copy, edit)
    with pytest.raises(ArtifactError, match="edited after export"):
        runtime.load(tiny_copy, "onnxruntime")
    assert main(["info", "--weights", str(tiny_copy)]) == 2  # it used to say "integrity: OK"
    err = capsys.readouterr()
    assert "edited after export" in err.err + err.out and "Traceback" not in err.err


@pytest.mark.parametrize("content,match", [
    ("[1, 2, 3]", "holds a JSON list"),
    ('"just a string"', "holds a JSON str"),
])
def test_sidecar_that_is_not_an_object(tiny_copy, content, match, capsys):
    spec.sidecar_path(tiny_copy).write_text(content)
    with pytest.raises(ArtifactError, match=match):
        runtime.load(tiny_copy, "onnxruntime")
    assert main(["info", "--weights", str(tiny_copy)]) == 2
    err = capsys.readouterr().err
    assert match in err and str(spec.sidecar_path(tiny_copy)) in err and "Traceback" not in err


def test_bad_shape_names_the_file(tiny_copy, capsys):
    def bad(doc):
        doc["inputs"][1]["shape"] = "abc"
        doc[spec.DIGEST_KEY] = spec.sidecar_digest(doc)  # even a consistently signed one

    _raw_edit(tiny_copy, bad)
    assert main(["info", "--weights", str(tiny_copy)]) == 2
    err = capsys.readouterr().err
    assert str(spec.sidecar_path(tiny_copy)) in err and "shape of positive integers" in err


def test_export_onto_a_file_and_cuda_without_cuda(tiny_copy, tmp_path, capsys):
    target = tmp_path / "exists.onnx"
    target.write_bytes(b"x")
    assert main(["export", "--model", "icf-tiny", "--out", str(target)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err and target.read_bytes() == b"x"
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["check", "--weights", str(tiny_copy), "--backend", "torch", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "Traceback" not in err
