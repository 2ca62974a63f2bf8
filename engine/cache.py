"""Build once, reuse: TensorRT engines and checkpoint exports in a cache folder.

Folder: $ICF_ENGINE_CACHE, else ``engines/`` in the user cache folder of this project (``user_cache_dir()``:
$ICF_CACHE, else $XDG_CACHE_HOME/icf-avs, else ~/.cache/icf-avs). This module is the one place that rule lives.
- engines: ``<onnx sha256[:16]>-<precision>-trt<version>-<gpu>/<model>.plan`` (+ .json); the key is
  (ONNX sha256, precision, TensorRT version, GPU name) because a plan is only valid for exactly that;
- one timing cache per (TensorRT version, GPU) shared by all builds, so rebuilds are faster;
- ONNX exports of checkpoints: ``onnx/<checkpoint sha256[:16]>/<model>.onnx`` (+ .json), of registry
  models (untrained, seeded): ``onnx/registry-<name>-seed<seed>/``;
- AOTInductor packages: ``aoti/<checkpoint sha256[:16]>-<device>-<precision>-torch<version>-<gpu or cpu ISA>/<model>.pt2``
  (+ .json): a package is only valid for that torch build and GPU / CPU vector ISA.
``resolve(artifact, want)`` is the only place that maps checkpoint -> ONNX -> plan / package; runtime and stream call it.
A file lock per entry makes concurrent processes (two streams starting together) build only once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icfcli.paths import user_cache_dir  # the rule lives in icfcli (model/ uses it too)

from . import spec
from .spec import ArtifactError

log = logging.getLogger("icf.engine")


def cache_dir() -> Path:
    """Engines, exports and packages: $ICF_ENGINE_CACHE, else user_cache_dir()/engines."""
    root = os.environ.get("ICF_ENGINE_CACHE")
    return Path(root) if root else user_cache_dir() / "engines"


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


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks while another process builds this entry
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    with _locked(folder):
        if _valid(plan, ("tensorrt", "plan_sha256")):
            log.info("engine cache hit: %s", plan)
            return plan
        log.info("engine cache miss: building %s (%s) for %s; this takes a while once", plan, precision, gpu["gpu_name"])
        timing = base / f"timing-trt{trt.__version__}-{slug(gpu['gpu_name'])}.cache"
        with _locked(base / ".timing"):  # the timing cache file is shared by every build on this GPU
            build_engine(onnx_path, plan, precision=precision, timing_cache=timing, **build_kw)
    return plan


def onnx_for_checkpoint(checkpoint: str | Path, *, root: str | Path | None = None) -> Path:
    """An exported, verified ONNX of a .safetensors checkpoint, exported on first use."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"weights file {checkpoint} not found")
    sha = spec.file_sha256(checkpoint)
    base = Path(root) if root else cache_dir()
    folder = base / "onnx" / sha[:16]
    try:
        with _locked(folder):
            for existing in sorted(folder.glob("*.onnx")):
                # exports written before the sidecar named the frame ring's rate are re-made: the
                # checkpoint's training data may say another rate than the old default (model.weights)
                if (_valid(existing, ("onnx", "sha256")) and (spec.read_sidecar(existing).get("checkpoint") or {}).get("sha256") == sha
                        and "frame_ring_rate" in (spec.read_sidecar(existing).get("state") or {})):
                    log.info("ONNX cache hit: %s", existing)
                    return existing
            log.info("ONNX cache miss: exporting %s into %s", checkpoint, folder)
            return _export(["--weights", str(checkpoint)], folder, str(checkpoint))
    except ArtifactError:
        _prune(folder, base)
        raise


def onnx_for_model(name: str, *, seed: int = 0, root: str | Path | None = None) -> Path:
    """An exported, verified ONNX of a registry model with seeded untrained weights (for trying a
    pipeline), exported on first use; the key is (name, seed) and its weights are saved beside."""
    base = Path(root) if root else cache_dir()
    folder = base / "onnx" / f"registry-{name}-seed{seed}"
    try:
        with _locked(folder):
            for existing in sorted(folder.glob("*.onnx")):
                if _valid(existing, ("onnx", "sha256")):
                    log.info("ONNX cache hit: %s", existing)
                    return existing
            log.info("ONNX cache miss: exporting registry model %s into %s", name, folder)
            return _export(["--model", name, "--seed", str(seed)], folder, f"registry model {name}")
    except ArtifactError:
        _prune(folder, base)
        raise


def _export(source: list[str], folder: Path, what: str) -> Path:
    """``icf-engine export`` in a child process: the caller (a stream supervisor, an ONNX Runtime
    service) never imports torch or model/, and a crash while exporting cannot take it down."""
    print(f"icf-engine: exporting {what} to ONNX under {folder} (once; cached)", file=sys.stderr)
    for stale in folder.glob("*.onnx"):  # a half-written or tampered export is replaced, not reused
        stale.unlink()
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-m", "engine", "export", *source, "--out", str(folder)],
                          capture_output=True, text=True, env=env)
    found = sorted(folder.glob("*.onnx"))
    if proc.returncode != 0 or not found:
        raise ArtifactError(f"icf-engine export failed for {what} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return found[0]


def resolve(artifact: str | Path, want: str, *, precision: str = "fp16", device: str = "cpu") -> Path:
    """The one place that turns what a user gave into what a backend loads.

    ``want``: "onnx" (a checkpoint is exported once; an .onnx is itself) or "plan" (an ONNX, exported
    from a checkpoint if need be, built once into a TensorRT plan for this GPU; a plan is itself) or
    "package" (the checkpoint, or the one an .onnx records, compiled once into an AOTInductor .pt2 for
    ``device``; a .pt2 is itself).
    Everything goes through this cache: locked per entry, checked against its sidecar.
    """
    path = Path(artifact)
    kind = path.suffix
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


def package_key(checkpoint_sha256: str, device: str, precision: str, ident: dict[str, Any]) -> str:
    from .trt_common import slug

    target = ident.get("gpu_name") if device == "cuda" else f"{ident.get('cpu_arch')}-{ident.get('cpu_vec_isa') or 'scalar'}"
    return f"{checkpoint_sha256[:16]}-{device}-{precision}-torch{slug(ident['torch_version'])}-{slug(str(target))}"


def package_for(source: str | Path, device: str = "cpu", precision: str = "fp32", *, root: str | Path | None = None) -> Path:
    """The cached AOTInductor package of a checkpoint (or of the checkpoint an .onnx records), compiled on first use."""
    from .aoti_backend import verify_package
    from .aoti_build import build_package, source_checkpoint
    from .aoti_common import target_identity

    ckpt = source_checkpoint(source)
    ident = target_identity(device)
    folder = (Path(root) if root else cache_dir()) / "aoti" / package_key(spec.file_sha256(ckpt), device, precision, ident)
    with _locked(folder):
        for existing in sorted(folder.glob("*.pt2")):
            try:
                verify_package(existing)  # sha256 + built-for checks; a stale or tampered entry is rebuilt
                log.info("AOTInductor cache hit: %s", existing)
                return existing
            except (spec.ArtifactError, KeyError) as exc:
                log.warning("AOTInductor cache entry %s is unusable (%s); rebuilding", existing, exc)
        log.info("AOTInductor cache miss: compiling %s for %s %s into %s (minutes, once)", ckpt, device, precision, folder)
        return build_package(ckpt, folder, device=device, precision=precision)
