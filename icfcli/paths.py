"""The project's user cache folder: the one rule, here so model/ (converted aisfx weights) and engine/
(engines, exports) share it without importing each other (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """This project's user cache: $ICF_CACHE, else $XDG_CACHE_HOME/icf-avs, else ~/.cache/icf-avs."""
    if os.environ.get("ICF_CACHE"):
        return Path(os.environ["ICF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "icf-avs"
