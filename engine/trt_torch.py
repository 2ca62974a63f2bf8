"""The second way into TensorRT: compile the torch net with torch-tensorrt (dynamo IR) and save it.

``compile_torch_tensorrt`` takes a checkpoint or an exported artifact whose sidecar records one,
compiles ``step`` for static batch-1 shapes, checks it against eager torch, and writes
``FILE.ep`` (torch_tensorrt.save, exported-program format) + ``FILE.json``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any

from . import spec
from .export import parity_inputs
from .tolerance import Parity
from .torch_backend import load_reference_net
from .trt_build import BuildError
from .trt_common import gpu_identity, import_tensorrt, import_torch_tensorrt

log = logging.getLogger("icf.engine")
DEVICE = "cuda"  # torch-tensorrt compiles for CUDA; a module constant so the CPU tests can run the flow with fakes


def _cast_io_module(net, dtype):
    """Keeps host I/O float32 whatever the compute precision, like the .plan path."""
    import torch

    class CastIO(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net.to(dtype)

        def forward(self, image, audio, frame_ring, frame_valid, segment_ring, segment_valid):
            args = (image, audio, frame_ring, frame_valid, segment_ring, segment_valid)
            outs = self.net(*(a.to(dtype) for a in args))
            return tuple(o.float() for o in outs)

    return CastIO().eval()


def _supported(fn, **kwargs: Any) -> dict[str, Any]:
    """torch-tensorrt renamed arguments across 2.x (inputs -> arg_inputs); pass what this version takes."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def precision_options(torch_tensorrt, dtype, precision: str) -> dict[str, Any]:
    """Precision keywords for this torch-tensorrt: the module's weights and inputs are already cast to ``dtype``.

    - 2.5-2.12 have ``use_explicit_typing`` (default True from 2.10, where ``enabled_precisions`` beside it is an
      AssertionError): ask for explicit typing and leave ``enabled_precisions`` out;
    - older ones only know ``enabled_precisions`` (weak typing): pass the dtype there;
    - 2.13+ (TensorRT 11) dropped both: the graph's own dtypes decide.
    fp32 also turns TF32 off (``disable_tf32``), which TensorRT otherwise allows for float32 layers.
    """
    dynamo = getattr(torch_tensorrt, "dynamo", None)
    params = inspect.signature(getattr(dynamo, "compile", torch_tensorrt.compile)).parameters
    if "use_explicit_typing" in params:
        options: dict[str, Any] = {"use_explicit_typing": True}
    elif "enabled_precisions" in params:
        options = {"enabled_precisions": {dtype}}
    else:
        options = {}
    if precision == "fp32" and "disable_tf32" in params:
        options["disable_tf32"] = True
    return options


def compile_torch_tensorrt(
    artifact: str | Path,
    out: str | Path,
    *,
    precision: str = "fp16",
    workspace_gb: float = 4.0,
    weights: str | Path | None = None,
    verify: bool = True,
) -> Path:
    """Compiles, checks with engine.check's pass rule (``verify=False`` writes a failing program anyway, flagged
    in its sidecar), then writes ``out`` + sidecar. Raises BuildError when the program fails the rule."""
    torch_tensorrt = import_torch_tensorrt()
    trt = import_tensorrt()
    import torch

    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(
            f"--via torch-tensorrt supports fp32/fp16/bf16, not {precision!r}; build int8 from the ONNX "
            "(`icf-engine build --precision int8`), which calibrates"
        )
    gpu = gpu_identity()
    net, doc, ckpt = load_reference_net(artifact, weights)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    module = _cast_io_module(net.to(DEVICE), dtype)
    specs = spec.specs_from(doc["inputs"])
    example = [torch.zeros(shape, device=DEVICE) for shape, _ in specs.values()]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    options = dict(
        ir="dynamo", arg_inputs=example, inputs=example, workspace_size=int(workspace_gb * (1 << 30)), min_block_size=1,
        **precision_options(torch_tensorrt, dtype, precision),
    )
    if "arg_inputs" in inspect.signature(torch_tensorrt.compile).parameters:
        options.pop("inputs")
    else:
        options.pop("arg_inputs")
    compiled = torch_tensorrt.compile(module, **options)
    seconds = time.perf_counter() - t0

    # Parity of the compiled program against the fp32 eager reference, on the same inputs; engine.check's rule decides.
    ref_net, _, _ = load_reference_net(artifact, weights)  # a fresh copy: `module` moved `net` to CUDA/dtype in place
    judge = Parity()
    for _, inputs, ref in parity_inputs(ref_net, specs):
        with torch.inference_mode():
            got = compiled(*(torch.from_numpy(inputs[n]).to(DEVICE) for n in spec.INPUT_NAMES))
        judge.add(ref, {n: g.float().cpu().numpy() for n, g in zip(spec.OUTPUT_NAMES, got)})
    v = judge.verdict(precision)
    worst, logit_diff, passed, rule = v["max_abs_diff"], v["max_abs_logit_diff"], v["passed"], v["rule"]
    if not passed and verify:
        raise BuildError(
            f"torch-tensorrt {precision} program of {artifact} fails the parity rule of engine.tolerance ({rule}): {v['failed']}; "
            "nothing was written. Try --precision fp32, or the .plan path (icf-engine build without --via)."
        )
    save_kw = {"output_format": "exported_program", "arg_inputs": example, "inputs": example}
    save_kw = _supported(torch_tensorrt.save, **save_kw)
    if "arg_inputs" in save_kw and "inputs" in save_kw:
        save_kw.pop("inputs")
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # program and sidecar are renamed into place last
    try:
        torch_tensorrt.save(compiled, str(tmp), **save_kw)
        _write_sidecar(tmp, doc, ckpt, torch_tensorrt, trt, gpu, {
            "precision": precision,
            "workspace_gb": workspace_gb,
            "program_sha256": spec.file_sha256(tmp),
            "compile_seconds": round(seconds, 1),
            "max_abs_diff_vs_torch_fp32": worst,
            "parity": {"rule": rule, "passed": bool(passed), "max_abs_logit_diff": logit_diff, "mask_iou": v["mask_iou"]},
            "explicit_typing": "enabled_precisions" not in options,
        })
        os.replace(tmp, out)
        os.replace(spec.sidecar_path(tmp), spec.sidecar_path(out))
    finally:
        tmp.unlink(missing_ok=True)
        spec.sidecar_path(tmp).unlink(missing_ok=True)
    log.info("torch-tensorrt compiled %s (%s) in %.0f s; max abs diff vs torch fp32 %s", out, precision, seconds,
             {k: f"{v:.2e}" for k, v in worst.items()})
    return out


def _write_sidecar(tmp: Path, doc, ckpt, torch_tensorrt, trt, gpu, built: dict[str, Any]) -> None:
    sidecar = {k: v for k, v in doc.items() if k not in ("onnx", "parity", "created", "tensorrt")}
    sidecar.update(kind="torch-tensorrt", tools=spec.tool_versions())
    sidecar["checkpoint"] = {"path": str(Path(ckpt).resolve()), "sha256": spec.file_sha256(ckpt)}
    sidecar["torch_tensorrt"] = {
        "torch_tensorrt_version": torch_tensorrt.__version__, "tensorrt_version": trt.__version__, **gpu, **built,
    }
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    spec.write_sidecar(tmp, sidecar)
