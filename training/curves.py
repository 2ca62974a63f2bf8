"""Training curves as a table: ``log.jsonl`` (one JSON row per logged step, validation nested under
``val``) flattened into ``curves.csv`` beside it. One owner for the flattening rule: the trainer's CLI
writes the CSV with it and ``icf-bench plot`` reads logs with it."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def flatten(row: dict) -> dict:
    """{"step": 5, "val": {"mIoU": 0.4}} -> {"step": 5, "val_mIoU": 0.4} (numbers only)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update({f"{k}_{k2}": v2 for k2, v2 in v.items() if isinstance(v2, int | float)})
        elif isinstance(v, int | float):
            out[k] = v
    return out


def write_curves(log: Path) -> Path | None:
    """curves.csv beside log.jsonl: one row per logged step, validation columns prefixed val_;
    a torn line (a run still writing) is skipped. None when there is no log."""
    if not log.is_file():
        return None
    rows = []
    for line in log.read_text().splitlines():
        try:
            rows.append(flatten(json.loads(line)))
        except json.JSONDecodeError:
            continue
    keys = list(dict.fromkeys(k for r in rows for k in r))
    path = log.with_name("curves.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path
