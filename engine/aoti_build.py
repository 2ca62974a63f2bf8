"""``step`` -> an AOTInductor package (``.pt2``) + sidecar JSON, verified against eager fp32 before it is kept.

Pipeline: load the checkpoint (model/ is needed to *build*, never to run), wrap the net so the
package's I/O stays the float32 step contract whatever precision it computes in, ``torch.export``
it with the contract's static shapes, ``torch._inductor.aoti_compile_and_package`` it, load the
result back and compare it with eager torch fp32 on random and synthetic frames:
judged by engine.tolerance's rule, the one export and ``icf-engine check`` use.
Only a package that passes is renamed into place and described by a sidecar.

Building from an ``.onnx`` rebuilds from the checkpoint its sidecar records (an ONNX graph cannot be
turned back into a torch program); without a recorded checkpoint, pass ``--weights``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import spec
from .aoti_common import DEVICES, KIND, PRECISIONS, SECTION, ieee_fp32, target_identity
from .aoti_trust import record_built

log = logging.getLogger("icf.engine")
# Inductor defaults. Freezing (weights as constants, BatchNorm folded, oneDNN prepacking) was tried
# for icf-lite on this 2-core CPU: no faster per step than without (~60 ms p50 at 1 thread, shared
# machine) and ~8 s more at load, so it is not the default; pass inductor_configs={"freezing": True}.
DEFAULT_INDUCTOR_CONFIGS: dict[str, dict[str, Any]] = {"cpu": {}, "cuda": {}}


class AOTIBuildError(RuntimeError):
    """The program could not be exported / compiled, or the package does not match eager torch."""


def source_checkpoint(source: str | Path, weights: str | Path | None = None) -> Path:
    """The checkpoint to compile: ``weights``, the ``.safetensors`` source itself, or the one an ONNX sidecar records."""
    source = Path(source)
    if weights:
        return Path(weights)
    if source.suffix == ".safetensors":
        return source
    if source.suffix == ".onnx":
        doc = spec.read_sidecar(source)
        spec.verify_onnx(source, doc)
        ckpt = spec.resolve_checkpoint(doc, source)
        if ckpt is None:
            raise spec.ArtifactError(
                f"{source} records no checkpoint; an AOTInductor package is compiled from the torch network, not from an "
                f"ONNX graph, so building needs the weights: pass --weights CKPT.safetensors"
            )
        return ckpt
    raise spec.ArtifactError(f"{source}: build an AOTInductor package from a .safetensors checkpoint or an .onnx export, not {source.suffix!r}")


def _step_module(net, dtype):
    """The net behind the float32 contract: inputs cast to ``dtype`` on entry, outputs to float32 on exit."""
    import torch

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image, audio, frame_ring, frame_valid, segment_ring, segment_valid):
            args = (image, audio, frame_ring, frame_valid, segment_ring, segment_valid)
            outs = self.net(*(a.to(dtype) for a in args))
            return tuple(o.float() for o in outs)

    return Step().eval()


def package_path(out: str | Path, model_name: str, device: str, precision: str, batch: int = 1) -> Path:
    """``out`` if it names a .pt2 file, else ``out/<model>-aoti-<device>-<precision>[-b<B>].pt2``."""
    out = Path(out)
    tail = "" if batch == 1 else f"-b{batch}"
    return out if out.suffix == ".pt2" else out / f"{model_name}-aoti-{device}-{precision}{tail}.pt2"


def parity(package_fn, ref_net, specs: spec.Specs, precision: str, device: str) -> dict[str, Any]:
    """Package vs eager fp32 CPU on 1 random + 3 synthetic frames (rings rolled by the reference);
    a batch > 1 package on 3 random batches (the synthetic rollout is batch 1, as in engine.export)."""
    import torch

    from .export import parity_inputs
    from .tolerance import Parity

    judge = Parity()
    batched = specs["image"][0][0] != 1
    cases = parity_inputs(ref_net, specs, random=3, synthetic=0) if batched else parity_inputs(ref_net, specs)
    for _, inputs, ref in cases:
        with torch.inference_mode(), ieee_fp32(device, precision):
            outs = package_fn(*(torch.from_numpy(inputs[n]).to(device) for n in spec.INPUT_NAMES))
        got = {n: o.detach().float().cpu().numpy() for n, o in zip(spec.OUTPUT_NAMES, outs)}
        wrong = {n: got[n].shape for n in got if got[n].shape != ref[n].shape}
        if wrong:
            raise AOTIBuildError(f"the package produced output shapes {wrong}; eager torch gives {({n: ref[n].shape for n in wrong})}")
        judge.add(ref, got)
    v = judge.verdict(precision)
    result = {"rule": v["rule"], "passed": bool(v["passed"]), "frames": [c[0] for c in cases], "max_abs_diff": v["max_abs_diff"],
              "max_abs_logit_diff": v["max_abs_logit_diff"], "allowed_logit_diff": v["allowed_logit_diff"], "mask_iou": v["mask_iou"]}
    if not v["passed"]:
        raise AOTIBuildError(f"the AOTInductor package disagrees with eager torch fp32: {v['failed']} (rule: {v['rule']}); "
                             "it was not kept")
    return result


def package_sidecar(sidecar: dict[str, Any], path: Path, ckpt: Path, *, precision: str, ident: dict[str, Any],
                    configs: dict[str, Any], times: dict[str, float], check: dict[str, Any]) -> dict[str, Any]:
    """The kind-specific half of a package's sidecar: what it was built for, from what, and how it compared."""
    from .export import checkpoint_record

    sidecar[SECTION] = {
        "file": path.name,
        "sha256": spec.file_sha256(path),
        "bytes": path.stat().st_size,
        "precision": precision,
        **ident,
        "inductor_configs": configs,
        **times,
    }
    sidecar["checkpoint"] = checkpoint_record(ckpt, path.parent)
    sidecar["parity"] = {"reference": "torch eager fp32 CPU", "candidate": f"AOTInductor {ident['device']} {precision}", **check}
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return sidecar


