"""Plots of one pipeline run (``icf-stream demo/run/live`` -> report.json + metrics.jsonl):
``icf-bench plot out/demo/report.json`` draws capture->mask latency as a histogram and over the run's time
(frames dropped before each delivered one marked), each stage's p50 / p95, and where the frames went
(processed, and the drops by cause), into ``<stem>_run.png`` beside the report."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def is_run_report(doc: dict) -> bool:
    """A stream run's report (stream/graph/report.py), as opposed to an icf-bench one (which names its command)."""
    return "command" not in doc and isinstance(doc.get("frames"), dict) and "latency_ms" in doc


def metrics_path(doc: dict, report: Path) -> Path | None:
    """The run's metrics.jsonl: the one its config names, else the one beside the report."""
    for cand in (doc.get("config", {}).get("metrics"), report.with_name("metrics.jsonl")):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def read_metrics(path: Path | None) -> list[dict]:
    """Per-frame lines (those with a seq); a torn last line (a run still writing) is skipped."""
    rows = []
    for line in path.read_text().splitlines() if path else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "seq" in row and row.get("capture_to_mask_ms") is not None:
            rows.append(row)
    return rows


def run_panels(doc: dict, rows: list[dict]) -> dict:
    """The numbers each panel draws (kept apart from drawing so they can be checked)."""
    lat = doc.get("latency_ms") or {}
    stages = [(k, v) for k, v in lat.items() if isinstance(v, dict) and v.get("count") and k not in ("capture_to_mask", "capture_to_output")]
    f = doc.get("frames", {})
    drops = {k: v for k, v in (f.get("dropped_by") or {}).items() if v}
    return {
        "latency": [r["capture_to_mask_ms"] for r in rows],
        "over_time": [(r["pts_ms"] / 1000, r["capture_to_mask_ms"], r.get("dropped_before") or 0) for r in rows],
        "stages": [(k, v.get("p50_ms"), v.get("p95_ms")) for k, v in stages],
        "frames": {"processed": f.get("processed", 0), **{f"dropped: {k}": v for k, v in drops.items()}},
    }


def plot_run(doc: dict, report: Path, out_dir: Path) -> list[Path]:
    src = metrics_path(doc, report)
    p = run_panels(doc, read_metrics(src))
    fig, ((a1, a2), (a3, a4)) = plt.subplots(2, 2, figsize=(13, 8))
    if p["latency"]:
        a1.hist(p["latency"], bins=min(60, max(10, len(p["latency"]) // 5)), color="C0")
        for q, ls in ((50, "-"), (95, "--"), (99, ":")):
            a1.axvline(np.percentile(p["latency"], q), color="k", ls=ls, lw=1, label=f"p{q} {np.percentile(p['latency'], q):.1f} ms")
        a1.legend(fontsize=7)
        t, ms, dropped = (np.asarray(x) for x in zip(*p["over_time"], strict=True))
        a2.plot(t, ms, lw=0.8, color="C0", label="capture->mask")
        hit = dropped > 0
        if hit.any():
            a2.scatter(t[hit], ms[hit], s=8 + 4 * np.minimum(dropped[hit], 10), color="C3", zorder=3, label="frames dropped before it")
        a2.legend(fontsize=7)
    else:
        for ax in (a1, a2):
            ax.text(0.5, 0.5, "no metrics.jsonl for this run (--metrics FILE, or --out DIR)", ha="center", va="center", fontsize=8)
    a1.set(xlabel="capture -> mask (ms)", ylabel="frames", title="latency per delivered frame")
    a2.set(xlabel="stream time (s)", ylabel="capture -> mask (ms)", title="latency over the run")
    if p["stages"]:
        names = [s[0] for s in p["stages"]]
        y = np.arange(len(names))
        a3.barh(y - 0.2, [s[1] or 0 for s in p["stages"]], height=0.4, label="p50")
        a3.barh(y + 0.2, [s[2] or 0 for s in p["stages"]], height=0.4, label="p95")
        a3.set_yticks(y, names, fontsize=8)
        a3.invert_yaxis()  # pipeline order, top to bottom
        a3.legend(fontsize=7)
    a3.set(xlabel="ms", title="per stage")
    names = list(p["frames"])
    a4.barh(range(len(names)), list(p["frames"].values()), color=["C2"] + ["C3"] * (len(names) - 1))
    a4.set_yticks(range(len(names)), names, fontsize=8)
    a4.invert_yaxis()
    sent = doc.get("frames", {}).get("sent")
    a4.set(xlabel="frames", title=f"where the {sent} frames sent went" if sent is not None else "frames")
    fps = doc.get("fps") or {}
    model = doc.get("model")
    model = (model.get("model") or model.get("artifact", "")) if isinstance(model, dict) else (model or "")
    fig.suptitle(f"{report}: {model} | {doc.get('transport', '')} | source {fps.get('source', '?')} fps, "
                 f"processed {fps.get('processed', '?')} fps" + (f" | metrics {src.name}" if src else ""), fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{report.stem}_run.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [png]
