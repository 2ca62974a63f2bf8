"""The second way into TensorRT: compile the torch net with torch-tensorrt (dynamo IR) and save it.

``compile_torch_tensorrt`` takes a checkpoint or an exported artifact whose sidecar records one,
compiles ``step`` for static batch-1 shapes, checks it against eager torch, and writes
``FILE.ep`` (torch_tensorrt.save, exported-program format) + ``FILE.json``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import time
from pathlib import Path
from typing import Any

from . import spec
from .export import compare, parity_inputs
from .torch_backend import load_reference_net
from .trt_common import gpu_identity, import_tensorrt, import_torch_tensorrt

log = logging.getLogger("icf.engine")


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


def compile_torch_tensorrt(
    artifact: str | Path, out: str | Path, *, precision: str = "fp16", workspace_gb: float = 4.0, weights: str | Path | None = None
) -> Path:
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
    module = _cast_io_module(net.cuda(), dtype)
    specs = spec.specs_from(doc["inputs"])
    example = [torch.zeros(shape, device="cuda") for shape, _ in specs.values()]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    options = dict(
        ir="dynamo", arg_inputs=example, inputs=example, enabled_precisions={dtype},
        workspace_size=int(workspace_gb * (1 << 30)), min_block_size=1,
    )
    if "arg_inputs" in inspect.signature(torch_tensorrt.compile).parameters:
        options.pop("inputs")
    else:
        options.pop("arg_inputs")
    compiled = torch_tensorrt.compile(module, **options)
    seconds = time.perf_counter() - t0
    save_kw = {"output_format": "exported_program", "arg_inputs": example, "inputs": example}
    save_kw = _supported(torch_tensorrt.save, **save_kw)
    if "arg_inputs" in save_kw and "inputs" in save_kw:
        save_kw.pop("inputs")
    torch_tensorrt.save(compiled, str(out), **save_kw)

    # Parity of the compiled program against the fp32 eager reference, on the same inputs.
    ref_net, _, _ = load_reference_net(artifact, weights)  # a fresh copy: `module` moved `net` to CUDA/dtype in place
    worst = dict.fromkeys(spec.OUTPUT_NAMES, 0.0)
    for _, inputs, ref in parity_inputs(ref_net, specs):
        with torch.inference_mode():
            got = compiled(*(torch.from_numpy(inputs[n]).cuda() for n in spec.INPUT_NAMES))
        diffs = compare(ref, {n: g.float().cpu().numpy() for n, g in zip(spec.OUTPUT_NAMES, got)})
        worst = {n: max(worst[n], d) for n, d in diffs.items()}

    sidecar = {k: v for k, v in doc.items() if k not in ("onnx", "parity", "created", "tensorrt")}
    sidecar.update(kind="torch-tensorrt", tools=spec.tool_versions())
    sidecar["checkpoint"] = {"path": str(Path(ckpt).resolve()), "sha256": spec.file_sha256(ckpt)}
    sidecar["torch_tensorrt"] = {
        "torch_tensorrt_version": torch_tensorrt.__version__,
        "tensorrt_version": trt.__version__,
        **gpu,
        "precision": precision,
        "workspace_gb": workspace_gb,
        "program_sha256": spec.file_sha256(out),
        "compile_seconds": round(seconds, 1),
        "max_abs_diff_vs_torch_fp32": worst,
    }
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    spec.write_sidecar(out, sidecar)
    log.info("torch-tensorrt compiled %s (%s) in %.0f s; max abs diff vs torch fp32 %s", out, precision, seconds,
             {k: f"{v:.2e}" for k, v in worst.items()})
    return out

