"""AOTInductor packages (.pt2): sidecar contract, refusals, build gate, and (slow) a real icf-tiny build.

Fast tests use a package whose payload is not a compiled library but whose sidecar is written by
the builder's own code for this machine: every refusal below happens before the payload is opened,
which is the point (a mismatched or tampered package must never be dlopen'ed). The compile of a
real package takes ~40-60 s for icf-tiny on a 2-core CPU, so that path is `slow` (and `gpu` on CUDA).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import runtime, spec
from engine.aoti_build import AOTIBuildError, package_sidecar, parity
from engine.aoti_common import SECTION, target_identity

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    import torch

    import model

    torch.manual_seed(0)
    return model.save_checkpoint(model.build_model("icf-tiny"), tmp_path_factory.mktemp("ckpt") / "icf-tiny.safetensors")


@pytest.fixture
def forged(tiny_ckpt, tmp_path) -> Path:
    """A .pt2 with a builder-written sidecar for this CPU (payload: not a library; never loaded)."""
    import model

    net = model.load_checkpoint(tiny_ckpt)
    path = tmp_path / "icf-tiny-aoti-cpu-fp32.pt2"
    path.write_bytes(b"PK\x03\x04 not a real package" + bytes(range(256)))
    doc = spec.base_sidecar("aotinductor", net.config.to_dict(), net.pixel_mean.flatten().tolist(), net.pixel_std.flatten().tolist())
    check = {"rule": "forged", "passed": True, "frames": [], "max_abs_diff": {}, "max_abs_logit_diff": 0.0, "mask_iou": 1.0}
    doc = package_sidecar(doc, path, tiny_ckpt, precision="fp32", ident=target_identity("cpu"), configs={}, times={}, check=check)
    spec.write_sidecar(path, doc)
    return path


def _edit(path: Path, **changes) -> None:
    doc = spec.read_sidecar(path)
    doc[SECTION].update(changes)
    spec.write_sidecar(path, doc)


def test_kind_registered_and_sidecar_complete(forged):
    assert runtime.KINDS[".pt2"] == "aotinductor" and "aotinductor" in runtime.BACKENDS
    doc = spec.read_sidecar(forged)
    built = doc[SECTION]
    for key in ("sha256", "precision", "device", "torch_version", "cuda_version", "cpu_arch", "cpu_vec_isa"):
        assert key in built, key
    assert doc["checkpoint"]["sha256"] and doc["pixel_normalisation"]["mean"] and doc["concepts"]
    assert built["sha256"] == spec.file_sha256(forged)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("torch_version", "2.99.0+cu999", ["torch 2.99.0+cu999", "rebuild"]),
        ("cuda_version", "12.8", ["CUDA 12.8", "rebuild"]),
        ("cpu_vec_isa", "sve256", ["sve256", "rebuild"]),
        ("cpu_arch", "riscv64", ["riscv64", "rebuild"]),
    ],
)
def test_package_for_another_target_is_refused(forged, field, value, words):
    _edit(forged, **{field: value}, sha256=spec.file_sha256(forged))
    with pytest.raises(spec.ArtifactError) as exc:
        runtime.load(forged)
    msg = str(exc.value)
    assert all(w in msg for w in words), msg
    assert "icf-engine build --via aotinductor" in msg


def test_cuda_package_on_a_cpu_machine_is_refused(forged):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _edit(forged, device="cuda", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    with pytest.raises(spec.ArtifactError, match="rebuild it for the CPU"):
        runtime.load(forged, backend="aotinductor")


def test_tampered_package_is_refused(forged):
    data = bytearray(forged.read_bytes())
    data[-1] ^= 0xFF
    forged.write_bytes(bytes(data))
    with pytest.raises(spec.ArtifactError, match="does not match its sidecar"):
        runtime.load(forged)
    from engine.__main__ import main

    assert main(["info", "--weights", str(forged)]) == 2


def _resign(package: Path) -> None:
    """What anyone can do: recompute the sidecar's sha256 of the package and its own digest."""
    doc = spec.read_sidecar(package)
    doc[SECTION]["sha256"] = spec._hash_file(package)
    spec.write_sidecar(package, doc)


