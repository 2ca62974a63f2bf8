"""Build once, reuse: TensorRT engines and checkpoint exports in a cache folder.

Folder: $ICF_ENGINE_CACHE, else ``engines/`` in the user cache folder of this project (``user_cache_dir()``:
$ICF_CACHE, else $XDG_CACHE_HOME/icf-avs, else ~/.cache/icf-avs). This module is the one place that rule lives.
- engines: ``<onnx sha256[:16]>-<precision>-trt<version>-<gpu>/<model>.plan`` (+ .json); the key is
  (ONNX sha256, precision, TensorRT version, GPU name) because a plan is only valid for exactly that;
- one timing cache per (TensorRT version, GPU) shared by all builds, so rebuilds are faster;
- ONNX exports of checkpoints: ``onnx/<checkpoint sha256[:16]>/<model>.onnx`` (+ .json), of registry
  models (untrained, seeded): ``onnx/registry-<name>-seed<seed>/``; batch-B exports (many streams, one
  model; B > 1) of a checkpoint: ``onnx/<checkpoint sha256[:16]>-b<B>/<stem>-b<B>.onnx``;
- AOTInductor packages: ``aoti/<checkpoint sha256[:16]>-<device>-<precision>-torch<version>-<gpu or cpu ISA>/<model>.pt2``
  (+ .json): a package is only valid for that torch build and GPU / CPU vector ISA.
``resolve(artifact, want)`` is the only place that maps checkpoint -> ONNX -> plan / package; runtime and stream call it.
A file lock per entry makes concurrent processes (two streams starting together) build only once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from icfcli.paths import user_cache_dir  # the rule lives in icfcli (model/ uses it too)

from . import spec
from .cache_folder import cache_dir, locked
from .spec import ArtifactError

log = logging.getLogger("icf.engine")


def _prune(folder: Path, base: Path) -> None:
    """After a failed export: the entry's folder (its lock only) goes, and every cache folder that is
    now empty with it, up to ``base`` (the default cache: up to the user cache folder), so a mistake
    such as an unknown model name leaves nothing behind."""
    (folder / ".lock").unlink(missing_ok=True)
    top = user_cache_dir() if base == cache_dir() and user_cache_dir() in base.parents else base
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:  # not empty (other entries) or not ours to remove
            return
        if path == top:
            return


def _valid(artifact: Path, sha_of: tuple[str, str]) -> bool:
    """True if artifact + sidecar exist and the artifact's bytes match the sidecar."""
    if not artifact.is_file():
        return False
    try:
        doc = spec.read_sidecar(artifact)
        return spec.file_sha256(artifact) == doc[sha_of[0]][sha_of[1]]
    except (spec.ArtifactError, KeyError):
        return False


def plan_key(onnx_sha256: str, precision: str, trt_version: str, gpu_name: str) -> str:
    from .trt_common import slug

    return f"{onnx_sha256[:16]}-{precision}-trt{trt_version}-{slug(gpu_name)}"


def get_or_build(onnx_path: str | Path, precision: str = "fp16", *, root: str | Path | None = None, **build_kw: Any) -> Path:
    """The cached TensorRT plan for this ONNX at this precision on this GPU + TensorRT; built if absent.

    build_kw go to engine.trt_build.build_engine (workspace_gb, calib_data, calib_frames).
    """
    from .trt_build import build_engine
    from .trt_common import gpu_identity, import_tensorrt, slug

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    doc = spec.read_sidecar(onnx_path)
    spec.verify_onnx(onnx_path, doc)
    gpu = gpu_identity()
    base = Path(root) if root else cache_dir()
    folder = base / plan_key(doc["onnx"]["sha256"], precision, trt.__version__, gpu["gpu_name"])
    plan = folder / f"{onnx_path.stem}.plan"
    with locked(folder):
        if _valid(plan, ("tensorrt", "plan_sha256")):
            log.info("engine cache hit: %s", plan)
            return plan
        log.info("engine cache miss: building %s (%s) for %s; this takes a while once", plan, precision, gpu["gpu_name"])
        timing = base / f"timing-trt{trt.__version__}-{slug(gpu['gpu_name'])}.cache"
        with locked(base / ".timing"):  # the timing cache file is shared by every build on this GPU
            build_engine(onnx_path, plan, precision=precision, timing_cache=timing, **build_kw)
    return plan


