"""Training curves: ``icf-bench plot out/train/RUN`` (or its log.jsonl / curves.csv) draws the training
loss and the validation scores against the step, into curves.png beside the log.

log.jsonl (written by ``icf-train fit``) has two kinds of line: training rows {"step", "loss", "lr", ...}
and validation rows {"step", "val": {"mIoU": ...}, "time"}; curves.csv (written beside it at the end of a
run) is the same table flattened (validation columns prefixed ``val_``). Both are read here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

from training.curves import flatten

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path: Path) -> list[dict]:
    """Rows of a log.jsonl or curves.csv; a torn last line (a run still writing) is skipped."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(flatten(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return rows


def _source(src: Path) -> Path:
    if src.is_dir():
        for name in ("log.jsonl", "curves.csv"):
            if (src / name).is_file():
                return src / name
        raise FileNotFoundError(f"{src} has no log.jsonl or curves.csv (the folder of an `icf-train fit` run has)")
    return src


def plot_training(src: Path, out: Path | None = None) -> list[Path]:
    path = _source(Path(src))
    rows = read_rows(path)
    train = [r for r in rows if "loss" in r and "step" in r]
    val = [r for r in rows if any(k.startswith("val_") for k in r) and "step" in r]
    if not train and not val:
        raise ValueError(f"{path} has no training or validation rows")
    out = Path(out) if out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_l.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax_l.set(xlabel="step", ylabel="training loss", title="loss")
    keys = sorted({k for r in val for k in r if k.startswith("val_") and k != "val_time"})
    for k in keys:
        pts = [(r["step"], r[k]) for r in val if k in r]
        ax_v.plot(*zip(*pts, strict=True), marker="o", ms=3, label=k.removeprefix("val_"))
    ax_v.set(xlabel="step", title="validation")
    if keys:
        ax_v.legend(fontsize=7)
    fig.suptitle(str(path), fontsize=8)
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [png]
