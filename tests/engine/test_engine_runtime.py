"""Runtime: one interface over the backends, auto-selection on CPU, input checking."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine import runtime, spec
from engine.inputs import synthetic_sequence


def test_auto_on_cpu_picks_onnxruntime_and_says_why(exports, caplog):
    caplog.set_level("INFO", logger="icf.engine")
    backend = runtime.load(exports["icf-lite"])
    info = backend.info()
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu" and info["precision"] == "fp32"
    assert "no CUDA GPU" in info["reason"] and "ONNX Runtime CPU" in info["reason"]
    assert info["providers"] == ["CPUExecutionProvider"]
    assert any("engine: onnxruntime on cpu" in r.getMessage() and "no CUDA GPU" in r.getMessage() for r in caplog.records)


def test_backend_api(exports):
    b = runtime.load(exports["icf-tiny"], "onnxruntime", threads=2)
    assert list(b.input_specs) == list(spec.INPUT_NAMES) and list(b.output_specs) == list(spec.OUTPUT_NAMES)
    assert b.input_specs["image"] == ((1, 3, 224, 224), np.dtype("float32"))
    assert b.sidecar["model"]["name"] == "icf-tiny"
    assert set(b.info()) >= {"backend", "device", "precision", "artifact", "reason"}
    out = b.infer(b.blank_inputs())
    assert {n: v.shape for n, v in out.items()} == {n: s for n, (s, _) in b.output_specs.items()}
    assert all(v.dtype == np.float32 for v in out.values())


def test_infer_checks_inputs(exports):
    b = runtime.load(exports["icf-tiny"], "onnxruntime")
    x = b.blank_inputs()
    with pytest.raises(KeyError, match=r"missing \['audio'\]"):
        b.infer({k: v for k, v in x.items() if k != "audio"})
    with pytest.raises(ValueError, match=r"input 'image' has shape \(1, 3, 112, 112\); this icf-tiny artifact takes \(1, 3, 224, 224\)"):
        b.infer({**x, "image": np.zeros((1, 3, 112, 112), np.float32)})
    # never a silent copy in the hot path: a wrong dtype or layout is an error that says how to fix it
    with pytest.raises(ValueError, match=r"input 'audio' is float64 C-contiguous; backends take C-contiguous float32"):
        b.infer({**x, "audio": x["audio"].astype(np.float64)})
    hwc = np.zeros((1, 224, 224, 3), np.float32)
    with pytest.raises(ValueError, match=r"input 'image' is float32 not C-contiguous"):
        b.infer({**x, "image": hwc.transpose(0, 3, 1, 2)})
    out = b.infer(x)
    assert out["mask_logits"].dtype == np.float32


def test_unknown_option_and_backend_refused(exports):
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['mode'\]"):
        runtime.load(exports["icf-tiny"], "onnxruntime", mode="eager")
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        runtime.load(exports["icf-tiny"], "jax")
    with pytest.raises(RuntimeError, match="mode='cudagraph' needs a CUDA GPU"):
        runtime.load(exports["icf-tiny"], "torch", mode="cudagraph", device="cpu")


def test_auto_with_checkpoint_exports_once_to_the_cache(exports, tmp_path):
    ckpt = exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"
    first = runtime.load(ckpt)
    assert first.name == "onnxruntime"
    assert str(first.artifact).startswith(str(tmp_path / "engine-cache" / "onnx"))
    mtime = first.artifact.stat().st_mtime_ns
    second = runtime.load(ckpt)
    assert second.artifact == first.artifact and second.artifact.stat().st_mtime_ns == mtime  # cache hit, no re-export
    assert second.sidecar["checkpoint"]["path"] == str(ckpt.resolve())  # exported from the given weights


def test_torch_eager_matches_onnxruntime(exports):
    ort_b = runtime.load(exports["icf-tiny"], "onnxruntime")
    torch_b = runtime.load(exports["icf-tiny"], "torch", mode="eager", threads=2)
    assert torch_b.info()["mode"] == "eager" and torch_b.info()["checkpoint"].endswith("icf-tiny-weights.safetensors")
    for x in synthetic_sequence(ort_b.input_specs, 3, np.random.default_rng(5), step=ort_b.infer, frames_per_segment=2):
        a, b = ort_b.infer(x), torch_b.infer(x)
        assert max(float(np.max(np.abs(a[n] - b[n]))) for n in spec.OUTPUT_NAMES) <= 1e-4


def test_torch_backend_from_checkpoint(exports):
    ckpt = exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"
    b = runtime.load(ckpt, "torch")
    assert b.sidecar["kind"] == "checkpoint" and b.sidecar["checkpoint"]["sha256"] == spec.file_sha256(ckpt)
    ref = runtime.load(exports["icf-tiny"], "onnxruntime")
    x = next(synthetic_sequence(b.input_specs, 1, np.random.default_rng(0)))
    assert np.max(np.abs(b.infer(x)["mask_logits"] - ref.infer(x)["mask_logits"])) <= 1e-4


@pytest.mark.slow
def test_torch_compile_mode(exports):
    """torch.compile on CPU: ~60 s cold on 2 cores, hence slow."""
    b = runtime.load(exports["icf-tiny"], "torch", mode="compile")
    ref = runtime.load(exports["icf-tiny"], "onnxruntime")
    assert b.info()["compile_mode"] == "default"
    for x in synthetic_sequence(b.input_specs, 2, np.random.default_rng(1), step=ref.infer):
        got, want = b.infer(x), ref.infer(x)
        assert max(float(np.max(np.abs(got[n] - want[n]))) for n in spec.OUTPUT_NAMES) <= 1e-4


def test_runtime_needs_neither_model_nor_training(exports):
    code = (
        "import sys; from engine import runtime\n"
        f"b = runtime.load({str(exports['icf-tiny'])!r})\n"
        "b.infer(b.blank_inputs())\n"
        "bad = [m for m in ('model', 'training') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(b.info()['backend'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "onnxruntime"
