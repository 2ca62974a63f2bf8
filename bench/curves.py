"""Training curves: ``icf-bench plot out/train/RUN`` (or its log.jsonl / curves.csv) draws the training
loss with its parts, the learning rate and the validation scores (each on its own axis) against the step,
into curves.png beside the log.

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

NOT_LOSS = {"step", "lr", "grad_norm", "time", "epoch", "clips_per_s", "seconds"}  # training-row columns that are not losses


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


def series(rows: list[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """What each panel draws: {"loss": {total and parts}, "lr": {"lr"}, "validation": {scores in [0, 1]}},
    each a list of (step, value). Counts such as val_clips are left out: on the mIoU axis they squash it."""
    train = [r for r in rows if "loss" in r and "step" in r]
    val = [r for r in rows if any(k.startswith("val_") for k in r) and "step" in r]
    parts = [k for k in dict.fromkeys(k for r in train for k in r) if k not in NOT_LOSS]
    scores = sorted({k for r in val for k in r if k.startswith("val_")})
    scores = [k for k in scores if k not in ("val_time", "val_seconds") and all(0.0 <= r[k] <= 1.0 for r in val if k in r)]
    return {
        "loss": {("total" if k == "loss" else k): [(r["step"], r[k]) for r in train if k in r]
                 for k in sorted(parts, key=lambda k: k != "loss")},  # the total first
        "lr": {"lr": [(r["step"], r["lr"]) for r in train if "lr" in r]},
        "validation": {k.removeprefix("val_"): [(r["step"], r[k]) for r in val if k in r] for k in scores},
    }


def plot_training(src: Path, out: Path | None = None) -> list[Path]:
    path = _source(Path(src))
    rows = read_rows(path)
    panels = series(rows)
    if not any(panels["loss"].values()) and not panels["validation"]:
        raise ValueError(f"{path} has no training or validation rows")
    out = Path(out) if out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    labels = {"loss": ("loss", "training loss and its parts"), "lr": ("learning rate", "learning rate"),
              "validation": ("score (0-1)", "validation")}
    for ax, (name, lines) in zip(axes, panels.items(), strict=True):
        for label, pts in lines.items():
            if pts:
                ax.plot(*zip(*pts, strict=True), lw=1.6 if label == "total" else 1, label=label,
                        **({"marker": "o", "ms": 3} if name == "validation" else {}))
        ax.set(xlabel="step", ylabel=labels[name][0], title=labels[name][1])
        if name == "validation":
            ax.set_ylim(0, 1.02)
        if len(lines) > 1 or name == "validation" and lines:
            ax.legend(fontsize=7)
    fig.suptitle(str(path), fontsize=8)
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [png]
