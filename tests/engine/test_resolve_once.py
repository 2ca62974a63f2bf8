"""One resolver: an artifact resolved through engine.cache is read and hashed once per process,
batch exports are the resolver's (cached per checkpoint and size), and a changed file is verified again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import cache, runtime, spec
from engine.spec import ArtifactError


def test_cached_load_hashes_each_file_once(exports, tmp_path, monkeypatch):
    ckpt = exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"
    runtime.load(ckpt).close()  # exported into the cache (tmp per test, see conftest)
    spec._SHA256.clear()
    spec._SIDECARS.clear()
    spec._GRAPH_IO_OK.clear()
    hashed: list[str] = []
    real = spec._hash_file
    monkeypatch.setattr(spec, "_hash_file", lambda path: (hashed.append(Path(path).suffix), real(path))[1])
    backend = runtime.load(ckpt)
    assert backend.name == "onnxruntime"
    assert sorted(hashed) == [".onnx", ".safetensors"]  # the checkpoint (the cache key) and the ONNX, once each
    runtime.load(ckpt).close()  # the same files again in this process: nothing is re-hashed
    assert len(hashed) == 2
    backend.close()


def test_changed_file_is_verified_again(exports, tmp_path):
    src = exports["icf-tiny"]
    copy = tmp_path / "m.onnx"
    copy.write_bytes(src.read_bytes())
    (tmp_path / "m.json").write_text(spec.sidecar_path(src).read_text())
    runtime.load(copy, "onnxruntime").close()
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))  # same size, new bytes: a new file version
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        runtime.load(copy, "onnxruntime")


def test_open_artifact_refuses_another_kind(exports):
    with pytest.raises(ArtifactError, match="is a onnx artifact; the tensorrt backend runs TensorRT plans"):
        spec.open_artifact(exports["icf-tiny"], "tensorrt-plan", "tensorrt")


@pytest.mark.slow
def test_resolver_owns_batch_exports(exports):
    ckpt = exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"
    b2 = cache.resolve(ckpt, "onnx", batch=2)
    assert b2.name.endswith("-b2.onnx") and str(b2).startswith(str(cache.cache_dir()))
    assert cache.resolve(ckpt, "onnx", batch=2) == b2  # cached
    assert cache.resolve(b2, "onnx", batch=2) == b2  # an export of that size is itself
    one = runtime.load(cache.resolve(ckpt, "onnx"), "onnxruntime")
    two = runtime.load(b2, "onnxruntime")
    rows = [one.blank_inputs() for _ in range(2)]
    rows[1]["image"][:] = 0.5
    got = two.infer({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got["mask_logits"][i:i + 1], one.infer(row)["mask_logits"], atol=1e-4)
    with pytest.raises(ValueError, match="batch 2 exists for want='onnx' only"):
        cache.resolve(ckpt, "plan", batch=2)
