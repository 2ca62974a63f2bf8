"""AOTInductor packages: what a ``.pt2`` is tied to, and the refusal when it does not fit here.

An AOTInductor package holds a compiled shared library (C++/OpenMP kernels for the CPU, Triton
cubins for CUDA) plus the weights. It runs only on the torch build it was compiled with (the
wrapper calls torch's C shim ABI), on the CUDA version and GPU architecture its kernels target,
and on the CPU it was compiled for the vector ISA (AVX2 / AVX-512 / NEON) chosen at build time.
The sidecar records all of that; ``check_package_compatible`` compares it with this machine
before anything is loaded, so a mismatch is a clear "rebuild" message instead of a crash.

Imports torch lazily; never imports model/ or training/.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Any

from .spec import ArtifactError

KIND = "aotinductor"
SECTION = "aotinductor"
DEVICES = ("cpu", "cuda")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class AOTIUnavailable(RuntimeError):
    """The requested target (a CUDA GPU) is not present on this machine."""


def cpu_vec_isa() -> str:
    """The vector ISA Inductor generates CPU kernels for on this machine ("avx512", "avx2", "neon", "" if none)."""
    from torch._inductor import cpu_vec_isa as isa

    picked = isa.pick_vec_isa()
    return str(picked) if picked else ""


def cpu_supported_isas() -> list[str]:
    """Inductor's own probe (compiles a test program per ISA: ~1-3 s, so only a fallback)."""
    from torch._inductor import cpu_vec_isa as isa

    return [str(v) for v in isa.valid_vec_isa_list()]


# Inductor ISA names that are not themselves /proc/cpuinfo flags -> the flags its compiler switches need.
_ISA_FLAGS = {"avx512": {"avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"}, "avx2": {"avx2", "fma"}}


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); None where unreadable."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def isa_supported(isa: str, flags: set[str] | None = None) -> bool:
    """Whether this CPU runs kernels built for Inductor vector ISA ``isa`` (e.g. "avx512 avx512_vnni")."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return isa in cpu_supported_isas()
    needed = set().union(*(_ISA_FLAGS.get(token, {token}) for token in isa.split()))
    return needed <= flags


def target_identity(device: str, *, probe_isa: bool = True) -> dict[str, Any]:
    """What a package built (or run) here for ``device`` depends on.

    ``probe_isa=False`` skips Inductor's ISA probe (seconds); loading checks ISA flags instead."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"AOTInductor device must be one of {DEVICES}, not {device!r}")
    ident: dict[str, Any] = {
        "device": device,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cpu_arch": platform.machine(),
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            raise AOTIUnavailable(
                f"--device cuda but torch {torch.__version__} sees no CUDA GPU; build CUDA packages on the GPU machine "
                "that will run them (or use --device cpu)"
            )
        major, minor = torch.cuda.get_device_capability(0)
        ident.update(gpu_name=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}")
    elif probe_isa:
        ident["cpu_vec_isa"] = cpu_vec_isa()
    return ident


@contextlib.contextmanager
def ieee_fp32(device: str, precision: str) -> Iterator[None]:
    """CUDA fp32 packages call cuDNN convolutions through torch, which allows TF32 by default (logits move
    by ~1e-3, past the 1e-4 fp32 rule): switch TF32 off around the call and restore it, as the torch backend does."""
    if device != "cuda" or precision != "fp32":
        yield
        return
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rebuild_command(doc: dict[str, Any], artifact: str) -> str:
    built = doc.get(SECTION, {})
    ckpt = (doc.get("checkpoint") or {}).get("path", "CKPT.safetensors")
    return (f"icf-engine build --via aotinductor --weights {ckpt} --device {built.get('device', 'cpu')} "
            f"--precision {built.get('precision', 'fp32')} --out {str(artifact).rsplit('/', 1)[0] if '/' in str(artifact) else '.'}")


def check_package_compatible(doc: dict[str, Any], artifact: str, here: dict[str, Any] | None = None) -> None:
    """Raises ArtifactError (saying "rebuild") if the package was built for another torch / CUDA / GPU / CPU.

    ``here``: this machine's identity (default: ``target_identity`` for the package's device).
    """
    built = doc[SECTION]
    device = built.get("device")
    if device not in DEVICES:
        raise ArtifactError(f"{artifact}: sidecar records device {device!r}; expected one of {DEVICES}; rebuild it")
    if here is None:
        try:
            here = target_identity(device, probe_isa=False)
        except AOTIUnavailable as exc:
            raise ArtifactError(f"{artifact} is a CUDA package and this machine cannot run it ({exc}); "
                                f"rebuild it for the CPU: {rebuild_command({**doc, SECTION: {**built, 'device': 'cpu'}}, artifact)}") from exc
    problems = []
    for key, what in (("torch_version", "torch"), ("cuda_version", "CUDA"), ("cpu_arch", "CPU architecture")):
        if built.get(key) != here.get(key):
            problems.append(f"{what} {built.get(key)} (this machine: {here.get(key)})")
    if device == "cuda":
        if built.get("gpu_name") != here.get("gpu_name"):
            problems.append(f"GPU {built.get('gpu_name')} (this machine: {here.get('gpu_name')})")
        elif built.get("compute_capability") != here.get("compute_capability"):
            problems.append(f"compute capability {built.get('compute_capability')} (this machine: {here.get('compute_capability')})")
    else:
        isa = built.get("cpu_vec_isa") or ""
        if isa and not isa_supported(isa, here.get("cpu_flags")):
            problems.append(f"CPU vector ISA {isa} (this CPU lacks its instructions)")
    if problems:
        raise ArtifactError(
            f"{artifact} was built for {' and '.join(problems)}. AOTInductor packages hold compiled kernels and only run on "
            f"the torch build, CUDA version and GPU/CPU they were compiled for: rebuild it here with `{rebuild_command(doc, artifact)}`."
        )


# The rule `auto` follows for AOTInductor, stated in info()["reason"] (numbers: README, Engine section).
AUTO_RULE = (
    "auto runs a .pt2 on aotinductor but never compiles one for an .onnx/.safetensors: on the CPU ONNX Runtime was "
    "faster in every measurement (icf-lite fp32, batch 1, 1 thread, shared 2-core CPU: p50 72 vs 112 ms; README, Engine), "
    "and on a GPU AOTInductor has not been measured, so TensorRT / torch CUDA graphs stay first"
)
