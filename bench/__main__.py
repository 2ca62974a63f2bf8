"""icf-bench: latency and throughput measurements of the ICF system, written to out/bench/.

Commands (each writes <command>.json, <command>.md and PNG plots, with the machine and library
versions; --smoke runs any of them end to end in seconds):
  model      step latency per model x backend x resolution x precision (p50/p95/p99, FPS, GFLOPs)
  baseline   the same frames through an AVSBench-style eager network vs our backends (ratios)
  transport  ZeroMQ inproc / ipc / tcp one-way latency and throughput, copy vs zero-copy
  pipeline   a paced end-to-end stream run with the stream's own per-stage metrics
  soak       a long run (default 10 min): memory of every process and p99 latency per minute, flat?
  streams    N camera streams through one batched model: p99 and processed ratio against N
  plot       re-render Markdown + PNG from a JSON report (e.g. bench/gpu.py's from a GPU machine), or plot a
             stream run (out/demo/report.json: latency histogram and over time, per stage, drops)

GPU measurements (one prepared run): scripts/gpu.sh, see bench/gpu.py --help.
Numbers from a loaded machine are noisy: each report records the load average.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icfcli import UserError, make_parser, run

FMT = argparse.RawDescriptionHelpFormatter


def add_model(sub) -> None:
    from . import modelbench

    for name, what in (("model", "step latency per model x backend x resolution x precision"),
                       ("baseline", "AVSBench-style eager reference vs our best backend")):
        p = sub.add_parser(name, help=what, description=modelbench.__doc__, formatter_class=FMT)
        modelbench.add_common(p)
        p.set_defaults(func=lambda args: modelbench.run(args, command=args.command))


def add_transport(sub) -> None:
    from . import transport

    p = sub.add_parser("transport", help="ZeroMQ inproc/ipc/tcp latency and throughput", description=transport.__doc__, formatter_class=FMT)
    transport.add_args(p)
    p.set_defaults(func=transport.run)


def add_pipeline(sub) -> None:
    from . import pipeline

    p = sub.add_parser("pipeline", help="paced end-to-end stream run, per-stage breakdown", description=pipeline.__doc__, formatter_class=FMT)
    pipeline.add_args(p)
    p.set_defaults(func=pipeline.run)


def add_soak(sub) -> None:
    from . import soak

    p = sub.add_parser("soak", help="long run: memory and p99 flat over --minutes", description=soak.__doc__, formatter_class=FMT)
    soak.add_args(p)
    p.set_defaults(func=soak.run)


def add_streams(sub) -> None:
    from . import streams

    p = sub.add_parser("streams", help="many camera streams, one batched model: p99 and processed ratio vs N",
                       description=streams.__doc__, formatter_class=FMT)
    streams.add_args(p)
    p.set_defaults(func=streams.run)


def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="re-render Markdown + PNG from a JSON report, or draw training curves (log.jsonl / curves.csv)")
    p.add_argument("report", type=Path, help="a JSON written by icf-bench or bench/gpu.py; a stream run's report.json (with the "
                   "metrics.jsonl its run wrote); or a training run's log.jsonl / curves.csv / folder")
    p.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: beside the input)")
    p.set_defaults(func=replot)


def build_parser() -> argparse.ArgumentParser:
    ap, sub = make_parser("icf-bench", __doc__)
    for add in (add_model, add_transport, add_pipeline, add_soak, add_streams, add_plot):  # a new sub-command: an add_x(sub) + one entry here
        add(sub)
    return ap


def replot(args: argparse.Namespace) -> int:
    from .plots import plot_report

    src = args.report
    if not src.exists():
        raise UserError(f"{src} not found")
    if src.is_dir() or src.suffix in (".jsonl", ".csv"):
        from .curves import plot_training

        made = plot_training(src, args.out)
    else:
        try:
            doc = json.loads(src.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{src} is not a JSON report ({exc}); training logs are read as log.jsonl / curves.csv") from None
        out = args.out or src.parent
        out.mkdir(parents=True, exist_ok=True)
        from .run_plots import is_run_report, plot_run

        made = plot_run(doc, src, out) if isinstance(doc, dict) and is_run_report(doc) else plot_report(doc, out, src.stem)
    if not made:
        raise UserError(f"{src}: nothing to plot (not an icf-bench report, a stream run's report.json or a training log)")
    for p in made:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv, errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
