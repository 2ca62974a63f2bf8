"""docs/results is what the README's numbers stand on: it names no machine's folders (issue 24.5)."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
MACHINE_PATH = re.compile(r"(?<![\w$.])/(tmp|work|home|root|Users)/")


def test_no_machine_paths_in_results():
    found = [f"{p.name}: {m.group(0)}" for p in sorted(RESULTS.iterdir()) if p.suffix in (".md", ".json", ".csv", ".txt")
             for m in MACHINE_PATH.finditer(p.read_text(errors="replace"))]
    assert not found, f"machine paths in docs/results (write them relative to the repo, or as $RUNS/...): {found[:10]}"
