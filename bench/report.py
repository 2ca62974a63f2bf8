"""Writing reports: JSON (atomic, so a reader or a timeout never sees half a file) and Markdown.

Standard library only (+ bench.env); PNG plots live in bench/plots.py and are imported lazily,
so bench/gpu.py can write JSON + Markdown on a machine where matplotlib is not to be imported.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path

from .env import machine_line


def write_json(path: Path, doc: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(portable(doc), f, indent=1, default=str, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def fmt(value) -> str:
    """Table cell: significant digits that suit latencies in ms and ratios; '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        a = abs(value)
        if a >= 1e5 or (0 < a < 1e-3):
            return f"{value:.2e}"
        return f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}" if a >= 1 else f"{value:.3f}"
    return str(value)


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def latency_table(rows: list[dict]) -> str:
    """One line per model x resolution x backend row (skipped / failed rows say why)."""
    out = []
    for r in rows:
        if r.get("status") == "ok":
            out.append(
                [r["model"], r["resolution"], r["label"], r["device"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["fps"],
                 r.get("setup_s"), r.get("max_abs_diff"), "ok"]
            )
        else:
            why = r.get("reason") or r.get("error", "")
            out.append([r["model"], r["resolution"], r["label"], r["device"], None, None, None, None, None, None, f"{r.get('status')}: {why[:90]}"])
    return md_table(["model", "res", "backend", "device", "p50 ms", "p95 ms", "p99 ms", "FPS", "setup s", "max diff", "status"], out)


def targets_md(targets: list[dict]) -> str:
    if not targets:
        return ""
    rows = [[t["target"], t["measured"], t["limit"], t["unit"], "met" if t["met"] else "NOT met", t["gap"]] for t in targets]
    return "### Targets (measured, never asserted)\n\n" + md_table(["target", "measured", "limit", "unit", "status", "gap (+ = short)"], rows)


def header_md(doc: dict, title: str) -> str:
    return "\n".join(
        [
            f"## {title}",
            "",
            f"- command: `{doc.get('command_line', '')}`",
            f"- when: {doc.get('created', '')}",
            f"- machine: {machine_line(doc)}",
            "",
        ]
    )


def command_line() -> str:
    """The command as run from the repo root, with no absolute path of this machine in it."""
    prog = Path(sys.argv[0])
    if prog.name in ("__main__.py", "icf-bench"):
        prog = "icf-bench"
    elif prog.name == "gpu.py":
        prog = "python -m bench.gpu"
    else:
        prog = f"python {prog.name}"
    return " ".join([prog, *(shlex.quote(portable_path(a)) for a in sys.argv[1:])])


def portable_path(arg: str) -> str:
    """An absolute path (or ``--opt=/path``) made portable, so reports carry no absolute path of
    the machine that made them: relative to the working directory (the repo root) when inside
    it, else ``.../<file name>``."""
    key, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not value.startswith("/") or " " in value:
        return arg
    path = Path(value)
    try:
        short = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        short = f".../{path.name}"
    return f"{key}{eq}{short}"


def portable(doc):
    """``doc`` with every string that is an absolute path made portable (see portable_path)."""
    if isinstance(doc, dict):
        return {k: portable(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [portable(v) for v in doc]
    return portable_path(doc) if isinstance(doc, str) else doc


def write_report(doc: dict, out_dir: Path, stem: str, markdown: str, *, plots: bool = True) -> dict[str, list[str]]:
    """Writes <stem>.json, <stem>.md and (plots=True) <stem>_*.png; returns the paths written."""
    out_dir = Path(out_dir)
    written = {"json": [str(write_json(out_dir / f"{stem}.json", doc))]}
    md = out_dir / f"{stem}.md"
    md.write_text(markdown.rstrip() + "\n")
    written["markdown"] = [str(md)]
    if plots:
        from .plots import plot_report

        written["png"] = [str(p) for p in plot_report(doc, out_dir, stem)]
    return written
