"""``step`` -> one static-shape ONNX file + sidecar JSON, verified before it is reported.

The TorchScript-based exporter (``dynamo=False``) is the default: on torch 2.13 it exports
icf-lite in ~2 s with max logit diff ~1e-6 against eager torch, where the dynamo exporter takes
~10 s for the same graph. ``exporter="dynamo"`` (or the automatic fallback when the
TorchScript path fails or is gone in a later torch) uses ``torch.onnx.export(dynamo=True)``.
The export is only kept if onnx.checker passes and ONNX Runtime matches torch on random and synthetic
inputs by engine.tolerance's rule (the same one ``icf-engine check`` and the builds apply).
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
from .inputs import random_inputs, synthetic_sequence
from .tolerance import LOGIT_TOL, Parity

log = logging.getLogger("icf.engine")
DEFAULT_OPSET = 17
PARITY_TOL = LOGIT_TOL  # engine.tolerance owns the rule; --tol can tighten or loosen its per-unit limit


class ExportError(RuntimeError):
    """The graph could not be exported, or the exported graph does not match torch."""


def _torch_step(net):
    """Wraps the net as a NumPy step function (fp32, CPU) for rollouts and references."""
    import torch

    def step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = net(*(torch.from_numpy(inputs[n]) for n in spec.INPUT_NAMES))
        return {n: o.detach().float().cpu().numpy() for n, o in zip(spec.OUTPUT_NAMES, outs)}

    return step


def _export_graph(net, example: tuple, path: Path, *, opset: int, exporter: str) -> tuple[str, int]:
    import torch

    names = dict(input_names=list(spec.INPUT_NAMES), output_names=list(spec.OUTPUT_NAMES))
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for kind in order:
        try:
            if kind == "torchscript":
                torch.onnx.export(net, example, str(path), opset_version=opset, dynamo=False, do_constant_folding=True, **names)
                return kind, opset
            # The dynamo exporter translates to opset 18 natively; asking for less makes it down-convert.
            used = max(opset, 18)
            program = torch.onnx.export(net, example, dynamo=True, opset_version=used, external_data=False, **names)
            program.save(str(path), external_data=False)
            return kind, used
        except Exception as exc:  # exporter internals raise many types; keep the message, try the next
            errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            log.warning("ONNX export with the %s exporter failed (%s)", kind, exc)
    raise ExportError("ONNX export failed with every exporter tried:\n  " + "\n  ".join(errors))


def _static_output_shapes(path: Path, outputs: list[dict]) -> None:
    """Writes the contract's static shapes onto the graph outputs.

    The TorchScript exporter leaves symbolic dims on mask_logits for the EfficientNet backbone:
    its static "same" padding becomes a Pad whose pads arrive through a Cast, which ONNX shape
    inference cannot follow, so every shape after the stem is unknown although all inputs are static.
    Consumers that read the declared shapes (TensorRT, the sidecar check) want them concrete;
    onnx.checker's full shape inference and the parity run's shape check below confirm them.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), data_prop=True)
    declared = {e["name"]: e["shape"] for e in outputs}
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for dim, value in zip(dims, declared[out.name]):
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = int(value)
    onnx.save(model, str(path))


def parity_inputs(net, specs: spec.Specs, *, seed: int = 0, random: int = 1, synthetic: int = 3) -> list[tuple[str, dict, dict]]:
    """(name, inputs, torch outputs): random frames, then a synthetic sequence whose rings are
    rolled by the net itself (its outputs double as the reference, so torch runs once per frame)."""
    rng = np.random.default_rng(seed)
    ref_step = _torch_step(net)
    cases = [(f"random-{i}", x, ref_step(x)) for i, x in enumerate(random_inputs(specs, rng) for _ in range(random))]
    outputs: list[dict] = []

    def recording_step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs.append(ref_step(inputs))
        return outputs[-1]

    frames = list(synthetic_sequence(specs, synthetic, rng, step=recording_step, frames_per_segment=2))
    cases += [(f"synthetic-{i}", x, y) for i, (x, y) in enumerate(zip(frames, outputs))]
    return cases