def test_a_package_not_built_here_is_refused_before_it_is_opened(forged, monkeypatch, capsys):
    """26.7: a .pt2 whose library was replaced and whose sidecar was recomputed ran the attacker's
    constructor under `icf-engine check` and `icf-stream run`. Now only packages this machine
    built load, unless trusted explicitly; the refusal comes before torch opens anything."""
    import torch

    from engine.__main__ import main as engine_main
    from stream.cli.main import main as stream_main

    opened = []
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda path, *a, **k: opened.append(path) or 1 / 0)
    data = bytearray(forged.read_bytes())
    data[-1] ^= 0xFF  # the attacker's bytes
    forged.write_bytes(bytes(data))
    _resign(forged)
    for call in (lambda: runtime.load(forged), lambda: runtime.load(forged, backend="aotinductor", verify=False)):
        with pytest.raises(spec.ArtifactError, match=r"not built on this machine.*--trust-package"):
            call()
    assert engine_main(["info", "--weights", str(forged)]) == 2 and "not built on this machine" in capsys.readouterr().out
    assert engine_main(["check", "--weights", str(forged), "--backend", "aotinductor"]) == 2
    from tests.stream.conftest import write_mp4

    clip = write_mp4(forged.parent / "clip.mp4", seconds=0.2, audio=False)
    assert stream_main(["run", "--weights", str(forged), "--video", str(clip)]) == 2
    err = capsys.readouterr().err
    assert err.count("not built on this machine") == 2 and "Traceback" not in err
    assert opened == []
    with pytest.raises(spec.ArtifactError, match="could not load"):  # the flag lets it through to torch (which fails on the forged bytes)
        runtime.load(forged, trust_package=True)
    assert opened == [str(forged)]


def test_a_package_built_here_is_recorded(forged):
    from engine import aoti_trust

    with pytest.raises(spec.ArtifactError, match="not built on this machine"):
        aoti_trust.require_built_here(forged)
    aoti_trust.record_built(forged)  # what build_package does once its gate passed
    aoti_trust.require_built_here(forged)
    assert spec.file_sha256(forged) in json.loads(aoti_trust.registry_path().read_text())


def test_sidecar_without_build_section_is_refused(forged):
    doc = json.loads(spec.sidecar_path(forged).read_text())
    del doc[SECTION]
    spec.sidecar_path(forged).write_text(json.dumps(doc))
    with pytest.raises(spec.ArtifactError, match="missing required key"):
        runtime.load(forged)


def test_precision_is_fixed_at_build_time(forged):
    with pytest.raises(spec.ArtifactError, match="fixed at build time"):
        runtime.load(forged, backend="aotinductor", precision="bf16")


def test_other_backends_refuse_a_package(forged):
    with pytest.raises(spec.ArtifactError, match="runs .onnx"):
        runtime.load(forged, backend="onnxruntime")


def test_parity_gate_rejects_a_wrong_program(tiny_ckpt):
    """The build keeps a package only if it matches eager fp32; a program that is off by 1e-3 fails it."""
    import torch

    import model

    net = model.load_checkpoint(tiny_ckpt)
    specs = spec.specs_from(spec.io_from_config(net.config.to_dict())[0])

    def off(*args):
        return tuple(o + 1e-3 for o in net(*args))

    with pytest.raises(AOTIBuildError, match="was not kept"):
        parity(off, net, specs, "fp32", "cpu")
    assert parity(off, net, specs, "bf16", "cpu")["mask_iou"] >= 0.99  # reduced precision is judged by masks

    def flipped(*args):
        outs = net(*args)
        return (-outs[0] - torch.sign(outs[0]), *outs[1:])

    with pytest.raises(AOTIBuildError, match="mask IoU"):
        parity(flipped, net, specs, "bf16", "cpu")


def test_cache_key_separates_targets():
    from engine.cache import package_key

    cpu = target_identity("cpu")
    keys = {package_key("ab" * 32, "cpu", p, cpu) for p in ("fp32", "bf16")}
    keys.add(package_key("ab" * 32, "cpu", "fp32", {**cpu, "torch_version": "2.99.0"}))
    keys.add(package_key("cd" * 32, "cpu", "fp32", cpu))
    assert len(keys) == 4


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_build_cli_needs_weights(tmp_path):
    p = _cli("build", "--via", "aotinductor", "--out", str(tmp_path))
    assert p.returncode == 2 and "--weights" in p.stderr and "Traceback" not in p.stderr


