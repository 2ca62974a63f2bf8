"""icf-bench: latency and throughput measurements of the ICF system, written to out/bench/.

Commands (each writes <command>.json, <command>.md and PNG plots, with the machine and library
versions; --smoke runs any of them end to end in seconds):
  model      step latency per model x backend x resolution x precision (p50/p95/p99, FPS, GFLOPs)
  baseline   the same frames through an AVSBench-style eager network vs our backends (ratios)
  transport  ZeroMQ inproc / ipc / tcp one-way latency and throughput, copy vs zero-copy
  pipeline   a paced end-to-end stream run with the stream's own per-stage metrics
  soak       a long run (default 10 min): memory of every process and p99 latency per minute, flat?
  streams    N camera streams through one batched model: p99 and processed ratio against N
  plot       re-render Markdown + PNG from a JSON report (e.g. bench/gpu.py's from a GPU machine)

GPU measurements (one prepared run): scripts/gpu.sh, see bench/gpu.py --help.
Numbers from a loaded machine are noisy: each report records the load average.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from . import modelbench, pipeline, soak, transport

    ap = argparse.ArgumentParser(prog="icf-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("model", help="step latency per model x backend x resolution x precision", description=modelbench.__doc__, formatter_class=fmt)
    modelbench.add_common(p)
    p = sub.add_parser("baseline", help="AVSBench-style eager reference vs our best backend", description=modelbench.__doc__, formatter_class=fmt)
    modelbench.add_common(p)
    p = sub.add_parser("transport", help="ZeroMQ inproc/ipc/tcp latency and throughput", description=transport.__doc__, formatter_class=fmt)
    transport.add_args(p)
    p = sub.add_parser("pipeline", help="paced end-to-end stream run, per-stage breakdown", description=pipeline.__doc__, formatter_class=fmt)
    pipeline.add_args(p)
    p = sub.add_parser("soak", help="long run: memory and p99 flat over --minutes", description=soak.__doc__, formatter_class=fmt)
    soak.add_args(p)
    from . import streams

    p = sub.add_parser("streams", help="many camera streams, one batched model: p99 and processed ratio vs N", description=streams.__doc__, formatter_class=fmt)
    streams.add_args(p)
    p = sub.add_parser("plot", help="re-render Markdown + PNG from a JSON report")
    p.add_argument("report", type=Path, help="a JSON written by icf-bench or bench/gpu.py")
    p.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: beside the JSON)")
    return ap


def replot(args: argparse.Namespace) -> dict:
    from .plots import plot_report

    doc = json.loads(args.report.read_text())
    out = args.out or args.report.parent
    out.mkdir(parents=True, exist_ok=True)
    made = plot_report(doc, out, args.report.stem)
    for p in made:
        print(p)
    return doc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("model", "baseline"):
        from .modelbench import run

        run(args, command=args.command)
    elif args.command == "transport":
        from .transport import run

        run(args)
    elif args.command == "pipeline":
        from .pipeline import run

        run(args)
    elif args.command == "soak":
        from .soak import run

        run(args)
    elif args.command == "streams":
        from .streams import run

        run(args)
    else:
        replot(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
