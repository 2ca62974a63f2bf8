"""The run report: saved as JSON, printed as a short table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# stages worth a row in the printed table, in pipeline order
TABLE_STAGES = ("source_send", "to_context", "context_queue", "to_worker", "preprocess", "inference", "postprocess",
                "to_sink", "reorder", "outputs", "overhead", "capture_to_mask", "capture_to_output")


def save_report(report: dict[str, Any], path: str | Path) -> Path:
    """Written whole or not at all (a temporary file renamed): an earlier report is never truncated."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def format_summary(report: dict[str, Any]) -> str:
    f = report.get("frames", {})
    fps = report.get("fps", {})
    model = report.get("model") or {}
    lines = [
        f"model      {model.get('model', '?')} on {model.get('backend', '?')} ({model.get('device', '?')})   "
        f"transport {report.get('transport')}   workers {report.get('workers')}",
        f"frames     sent {_fmt(f.get('sent'), 'd')}  processed {_fmt(f.get('processed'), 'd')}  dropped {_fmt(f.get('dropped'), 'd')}"
        + (f" ({why})" if (why := ", ".join(f"{k} {v}" for k, v in (f.get("dropped_by") or {}).items() if v)) else "")
        + f"  accounted {f.get('accounted')}",
        f"fps        source {_fmt(fps.get('source'), '.2f')}  processed {_fmt(fps.get('processed'), '.2f')}"
        f"  ratio {_fmt(fps.get('processed_ratio'), '.3f')}",
    ]
    if report.get("miou") is not None:
        lines.append(f"mIoU       {report['miou']:.4f} (vs the synthetic ground truth)")
    lines.append("")
    lines.append(f"{'latency (ms)':<20}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'count':>8}")
    lat = report.get("latency_ms", {})
    for name in TABLE_STAGES:
        s = lat.get(name)
        if not s or not s.get("count"):
            continue
        lines.append(f"{name:<20}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['max_ms']:>9.2f}{s['count']:>8d}")
    if report.get("errors"):
        lines.append("")
        lines.extend(f"error: {e}" for e in report["errors"])
    return "\n".join(lines)
