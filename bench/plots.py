"""PNG plots for the reports (matplotlib, Agg backend: no display needed).

- model / baseline / gpu: latency distribution per backend (box = p25..p75, whiskers p5..p95,
  a dot at p99), one panel per model, log time axis so 0.5 ms and 200 ms rows both read;
- transport: one-way p50 (bars to p95) against frame size, per transport and copy mode;
- pipeline: where the time goes: per-stage means stacked into one bar (means add up; the
  dashed line is the end-to-end mean), then each stage's p50 and p95.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # before pyplot: headless machines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# matplotlib 3.10 replaced boxplot(vert=False) by orientation="horizontal"
HORIZONTAL = {"orientation": "horizontal"} if tuple(int(v) for v in matplotlib.__version__.split(".")[:2]) >= (3, 10) else {"vert": False}


def _footer(fig, doc: dict) -> None:
    m = doc.get("machine", {})
    where = m.get("gpu") or f"{m.get('cpu', '?')} x{m.get('cores', '?')}"
    fig.text(0.01, 0.005, f"{doc.get('command', '')} | {where} | torch {doc.get('libraries', {}).get('torch', '?')} | {doc.get('created', '')}",
             fontsize=7, color="0.4")


def _save(fig, doc: dict, path: Path, *, bottom: float) -> Path:
    """Lays the figure out above a ``bottom`` strip for the footer, writes it and frees it."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    _footer(fig, doc)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(doc: dict, path: Path) -> Path | None:
    rows = [r for r in doc.get("rows", []) if r.get("status") == "ok" and r.get("samples_ms")]
    if not rows:
        return None
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} @ {r['resolution']}", []).append(r)
    height = sum(0.45 * len(g) + 0.9 for g in groups.values()) + 0.6
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, height), squeeze=False)
    for ax, (title, grp) in zip(axes[:, 0], groups.items()):
        grp = sorted(grp, key=lambda r: -r["p50_ms"])
        data = [np.asarray(r["samples_ms"]) for r in grp]
        ax.boxplot(data, whis=(5, 95), showfliers=False, widths=0.6, **HORIZONTAL)
        ax.scatter([np.percentile(d, 99) for d in data], range(1, len(data) + 1), marker=".", color="C3", zorder=3, label="p99")
        for y, (r, d) in enumerate(zip(grp, data), start=1):  # label right of the p99 dot: never on the box
            ax.annotate(f"p50 {r['p50_ms']:.3g} ms", (np.percentile(d, 99), y), xytext=(6, -3), textcoords="offset points", fontsize=7)
        ax.margins(x=0.25)
        ax.set_yticks(range(1, len(grp) + 1), [r["label"] for r in grp], fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("latency per step (ms, log scale); box p25-p75, whiskers p5-p95, dot p99", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    return _save(fig, doc, path, bottom=0.02)


def plot_transport(doc: dict, path: Path) -> Path | None:
    rows = [r for r in doc.get("rows", []) if r.get("status") == "ok"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series: dict[str, list[dict]] = {}
    for r in rows:
        series.setdefault(f"{r['transport']} {r['copy_mode']}", []).append(r)
    for i, (name, grp) in enumerate(sorted(series.items())):
        grp = sorted(grp, key=lambda r: r["frame_MB"])
        x = np.array([r["frame_MB"] for r in grp]) * (1 + 0.02 * (i - len(series) / 2))  # dodge overlapping bars
        p50 = np.array([r["p50_ms"] for r in grp])
        p95 = np.array([r["p95_ms"] for r in grp])
        ax.errorbar(x, p50, yerr=[np.zeros_like(p50), p95 - p50], marker="o", capsize=3, label=name)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("frame size (MB)")
    ax.set_ylabel("one-way latency (ms, p50; bar to p95)")
    ax.set_title("ZeroMQ one-way latency per frame")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, doc, path, bottom=0.03)


def plot_stages(doc: dict, path: Path) -> Path | None:
    stages = doc.get("stages") or []
    stages = [s for s in stages if s.get("p50_ms") is not None and np.isfinite(s["p50_ms"])]
    if not stages:
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.8), gridspec_kw={"height_ratios": [1, 2]})
    left = 0.0
    for i, s in enumerate(stages):
        # means add up (p50s do not): the stack is the mean frame, comparable with the e2e mean
        ax1.barh(0, s["mean_ms"], left=left, color=f"C{i % 10}", label=s["stage"])
        left += s["mean_ms"]
    e2e = (doc.get("end_to_end") or {}).get("capture_to_mask", {}).get("mean_ms")
    if e2e is not None and np.isfinite(e2e):  # the gap to the stacked bar is time no stage stamps
        ax1.axvline(e2e, color="k", ls="--", lw=1.2, label="capture->mask mean")
    ax1.set_yticks([])
    ax1.set_xlabel("mean time per frame, stage by stage (ms)")
    ax1.set_title("Where the time goes per frame")
    ax1.legend(fontsize=7, ncol=min(len(stages), 5), loc="upper center", bbox_to_anchor=(0.5, -0.45))
    names = [s["stage"] for s in stages]
    y = np.arange(len(stages))
    ax2.barh(y - 0.2, [s["p50_ms"] for s in stages], height=0.4, label="p50")
    ax2.barh(y + 0.2, [s.get("p95_ms") or 0 for s in stages], height=0.4, label="p95")
    ax2.set_yticks(y, names, fontsize=8)
    ax2.set_xlabel("ms")
    ax2.legend(fontsize=7)
    ax2.grid(axis="x", alpha=0.3)
    return _save(fig, doc, path, bottom=0.03)


def plot_report(doc: dict, out_dir: Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    made = []
    command = doc.get("command")
    if command == "transport":
        made.append(plot_transport(doc, out_dir / f"{stem}_latency.png"))
    elif command == "pipeline":
        made.append(plot_stages(doc, out_dir / f"{stem}_stages.png"))
    else:
        made.append(plot_latency(doc, out_dir / f"{stem}_latency.png"))
    return [p for p in made if p is not None]
