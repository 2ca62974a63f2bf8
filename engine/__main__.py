"""icf-engine: export, build, check and describe inference artifacts of ICF networks.

  icf-engine export --weights ckpt.safetensors --out out/engine      # ONNX + sidecar, verified
  icf-engine export --model icf-lite --out out/engine                # fresh registry model (+ its weights)
  icf-engine build --onnx out/engine/icf-lite.onnx --precision fp16 --out out/engine/icf-lite-fp16.plan
  icf-engine build --via torch-tensorrt --onnx out/engine/icf-lite.onnx --precision fp16 --out out/engine/icf-lite.ep
  icf-engine build --via aotinductor --weights ckpt.safetensors --device cpu --precision fp32 --out out/engine
  icf-engine check --weights out/engine/icf-lite.onnx --backend onnxruntime
  icf-engine info --weights out/engine/icf-lite.onnx
"Which model" is --weights everywhere: a checkpoint, or an artifact (.onnx, .plan, .ep, .pt2).
Exit codes: 0 success, 1 a check failed, 2 bad input or a missing dependency (message says which).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from icfcli import UserError, make_parser, non_negative_int, positive_float, positive_int, run
from weights import SHIPPED, SHIPPED_NAME, weights_arg

from . import spec

EPILOG = "Artifacts carry a sidecar JSON (same stem) that the runtime reads; see the Engine section of README.md."


def _export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint, export_model

    if not args.weights and not args.model:
        args.weights = str(SHIPPED)  # like the other commands: the shipped weights unless told otherwise
    if args.weights and Path(args.weights).is_dir():
        raise UserError(f"--weights {args.weights} is a folder; give the checkpoint file (.safetensors)")
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"weights file {args.weights} not found")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder (the export writes NAME.onnx + NAME.json into it)")
    kw = dict(opset=args.opset, exporter=args.exporter, tol=args.tol)
    if args.stem:
        kw["stem"] = args.stem
    if args.weights:
        path = export_checkpoint(args.weights, args.out, **kw)
    else:
        path = export_model(args.model, args.out, seed=args.seed, **kw)
    doc = spec.read_sidecar(path)
    parity = doc["parity"]
    print(f"exported {path} ({doc['onnx']['bytes'] / 1e6:.1f} MB, opset {doc['onnx']['opset']}, {doc['onnx']['exporter']} exporter)")
    print(f"sidecar  {spec.sidecar_path(path)}")
    print(f"sha256   {doc['onnx']['sha256']}")
    allowed = parity.get("allowed_logit_diff", parity["tolerance"])
    print(f"checked  onnx.checker OK; ONNX Runtime vs torch on {len(parity['frames'])} frames: "
          f"max abs logit diff {parity['max_abs_logit_diff']:.2e} (<= {allowed:.2g}: {parity['tolerance']:g} x logit range "
          f"{parity.get('logit_range', 0):.1f}), mask agreement {parity.get('mask_agreement', 1):.5f}")
    return 0


def _build_aoti(args: argparse.Namespace) -> int:
    from .aoti_build import build_package

    source = args.weights or args.onnx
    if not source:
        print("icf-engine build --via aotinductor: give --weights CKPT.safetensors, or --onnx FILE whose sidecar records "
              "its checkpoint (the package is compiled from the torch network, so building needs the weights)", file=sys.stderr)
        return 2
    device = args.device or "cpu"
    precision = args.precision or ("fp16" if device == "cuda" else "fp32")
    from .aoti_common import AOTIUnavailable

    try:
        path = build_package(source, args.out, device=device, precision=precision)
    except AOTIUnavailable as exc:
        print(f"icf-engine build: {exc}", file=sys.stderr)
        return 2
    doc = spec.read_sidecar(path)
    built, par = doc["aotinductor"], doc["parity"]
    print(f"built    {path} ({built['bytes'] / 1e6:.1f} MB, {device} {precision}, torch {built['torch_version']}, "
          f"{built.get('gpu_name') or 'CPU ' + (built.get('cpu_vec_isa') or 'scalar')}; compile {built['compile_seconds']:.0f} s)")
    print(f"sidecar  {spec.sidecar_path(path)}")
    print(f"sha256   {built['sha256']}")
    print(f"checked  vs eager torch fp32 on {len(par['frames'])} frames: max abs logit diff {par['max_abs_logit_diff']:.2e}, "
          f"mask IoU {par['mask_iou']:.4f}: PASS ({par['rule']})")
    print(f"run it   icf-stream demo --weights {path}   (or: icf-stream run --video FILE --weights {path})")
    return 0


def _build_int8(args: argparse.Namespace) -> int:
    from . import cache
    from .quantize import Int8Failed

    if args.precision != "int8":
        print("icf-engine build --via onnxruntime makes the CPU int8 graph: give --precision int8 (fp32 is the export itself)", file=sys.stderr)
        return 2
    source = args.onnx or args.weights
    if not source:
        print("icf-engine build --via onnxruntime: give --weights CKPT.safetensors or --onnx FILE (batch-1 fp32 export)", file=sys.stderr)
        return 2
    try:
        path, record = cache.build_int8(source, out_dir=args.out, calib_frames=args.calib_frames or 48)
    except Int8Failed as exc:
        print(f"icf-engine build: {exc}", file=sys.stderr)
        return 1
    par = record["parity"]
    print(f"built {path} (+ {spec.sidecar_path(path).name}): int8 of {record['scope']}, pooled mask IoU {par['pooled_mask_iou']} "
          f"vs fp32 on {par['frames']} held-out SynthAVS frames ({par['rule']}: passed)")
    return 0


def _build(args: argparse.Namespace) -> int:
    if args.via == "aotinductor":
        return _build_aoti(args)
    if args.via == "onnxruntime":
        return _build_int8(args)
    if not args.out:
        print(f"icf-engine build --via {args.via}: --out is required", file=sys.stderr)
        return 2
    from .trt_common import INSTALL_HELP, tensorrt_installed

    if args.device and args.device != "cuda":
        print("icf-engine build: TensorRT builds for the CUDA GPU; --device cpu only applies to --via aotinductor", file=sys.stderr)
        return 2
    args.precision = args.precision or "fp16"

    if not tensorrt_installed():
        print(f"icf-engine build: {INSTALL_HELP}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.via == "torch-tensorrt":
        from .trt_torch import compile_torch_tensorrt

        source = args.onnx or args.weights
        if not source:
            print("icf-engine build --via torch-tensorrt: give --onnx FILE (its sidecar names the checkpoint) or --weights CKPT", file=sys.stderr)
            return 2
        path = compile_torch_tensorrt(source, out, precision=args.precision, workspace_gb=args.workspace_gb,
                                      weights=args.weights if args.onnx else None)
    else:
        if not args.onnx:
            print("icf-engine build: --onnx FILE is required (export one with `icf-engine export`)", file=sys.stderr)
            return 2
        from .trt_build import build_engine

        path = build_engine(args.onnx, out, precision=args.precision, workspace_gb=args.workspace_gb,
                            calib_data=args.calib_data, calib_frames=args.calib_frames or 256, timing_cache=args.timing_cache)
    print(f"built {path} (+ {spec.sidecar_path(path).name})")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check, format_report

    artifact, reference = args.weights, args.reference
    if not artifact:
        raise UserError("give the artifact to check: --weights FILE (.onnx, .plan, .ep, .pt2 or .safetensors)")
    for path in filter(None, (artifact, reference)):
        if not Path(path).is_file():
            raise UserError(f"{path} not found")
    options = {k: v for k, v in dict(precision=args.precision, mode=args.mode, device=args.device, threads=args.threads,
                                     trust_package=args.trust_package and str(artifact).endswith(".pt2")).items() if v}
    report = check(artifact, args.backend, weights=reference, random_frames=args.random_frames,
                   synthetic_frames=args.synthetic_frames, seed=args.seed, **options)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["passed"] else 1


def _info(args: argparse.Namespace) -> int:
    if not args.weights:
        raise UserError("give the artifact: icf-engine info --weights FILE")
    path = Path(args.weights)
    if not path.is_file():
        raise UserError(f"{path} not found")
    if path.suffix == ".safetensors":
        import model

        cfg = model.read_checkpoint_config(path).to_dict()
        doc = spec.base_sidecar("checkpoint", cfg, [0, 0, 0], [1, 1, 1])
        doc["pixel_normalisation"] = "applied inside the network (values depend on the backbone; see an export sidecar)"
        integrity = f"sha256 {spec.file_sha256(path)}"
    else:
        doc = spec.read_sidecar(path)
        try:
            spec.verify_artifact(path, doc)
            if doc["kind"] == "aotinductor":
                from .aoti_common import check_package_compatible

                check_package_compatible(doc, str(path))
                from .aoti_trust import require_built_here

                require_built_here(path, trust=args.trust_package)
            integrity = ("OK (sha256 and I/O match the sidecar; the sidecar's content digest matches)" if spec.DIGEST_KEY in doc else
                         "PARTIAL: sha256 and I/O match the sidecar, but the sidecar carries no content digest "
                         "(exported before digests were recorded), so its names and normalisation are unverified; re-export")
        except spec.ArtifactError as exc:
            integrity = f"FAILED: {exc}"
    if args.json:
        print(json.dumps({"integrity": integrity, **doc}, indent=2, default=str))
        return 0 if not integrity.startswith("FAILED") else 2
    cfg = doc["model"]["config"]
    print(f"{path}: {doc['kind']} artifact of model '{doc['model']['name']}'")
    print(f"  integrity : {integrity}")
    print(f"  network   : backbone {cfg['backbone']}, width {cfg['width']}, image {cfg['image_size']}, "
          f"{'semantic' if cfg.get('semantic') else 'binary'} head, rings Nf={cfg['frame_ring']} Ns={cfg['segment_ring']}, "
          f"frame ring {spec.frame_ring_rate(doc)}/s")
    for side in ("inputs", "outputs"):
        print(f"  {side:<10}: " + ", ".join(f"{e['name']} {e['shape']} {e['dtype']}" for e in doc[side]))
    pn = doc["pixel_normalisation"]
    print(f"  pixels    : {pn['description']} (mean {pn['mean']}, std {pn['std']})" if isinstance(pn, dict) else f"  pixels    : {pn}")
    print(f"  concepts  : {len(doc['concepts'])}: {', '.join(doc['concepts'])}")
    if doc.get("checkpoint"):
        print(f"  checkpoint: {doc['checkpoint']['path']} (sha256 {doc['checkpoint']['sha256'][:16]}...)")
    for section in ("onnx", "tensorrt", "torch_tensorrt", "aotinductor", "parity"):
        if section in doc:
            print(f"  {section:<10}: {json.dumps(doc[section], default=str)}")
    print(f"  tools     : {', '.join(f'{k} {v}' for k, v in doc['tools'].items())}")
    return 0 if not integrity.startswith("FAILED") else 2


def build_parser() -> argparse.ArgumentParser:
    p, sub = make_parser("icf-engine", __doc__, EPILOG)
    for add in (add_export, add_build, add_check, add_info):  # a new sub-command: an add_x(sub) + one entry here
        add(sub)
    return p


def add_export(sub) -> None:
    e = sub.add_parser("export", help="write step() as one static-shape ONNX file + sidecar JSON, verified against torch")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--weights", metavar="CKPT", type=weights_arg,
                     help=f"ICF checkpoint (.safetensors) to export (default: the shipped weights, {SHIPPED_NAME})")
    src.add_argument("--model", metavar="NAME", help="registry model to build fresh (icf-tiny, icf-lite, icf-r50); its weights are saved beside")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    e.add_argument("--stem", help="file stem (default: the model name)")
    e.add_argument("--opset", type=positive_int, default=17, help="ONNX opset, >= 17 (default 17)")
    e.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                   help="auto: TorchScript exporter, falling back to dynamo if it fails (default)")
    e.add_argument("--seed", type=non_negative_int, default=0, help="init seed for --model (default 0)")
    e.add_argument("--tol", type=positive_float, default=1e-4,
                   help="ONNX Runtime vs torch: max abs diff allowed per unit of the output's value range (default 1e-4), "
                        "plus >= 99.9%% of mask pixels decided the same way")
    e.set_defaults(func=_export)



def add_build(sub) -> None:
    b = sub.add_parser("build", help="build a TensorRT engine (.plan) or torch-tensorrt program (.ep) (TensorRT + CUDA), "
                                     "or an AOTInductor package (.pt2, CPU or CUDA, runs wherever this torch does)")
    b.add_argument("--onnx", metavar="FILE", help="exported ONNX (its sidecar must be beside it); --via aotinductor compiles the "
                                                   "checkpoint this sidecar records, since an ONNX graph cannot become a torch program")
    b.add_argument("--weights", metavar="CKPT", type=weights_arg, help="checkpoint to compile: for --via aotinductor (or instead of --onnx), and "
                                                     "--via torch-tensorrt (instead of the one the ONNX records)")
    b.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default=None,
                   help="default fp16 (TensorRT); aotinductor: fp32 on cpu, fp16 on cuda (int8 is TensorRT only)")
    b.add_argument("--device", choices=("cpu", "cuda"), default=None, help="--via aotinductor: compile for cpu (default) or cuda")
    b.add_argument("--out", metavar="FILE|DIR",
                   help="output .plan (.ep with --via torch-tensorrt); --via aotinductor: a folder (gets <model>-aoti-<device>-<precision>.pt2) "
                        "or a .pt2 path; --via onnxruntime: a folder (default: the engine cache, where runtime auto finds it)")
    b.add_argument("--via", choices=("tensorrt", "torch-tensorrt", "aotinductor", "onnxruntime"), default="tensorrt",
                   help="TensorRT ONNX parser (default), torch-tensorrt dynamo, torch.export + AOTInductor, or ONNX Runtime "
                        "static int8 for the CPU (--precision int8; kept only if it passes parity vs fp32)")
    b.add_argument("--calib-data", default="auto", metavar="SPEC",
                   help="int8 calibration frames: auto/synthetic (built-in synthetic scenes), random, FILE.npz, or DIR of .npz")
    b.add_argument("--calib-frames", type=int, default=None, metavar="N",
                   help="int8 calibration frames (default 256 for TensorRT, 48 SynthAVS frames for --via onnxruntime)")
    b.add_argument("--workspace-gb", type=float, default=4.0, help="TensorRT workspace memory pool limit in GiB (default 4)")
    b.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to read and update (speeds up rebuilds)")
    b.set_defaults(func=_build)


def add_check(sub) -> None:
    c = sub.add_parser("check", help="compare a backend with the torch fp32 reference; non-zero exit on failure")
    c.add_argument("--weights", metavar="FILE", type=weights_arg, help="the artifact to check: .onnx, .plan, .ep, .pt2 or .safetensors")
    c.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt", "torch-tensorrt", "aotinductor"))
    c.add_argument("--reference", metavar="CKPT", type=weights_arg, help="reference checkpoint (default: the one the sidecar records)")
    c.add_argument("--precision", choices=("fp32", "tf32", "fp16", "bf16", "int8"),
                   help="backend precision: torch fp32/tf32/fp16/bf16; tensorrt (built through the cache) fp32/fp16/bf16/int8")
    c.add_argument("--mode", choices=("eager", "compile", "cudagraph"), help="torch backend mode")
    c.add_argument("--device", help="cpu | cuda (torch), cpu | cuda | tensorrt (onnxruntime EP)")
    c.add_argument("--threads", type=positive_int, help="CPU threads (onnxruntime intra-op / torch)")
    c.add_argument("--random-frames", type=non_negative_int, default=3, help="frames of random pixels and audio")
    c.add_argument("--synthetic-frames", type=non_negative_int, default=8, help="frames of SynthAVS scenes")
    c.add_argument("--seed", type=non_negative_int, default=0, help="seed of the check's frames")
    c.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    _trust_arg(c)
    c.set_defaults(func=_check)


def add_info(sub) -> None:
    i = sub.add_parser("info", help="say what an artifact is, and whether it matches its sidecar")
    i.add_argument("--weights", metavar="FILE", type=weights_arg, help="the artifact (.onnx, .plan, .ep, .pt2) or checkpoint (.safetensors)")
    i.add_argument("--json", action="store_true", help="print the sidecar (+ integrity) as JSON")
    _trust_arg(i)
    i.set_defaults(func=_info)


def _trust_arg(p) -> None:
    p.add_argument("--trust-package", action="store_true",
                   help="accept a .pt2 this machine did not build (loading one runs its native code; see engine/aoti_trust.py)")


def main(argv: list[str] | None = None) -> int:
    from .aoti_build import AOTIBuildError
    from .export import ExportError
    from .trt_build import BuildError
    from .trt_common import TensorRTUnavailable

    def checked(func):
        def call(args):
            try:
                return func(args)
            except (ExportError, BuildError, AOTIBuildError) as exc:  # the tool ran and the result is not good enough
                print(f"icf-engine {args.command}: FAILED: {exc}", file=sys.stderr)
                return 1
            except FileNotFoundError:
                raise
            except OSError as exc:  # a path that is a file where a folder is wanted, no permission, a full disk
                raise UserError(f"{exc.strerror or exc}: {exc.filename or ''}") from None
        return call

    parser = build_parser()
    for sp in parser._subparsers._group_actions[0].choices.values():  # exit 1 (not 2) when a check fails
        sp.set_defaults(func=checked(sp.get_default("func")))
    return run(parser, argv, errors=(spec.ArtifactError, TensorRTUnavailable, FileNotFoundError, ValueError, KeyError),
               log_format="icf-engine: %(message)s", default_level=logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
