"""compile_torch_tensorrt against fake torch_tensorrt releases (2.9, 2.10-2.12, 2.13), on the CPU.

The fake's compile raises like torch-tensorrt 2.10+ when ``enabled_precisions`` comes with explicit typing;
its "compiled" program is the fp32 reference net (or one with all-zero logits, a known torch-tensorrt failure).
"""

from __future__ import annotations

import sys

import pytest
import torch
from fake_tensorrt import make_fake_tensorrt, make_fake_torch_tensorrt

from engine import spec

GPU = {"gpu_name": "Fake GPU", "compute_capability": "9.0"}


def install(monkeypatch, exports, flavour: str, *, zero_logits: bool = False):
    from engine.torch_backend import load_reference_net

    net, _, _ = load_reference_net(exports["icf-tiny"])
    net = net.float().eval()

    def reference(*args):
        with torch.inference_mode():
            return net(*(a.float() for a in args))

    from engine import export

    fewer_frames = lambda net, specs: export.parity_inputs(net, specs, random=1, synthetic=0)  # noqa: E731 (CPU time)
    monkeypatch.setattr("engine.trt_torch.parity_inputs", fewer_frames)
    fake = make_fake_torch_tensorrt(flavour, zero_logits=zero_logits, reference=reference)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(11 if flavour == "2.13" else 10))
    monkeypatch.setattr("engine.trt_torch.gpu_identity", lambda index=0: dict(GPU))
    monkeypatch.setattr("engine.trt_torch.DEVICE", "cpu")
    return fake


def compiled_with(fake) -> dict:
    return [c for c in fake.calls if c[0] == "compile"][-1][1]


@pytest.mark.parametrize("flavour", ["2.9", "2.10", "2.13"])
def test_fp16_compiles_with_explicit_typing(monkeypatch, exports, tmp_path, flavour):
    from engine.trt_torch import compile_torch_tensorrt

    fake = install(monkeypatch, exports, flavour)
    out = compile_torch_tensorrt(exports["icf-tiny"], tmp_path / "tiny.ep", precision="fp16")
    options = compiled_with(fake)
    assert options["enabled_precisions"] is None  # the module's weights and inputs already carry fp16
    assert options.get("use_explicit_typing") is (None if flavour == "2.13" else True)
    assert "disable_tf32" not in options
    doc = spec.read_sidecar(out)
    assert doc["kind"] == "torch-tensorrt" and doc["torch_tensorrt"]["parity"]["passed"]
    assert doc["torch_tensorrt"]["program_sha256"] == spec.file_sha256(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ep", "tiny.json"]


def test_fp32_turns_tf32_off(monkeypatch, exports, tmp_path):
    from engine.trt_torch import compile_torch_tensorrt

    fake = install(monkeypatch, exports, "2.10")
    compile_torch_tensorrt(exports["icf-tiny"], tmp_path / "tiny.ep", precision="fp32")
    assert compiled_with(fake)["disable_tf32"] is True


def test_the_fake_raises_like_2_10(monkeypatch, exports):
    fake = install(monkeypatch, exports, "2.10")
    with pytest.raises(AssertionError, match="enabled_precisions should not be used"):
        fake.compile(None, ir="dynamo", arg_inputs=[], enabled_precisions={torch.float16})


def test_all_zero_logits_are_rejected_and_nothing_written(monkeypatch, exports, tmp_path):
    from engine.trt_build import BuildError
    from engine.trt_torch import compile_torch_tensorrt

    install(monkeypatch, exports, "2.10", zero_logits=True)
    with pytest.raises(BuildError, match=r"fails the parity rule of engine.tolerance \(max abs diff <= 0.0001 x max"):
        compile_torch_tensorrt(exports["icf-tiny"], tmp_path / "tiny.ep", precision="fp32")
    assert list(tmp_path.iterdir()) == []
    out = compile_torch_tensorrt(exports["icf-tiny"], tmp_path / "tiny.ep", precision="fp32", verify=False)
    assert spec.read_sidecar(out)["torch_tensorrt"]["parity"]["passed"] is False  # written on request, flagged
