"""Which AOTInductor packages this machine may load: the ones it built itself.

A ``.pt2`` runs native code the moment it is loaded (its shared library's constructors), and its
sidecar proves integrity, not authenticity: anyone can replace the library and recompute the
sidecar's digests. So every package that passes its build gate here (engine/aoti_build.py) has its
sha256 added to a local registry, ``aoti-built.json`` in the engine cache folder
(engine.cache.cache_dir), and a package whose digest is not in it is refused before it is opened,
unless the caller passes an explicit trust flag (``--trust-package``, ``trust_package=True``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path

from .cache_folder import cache_dir, locked
from .spec import ArtifactError, file_sha256

REGISTRY_NAME = "aoti-built.json"
MAX_REGISTRY_BYTES = 4 << 20  # ~20,000 entries; a registry is only ever written by the builder here


def registry_path() -> Path:
    return cache_dir() / REGISTRY_NAME


def _read(path: Path) -> dict[str, dict]:
    """{sha256: {"path", "built"}}; a missing, oversized or unreadable registry trusts nothing."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_REGISTRY_BYTES + 1)
        doc = json.loads(raw) if len(raw) <= MAX_REGISTRY_BYTES else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def record_built(package: str | Path) -> None:
    """Adds a package that passed its build gate on this machine (read, add, atomic replace)."""
    path = registry_path()
    with locked(path.parent):  # two builds at once must not drop each other's entry
        doc = _read(path)
        doc[file_sha256(package)] = {"path": str(Path(package).resolve()),
                                     "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(prefix=".aoti-built-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def require_built_here(package: str | Path, *, trust: bool = False) -> None:
    """Refuses a package this machine did not build (before anything of it is loaded)."""
    if trust or file_sha256(package) in _read(registry_path()):
        return
    raise ArtifactError(
        f"{package} was not built on this machine (its sha256 is not in {registry_path()}), and loading an AOTInductor "
        f"package runs its native code: rebuild it here with `icf-engine build --via aotinductor --weights CKPT`, "
        f"or pass --trust-package if you trust whoever built it")
