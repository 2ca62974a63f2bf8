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


def _resign_onnx(onnx_path) -> None:
    """The attacker's step: the artifact's sha256 and the sidecar's own digest recomputed to match."""
    side = spec.sidecar_path(onnx_path)
    doc = json.loads(side.read_text())
    doc["onnx"]["sha256"] = spec._hash_file(onnx_path)
    spec.write_sidecar(onnx_path, doc)


def _one_line_exit_2(capsys, *argv, match: str) -> None:
    """Exit 2, no traceback, the problem on one line (stderr; `info` of a sidecar it can still
    describe prints its report with that line as "integrity: FAILED: ...")."""
    assert main(list(argv)) == 2
    got = capsys.readouterr()
    lines = [line for line in (got.err + got.out).splitlines() if match in line]
    assert len(lines) == 1 and "Traceback" not in got.err + got.out, (got.err + got.out)[-2000:]
    assert not got.err or len(got.err.strip().splitlines()) == 1, got.err[-2000:]


def test_corrupt_onnx_with_a_matching_sidecar_is_one_line(tiny_copy, capsys):
    """26.11: an ONNX file cut short, its sidecar recomputed to match, ended `icf-engine info/check`
    in a protobuf DecodeError traceback."""
    data = tiny_copy.read_bytes()
    tiny_copy.write_bytes(data[: len(data) // 3] + b"\xff" * 64)
    _resign_onnx(tiny_copy)
    with pytest.raises(ArtifactError, match="cannot be read as ONNX"):
        runtime.load(tiny_copy, "onnxruntime")
    _one_line_exit_2(capsys, "info", "--weights", str(tiny_copy), match="cannot be read as ONNX")
    _one_line_exit_2(capsys, "check", "--weights", str(tiny_copy), "--backend", "onnxruntime", match="cannot be read as ONNX")


def test_a_deeply_nested_sidecar_is_refused(tiny_copy, capsys):
    """26.11: a sidecar nested 200,000 deep ended in a RecursionError traceback."""
    spec.sidecar_path(tiny_copy).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ArtifactError, match="nested deeper than"):
        runtime.load(tiny_copy, "onnxruntime")
    _one_line_exit_2(capsys, "info", "--weights", str(tiny_copy), match="nested deeper than")
    _one_line_exit_2(capsys, "check", "--weights", str(tiny_copy), "--backend", "onnxruntime", match="nested deeper than")


def test_a_huge_sidecar_is_refused_without_reading_it(tiny_copy, capsys):
    """26.11: a 300 MB sidecar was read whole (1.2-1.8 GB RSS). At most MAX_SIDECAR_BYTES + 1 are read."""
    import resource

    side = spec.sidecar_path(tiny_copy)
    with open(side, "wb") as f:  # sparse: 300 MB of file, no disk used
        f.write(b'{"kind": "onnx", "pad": "')
        f.truncate(300 * 2**20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArtifactError, match="over the .* limit"):
        runtime.load(tiny_copy, "onnxruntime")
    _one_line_exit_2(capsys, "info", "--weights", str(tiny_copy), match="over the")
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 100 * 2**20  # peak RSS grew < 100 MB