def check_onnx_parity(
    net, onnx_path: Path, specs: spec.Specs, specs_out: spec.Specs, *, tol: float = PARITY_TOL, threads: int = 2,
    random: int = 1, synthetic: int = 3,
) -> dict[str, Any]:
    """ONNX Runtime (CPU) against eager torch fp32; raises ExportError above ``tol`` or on a wrong shape."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    parity = Parity()
    cases = parity_inputs(net, specs, random=random, synthetic=synthetic)
    for _, inputs, ref in cases:
        got = dict(zip(spec.OUTPUT_NAMES, sess.run(list(spec.OUTPUT_NAMES), inputs)))
        wrong = {n: v.shape for n, v in got.items() if v.shape != specs_out[n][0]}
        if wrong:
            raise ExportError(f"ONNX Runtime produced output shapes {wrong}; the step contract says {specs_out}")
        parity.add(ref, got)
    verdict = parity.verdict("fp32", tol)
    if not verdict["passed"]:
        raise ExportError(f"ONNX Runtime disagrees with torch: {verdict['failed']} (rule: {verdict['rule']}); "
                          "the export is not trustworthy")
    return {"tolerance": tol, "tolerance_rule": verdict["rule"], "frames": [c[0] for c in cases],
            **{k: verdict[k] for k in ("max_abs_diff", "max_abs_logit_diff", "logit_range", "allowed_logit_diff", "mask_agreement")}}


def export_onnx(
    net,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    stem: str | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    tol: float = PARITY_TOL,
    batch: int = 1,
) -> Path:
    """Exports ``net.step`` to ``out_dir/<stem>.onnx`` (+ ``<stem>.json``) and verifies it.

    ``checkpoint`` (the .safetensors the weights came from) is recorded by path and sha256 so the
    torch backend and ``check`` can rebuild the reference. Returns the ONNX path. The net is put
    in eval mode on the CPU in fp32, in place. ``batch`` > 1 exports the same step for that many
    independent streams at once (every tensor's first dim; still static shapes: one file per batch
    size, see engine/batching.py), verified on random inputs of that batch.
    """
    import onnx
    import torch

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; the engine needs opset >= 17 (LayerNorm-era ops, TensorRT 10)")
    net = net.eval().float().cpu()
    cfg = net.config.to_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem or cfg['name']}.onnx"
    log.info("exporting %s to %s", cfg["name"], path)  # engine.cache relays this line (EXPORTING) to its caller
    sidecar = spec.base_sidecar("onnx", cfg, net.pixel_mean.flatten().tolist(), net.pixel_std.flatten().tolist())
    if batch != 1:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        for entry in sidecar["inputs"] + sidecar["outputs"]:
            entry["shape"][0] = batch
        sidecar["batch"] = batch
    specs = spec.specs_from(sidecar["inputs"])
    example = tuple(torch.from_numpy(v) for v in random_inputs(specs, np.random.default_rng(0)).values())

    # Write under a temporary name in the same folder and rename at the end, so a reader (the
    # stream, the engine cache) never sees a half-written or unverified file.
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        t0 = time.perf_counter()
        used_exporter, used_opset = _export_graph(net, example, tmp, opset=opset, exporter=exporter)
        seconds = time.perf_counter() - t0
        _static_output_shapes(tmp, sidecar["outputs"])
        onnx.checker.check_model(str(tmp), full_check=True)
        ins, outs = spec.onnx_graph_io(tmp)
        if ins != specs or outs != spec.specs_from(sidecar["outputs"]):
            raise ExportError(f"exported graph I/O {ins} -> {outs} differs from the step contract {sidecar['inputs']} -> {sidecar['outputs']}")
        cases = {} if batch == 1 else {"random": 3, "synthetic": 0}  # the synthetic rollout is batch 1
        parity = check_onnx_parity(net, tmp, specs, spec.specs_from(sidecar["outputs"]), tol=tol, **cases)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an artifact is meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    sidecar["onnx"] = {
        "file": path.name,
        "sha256": spec.file_sha256(path),
        "bytes": path.stat().st_size,
        "opset": used_opset,
        "exporter": used_exporter,
        "export_seconds": round(seconds, 2),
    }
    sidecar["checkpoint"] = checkpoint_record(checkpoint, out_dir)
    sidecar["parity"] = {"reference": "torch eager fp32 CPU", "candidate": "onnxruntime CPU", **parity}
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    spec.write_sidecar(path, sidecar)
    log.info("exported %s (%s exporter, opset %d, %.1f s); max abs logit diff vs torch %.2e",
             path, used_exporter, used_opset, seconds, parity["max_abs_logit_diff"])
    return path


def checkpoint_record(checkpoint: str | Path | None, out_dir: Path) -> dict[str, str] | None:
    if checkpoint is None:
        return None
    ckpt = Path(checkpoint).resolve()
    return {
        "path": str(ckpt),
        "relative_path": os.path.relpath(ckpt, out_dir.resolve()),
        "sha256": spec.file_sha256(ckpt),
    }


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, **kwargs: Any) -> Path:
    """Loads an ICF checkpoint (config from its metadata) and exports it."""
    import model

    net = model.load_checkpoint(checkpoint)
    return export_onnx(net, out_dir, checkpoint=checkpoint, **kwargs)


def export_model(name: str, out_dir: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Builds a registry model (seeded init) and exports it.

    Its weights are saved next to the ONNX as ``<stem>-weights.safetensors`` (a different stem, so
    the checkpoint's own JSON does not collide with the ONNX sidecar); that keeps the export
    reproducible for the torch backend and ``check``.
    """
    import torch

    import model

    torch.manual_seed(seed)
    net = model.build_model(name)
    out_dir = Path(out_dir)
    stem = kwargs.pop("stem", None) or name
    ckpt = model.save_checkpoint(net, out_dir / f"{stem}-weights.safetensors", extra={"seed": seed, "source": f"registry:{name}"})
    return export_onnx(net, out_dir, checkpoint=ckpt, stem=stem, **kwargs)