def onnx_for_checkpoint(checkpoint: str | Path, *, root: str | Path | None = None, batch: int = 1) -> Path:
    """An exported, verified ONNX of a .safetensors checkpoint at batch size ``batch``, exported on first use."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"weights file {checkpoint} not found")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, not {batch!r}")
    sha = spec.file_sha256(checkpoint)
    base = Path(root) if root else cache_dir()
    folder = base / "onnx" / (sha[:16] if batch == 1 else f"{sha[:16]}-b{batch}")
    try:
        with locked(folder):
            for existing in sorted(folder.glob("*.onnx")):
                if not _valid(existing, ("onnx", "sha256")):
                    continue
                doc = spec.read_sidecar(existing)
                # exports written before the sidecar named the frame ring's rate are re-made: the
                # checkpoint's training data may say another rate than the old default (model.weights)
                if ((doc.get("checkpoint") or {}).get("sha256") == sha and "frame_ring_rate" in (doc.get("state") or {})
                        and doc["inputs"][0]["shape"][0] == batch):
                    log.info("ONNX cache hit: %s", existing)
                    return existing
            log.info("ONNX cache miss: exporting %s (batch %d) into %s", checkpoint, batch, folder)
            if batch == 1:
                return _export(["--weights", str(checkpoint)], folder, str(checkpoint))
            return _export(["--weights", str(checkpoint), "--sizes", str(batch)], folder, f"{checkpoint} at batch {batch}", tool="engine.batching")
    except ArtifactError:
        _prune(folder, base)
        raise


def onnx_for_model(name: str, *, seed: int = 0, root: str | Path | None = None, batch: int = 1) -> Path:
    """An exported, verified ONNX of a registry model with seeded untrained weights (for trying a
    pipeline), exported on first use; the key is (name, seed) and its weights are saved beside
    (a batch > 1 export is made from those weights, so every batch size runs the same network)."""
    if batch != 1:
        first = onnx_for_model(name, seed=seed, root=root)
        ckpt = spec.resolve_checkpoint(spec.read_sidecar(first), first)
        if ckpt is None:
            raise ArtifactError(f"{first} records no weights file, so no batch-{batch} export can be made; delete it and retry")
        return onnx_for_checkpoint(ckpt, root=root, batch=batch)
    base = Path(root) if root else cache_dir()
    folder = base / "onnx" / f"registry-{name}-seed{seed}"
    try:
        with locked(folder):
            for existing in sorted(folder.glob("*.onnx")):
                if _valid(existing, ("onnx", "sha256")):
                    log.info("ONNX cache hit: %s", existing)
                    return existing
            log.info("ONNX cache miss: exporting registry model %s into %s", name, folder)
            return _export(["--model", name, "--seed", str(seed)], folder, f"registry model {name}")
    except ArtifactError:
        _prune(folder, base)
        raise


EXPORTING = "icf-engine: exporting "  # the line engine.export logs when it starts on a network it has built


def _export(source: list[str], folder: Path, what: str, tool: str = "engine") -> Path:
    """``icf-engine export`` (or ``python -m TOOL``) in a child process: the caller (a stream supervisor, an ONNX
    Runtime service) never imports torch or model/, and a crash while exporting cannot take it down."""
    for stale in folder.glob("*.onnx"):  # a half-written or tampered export is replaced, not reused
        stale.unlink()
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p))
    command = [sys.executable, "-m", "engine", "export"] if tool == "engine" else [sys.executable, "-m", tool]
    announce = f"icf-engine: exporting {what} to ONNX under {folder} (once; cached)"
    if tool != "engine":  # only engine.export says when it has built the network
        print(announce, file=sys.stderr, flush=True)
    proc = subprocess.Popen([*command, *source, "--out", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:  # "exporting" is said once the child has the network (an unknown name fails first)
        lines.append(line)
        if tool == "engine" and line.startswith(EXPORTING):
            print(announce, file=sys.stderr, flush=True)
    proc.wait()
    found = sorted(folder.glob("*.onnx"))
    if proc.returncode != 0 or not found:
        raise ArtifactError(f"icf-engine export failed for {what} (exit {proc.returncode}):\n{''.join(lines)[-2000:]}")
    return found[0]


def resolve(artifact: str | Path, want: str, *, precision: str = "fp16", device: str = "cpu", batch: int = 1) -> Path:
    """The one place that turns what a user gave into what a backend loads.

    ``batch`` (want="onnx" or "package"): the static batch size of the export or package (many streams,
    one model); a batch > 1 one of a checkpoint, or of the checkpoint an .onnx records, is made once and cached.
    Every file is read and hashed once per process (engine.spec), so the backend that opens what this
    returns does not read or hash it again.
    ``want``: "onnx" (a checkpoint is exported once; an .onnx is itself) or "plan" (an ONNX, exported
    from a checkpoint if need be, built once into a TensorRT plan for this GPU; a plan is itself) or
    "package" (the checkpoint, or the one an .onnx records, compiled once into an AOTInductor .pt2 for
    ``device``; a .pt2 is itself).
    Everything goes through this cache: locked per entry, checked against its sidecar.
    """
    path = Path(artifact)
    kind = path.suffix
    if batch != 1 and want == "package":
        if kind == ".pt2":
            if spec.read_sidecar(path)["inputs"][0]["shape"][0] == batch:
                return path
            raise ArtifactError(f"{path.name} is a package of another batch size; give the checkpoint to build a batch-{batch} one")
        if kind in (".onnx", ".safetensors"):
            return package_for(path, device, precision, batch=batch)
    if batch != 1:
        if want != "onnx":
            raise ValueError(f"resolve: batch {batch} exists for want='onnx' or 'package' only (engines are built per batch from those)")
        if kind == ".onnx":
            doc = spec.read_sidecar(path)
            if doc["inputs"][0]["shape"][0] == batch:
                return path
            ckpt = spec.resolve_checkpoint(doc, path)
            if ckpt is None:
                raise ArtifactError(f"{path.name} records no checkpoint, so no batch-{batch} export can be made from it; "
                                    f"give the .safetensors checkpoint")
            return onnx_for_checkpoint(ckpt, batch=batch)
        if kind == ".safetensors":
            return onnx_for_checkpoint(path, batch=batch)
        raise ArtifactError(f"{path.name}: a batch-{batch} export needs a .safetensors checkpoint or an .onnx that records one")
    if want == "onnx":
        if kind == ".safetensors":
            return onnx_for_checkpoint(path)
        if kind == ".onnx":
            return path
    elif want == "plan":
        if kind in (".plan", ".engine"):
            return path
        if kind in (".onnx", ".safetensors"):
            return get_or_build(resolve(path, "onnx"), precision)
    elif want == "package":
        if kind == ".pt2":
            return path
        if kind in (".onnx", ".safetensors"):
            return package_for(path, device, precision)
    else:
        raise ValueError(f"resolve: want 'onnx', 'plan' or 'package', not {want!r}")
    raise ArtifactError(f"{path.name}: cannot make a .{want} from a '{kind}' artifact; give a .safetensors checkpoint or an .onnx")


def int8_folder(fp32_onnx: Path, root: str | Path | None = None) -> Path:
    return (Path(root) if root else cache_dir()) / "onnx" / f"{spec.read_sidecar(fp32_onnx)['onnx']['sha256'][:16]}-int8"


def build_int8(source: str | Path, *, out_dir: str | Path | None = None, calib_frames: int = 48) -> tuple[Path, dict[str, Any]]:
    """The CPU int8 graph of a checkpoint or fp32 .onnx (engine.quantize: calibrated, kept only if it
    passes parity), into ``out_dir`` or the cache entry beside its fp32 export (where ``int8_for`` finds it)."""
    from .quantize import build_int8 as quantise

    fp32 = resolve(source, "onnx")
    folder = Path(out_dir) if out_dir else int8_folder(fp32)
    with locked(folder):
        return quantise(fp32, folder, calib_frames=calib_frames)


def int8_for(fp32_onnx: str | Path) -> Path | None:
    """The cached int8 graph of this fp32 export if one was built and passed its parity rule, else None."""
    from .quantize import passed_int8

    folder = int8_folder(Path(fp32_onnx))
    for path in sorted(folder.glob("*-int8.onnx")) if folder.is_dir() else []:
        if passed_int8(path):
            return path
    return None


def package_key(checkpoint_sha256: str, device: str, precision: str, ident: dict[str, Any]) -> str:
    from .trt_common import slug

    target = ident.get("gpu_name") if device == "cuda" else f"{ident.get('cpu_arch')}-{ident.get('cpu_vec_isa') or 'scalar'}"
    return f"{checkpoint_sha256[:16]}-{device}-{precision}-torch{slug(ident['torch_version'])}-{slug(str(target))}"


def package_for(source: str | Path, device: str = "cpu", precision: str = "fp32", *, root: str | Path | None = None, batch: int = 1) -> Path:
    """The cached AOTInductor package of a checkpoint (or of the checkpoint an .onnx records) at static
    batch size ``batch``, compiled on first use."""
    from .aoti_backend import verify_package
    from .aoti_build import build_package, source_checkpoint
    from .aoti_common import target_identity

    ckpt = source_checkpoint(source)
    ident = target_identity(device)
    key = package_key(spec.file_sha256(ckpt), device, precision, ident) + ("" if batch == 1 else f"-b{batch}")
    folder = (Path(root) if root else cache_dir()) / "aoti" / key
    with locked(folder):
        for existing in sorted(folder.glob("*.pt2")):
            try:
                if verify_package(existing)["inputs"][0]["shape"][0] != batch:
                    raise spec.ArtifactError(f"{existing.name} is not a batch-{batch} package")
                log.info("AOTInductor cache hit: %s", existing)
                return existing
            except (spec.ArtifactError, KeyError) as exc:
                log.warning("AOTInductor cache entry %s is unusable (%s); rebuilding", existing, exc)
        log.info("AOTInductor cache miss: compiling %s for %s %s into %s (minutes, once)", ckpt, device, precision, folder)
        return build_package(ckpt, folder, device=device, precision=precision, batch=batch)
