"""Where the engine cache lives and how one entry is locked: a leaf both the cache (engine/cache.py) and the
registry of packages built here (engine/aoti_trust.py) use, so neither imports the other."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from icfcli.paths import user_cache_dir  # the rule lives in icfcli (model/ uses it too)


def cache_dir() -> Path:
    """Engines, exports and packages: $ICF_ENGINE_CACHE, else user_cache_dir()/engines."""
    root = os.environ.get("ICF_ENGINE_CACHE")
    return Path(root) if root else user_cache_dir() / "engines"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Holds ``folder``/.lock exclusively: blocks while another process builds or records in this folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