def test_build_from_onnx_without_checkpoint_says_why(exports, tmp_path):
    import shutil

    onnx = tmp_path / "icf-tiny.onnx"
    shutil.copy(exports["icf-tiny"], onnx)
    doc = spec.read_sidecar(exports["icf-tiny"])
    doc["checkpoint"] = None
    spec.write_sidecar(onnx, doc)
    p = _cli("build", "--via", "aotinductor", "--onnx", str(onnx), "--out", str(tmp_path / "pkg"))
    assert p.returncode == 2 and "building needs the weights" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_build_cli_cuda_without_gpu(tiny_ckpt, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    p = _cli("build", "--via", "aotinductor", "--weights", str(tiny_ckpt), "--device", "cuda", "--out", str(tmp_path))
    assert p.returncode == 2 and "sees no CUDA GPU" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_auto_on_cpu_keeps_onnxruntime_and_says_why(exports):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    b = runtime.load(exports["icf-tiny"])
    assert b.info()["backend"] == "onnxruntime" and "AOTInductor" in b.info()["reason"]


# ---- real compiles (slow on a 2-core CPU; gpu where CUDA is present) ----


@pytest.fixture(scope="module")
def tiny_package(tiny_ckpt, tmp_path_factory) -> Path:
    from engine.aoti_build import build_package

    return build_package(tiny_ckpt, tmp_path_factory.mktemp("pkg"), device="cpu", precision="fp32")


@pytest.fixture
def built_here(tiny_package) -> Path:
    """The module's package, recorded in this test's (private) engine cache as built here."""
    from engine.aoti_trust import record_built

    record_built(tiny_package)
    return tiny_package


@pytest.mark.slow
def test_trust_flag_loads_a_package_built_elsewhere(tiny_package, tmp_path):
    """26.7: a real package with changed bytes and a recomputed sidecar is refused; --trust-package loads it."""
    import shutil

    pkg = tmp_path / tiny_package.name
    shutil.copy(tiny_package, pkg)
    shutil.copy(spec.sidecar_path(tiny_package), spec.sidecar_path(pkg))
    with open(pkg, "ab") as f:
        f.write(b"\0" * 16)  # trailing bytes: another file for the digest, the same program for torch
    _resign(pkg)
    with pytest.raises(spec.ArtifactError, match="not built on this machine"):
        runtime.load(pkg)
    b = runtime.load(pkg, trust_package=True)
    assert b.infer(b.blank_inputs())["mask_logits"].shape == (1, 1, 224, 224)


@pytest.mark.slow
def test_build_and_run_tiny_on_cpu(built_here, tiny_ckpt):
    tiny_package = built_here
    from engine.check import check

    doc = spec.read_sidecar(tiny_package)
    assert doc["parity"]["passed"] and doc["parity"]["max_abs_logit_diff"] <= 1e-4
    b = runtime.load(tiny_package, threads=1)
    info = b.info()
    assert info["backend"] == "aotinductor" and "AOTInductor package" in info["reason"]
    out = b.infer(b.blank_inputs())
    assert out["mask_logits"].shape == (1, 1, 224, 224) and np.isfinite(out["mask_logits"]).all()
    b.close()
    report = check(tiny_package, "auto", random_frames=2, synthetic_frames=4)
    assert report["passed"], report
    # the engine cache compiles once and then returns the same verified package
    from engine import cache

    first = cache.package_for(tiny_ckpt)
    assert cache.package_for(tiny_ckpt) == first and spec.read_sidecar(first)[SECTION]["sha256"] == spec.file_sha256(first)


@pytest.mark.slow
def test_forged_torch_version_on_a_real_package(built_here, tmp_path):
    import shutil

    tiny_package = built_here

    pkg = tmp_path / tiny_package.name
    shutil.copy(tiny_package, pkg)
    shutil.copy(spec.sidecar_path(tiny_package), spec.sidecar_path(pkg))
    assert runtime.load(pkg).infer(runtime.load(pkg).blank_inputs())["frame_text"].shape[0] == 1  # the copy runs
    _edit(pkg, torch_version="2.12.0+cpu")
    with pytest.raises(spec.ArtifactError, match="rebuild"):
        runtime.load(pkg)


@pytest.mark.slow
def test_stream_runs_a_package(built_here, tmp_path):
    import os

    from tests.stream.conftest import write_mp4

    tiny_package = built_here
    clip = write_mp4(tmp_path / "clip.mp4", seconds=1.0)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1",
           "ICF_ENGINE_CACHE": os.environ["ICF_ENGINE_CACHE"]}  # where this test's registry says the package was built
    report = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "stream", "run", "--video", str(clip), "--weights", str(tiny_package),
                        "--masks", str(tmp_path / "m.npz"), "--report", str(report), "--threads", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert doc["frames"]["processed"] > 0
    assert "aotinductor" in json.dumps(doc)
    assert np.load(tmp_path / "m.npz")["masks"].shape[0] == doc["frames"]["processed"]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_build_and_run_tiny_on_cuda(tiny_ckpt, tmp_path, precision):
    """Written for the GPU machine; it has not run on one yet (see README, Engine)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from engine.aoti_build import build_package
    from engine.check import check

    pkg = build_package(tiny_ckpt, tmp_path, device="cuda", precision=precision)
    b = runtime.load(pkg)
    assert b.info()["backend"] == "aotinductor" and b.info()["gpu_name"] == torch.cuda.get_device_name(0)
    staged = {n: torch.zeros(s, device="cuda") for n, (s, _) in b.input_specs.items()}
    assert b.infer_device(staged)["mask_logits"].device.type == "cuda"
    report = check(pkg, "aotinductor")
    assert report["passed"], report