def build_package(
    source: str | Path,
    out: str | Path,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    weights: str | Path | None = None,
    inductor_configs: dict[str, Any] | None = None,
    batch: int = 1,
) -> Path:
    """Compiles the checkpoint behind ``source`` (.safetensors, or .onnx whose sidecar records one) into
    ``out`` (a folder, or a .pt2 path) for ``device`` at ``precision``; returns the verified package path.
    ``batch``: the static first dim of every input and output (one package per batch size; many streams)."""
    import copy

    import torch

    import model

    if device not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, not {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"AOTInductor precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    ident = target_identity(device)  # fails early (before minutes of compiling) when CUDA is asked for and absent
    ckpt = source_checkpoint(source, weights)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    ref_net = model.load_checkpoint(ckpt).float().cpu().eval()
    cfg = ref_net.config.to_dict()
    sidecar = spec.with_batch(spec.base_sidecar(KIND, cfg, ref_net.pixel_mean.flatten().tolist(), ref_net.pixel_std.flatten().tolist()), batch)
    specs = spec.specs_from(sidecar["inputs"])
    dtype = getattr(torch, PRECISIONS[precision])
    step = _step_module(copy.deepcopy(ref_net).to(device=device, dtype=dtype), dtype)
    from .inputs import random_inputs

    example = tuple(torch.from_numpy(v).to(device) for v in random_inputs(specs, np.random.default_rng(0)).values())
    configs = {**DEFAULT_INDUCTOR_CONFIGS[device], **(inductor_configs or {})}

    path = package_path(out, cfg["name"], device, precision, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Compile under a temporary name in the same folder and rename once verified, so a reader (the
    # stream, the engine cache) never sees a half-written or unverified package.
    fd, tmp_name = tempfile.mkstemp(suffix=".pt2", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                program = torch.export.export(step, example, strict=False)
        except Exception as exc:  # export raises many internal types; keep the message
            raise AOTIBuildError(f"torch.export of {cfg['name']}.step failed: {type(exc).__name__}: {exc}") from exc
        t1 = time.perf_counter()
        log.info("exported %s step in %.1f s; compiling with AOTInductor for %s %s (this takes a while once)",
                 cfg["name"], t1 - t0, device, precision)
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=configs)
        except Exception as exc:
            raise AOTIBuildError(f"AOTInductor compilation failed: {type(exc).__name__}: {exc}") from exc
        t2 = time.perf_counter()
        loaded = torch._inductor.aoti_load_package(str(tmp))
        check = parity(loaded, ref_net, specs, precision, device)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an artifact is meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    times = {"export_seconds": round(t1 - t0, 2), "compile_seconds": round(t2 - t1, 2)}
    sidecar = package_sidecar(sidecar, path, ckpt, precision=precision, ident=ident, configs=configs, times=times, check=check)
    spec.write_sidecar(path, sidecar)
    record_built(path)  # it passed the gate here: this machine may load it (engine.aoti_trust)
    log.info("built %s (%.1f MB, compile %.1f s); %s: max abs logit diff %.2e, mask IoU %.4f",
             path, path.stat().st_size / 1e6, t2 - t1, check["rule"], check["max_abs_logit_diff"], check["mask_iou"])
    return path
