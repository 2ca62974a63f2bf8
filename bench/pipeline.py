"""`icf-bench pipeline`: a paced end-to-end stream run and where its time goes.

Runs the real pipeline (stream.run_pipeline: source -> context -> worker -> sink over ZeroMQ),
paced to real time, on a synthetic scene or a video file, with a model through engine.runtime
(or --null: no model, the pipeline's own overhead). Per-frame stage times come from the stream's
own metrics log (one JSON line per delivered frame), grouped as:
  capture     source: stamp, encode, send                         (source_send)
  transport   the three ZeroMQ hops                               (to_context + to_worker + to_sink)
  context     audio ring -> 15,600-sample window + text rings, and the wait for a free worker
              (context_queue; with a busy worker this is queueing, not audio work)
  preprocess  worker: resize to the model size, to float          (preprocess)
  inference   backend.infer, log-mel included (it is in the graph) (inference)
  postprocess worker: upsample + threshold, concepts              (postprocess)
  publish     sink: reorder, overlay / record / PUB                (reorder + outputs)
plus capture->mask end to end, the real-time factor and drops by cause.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .env import envelope
from .report import command_line, header_md, md_table, write_report
from .stats import summarize

GROUPS = (
    ("capture", ("source_send",)),
    ("transport", ("to_context", "to_worker", "to_sink")),
    ("context (audio window + wait)", ("context_queue",)),
    ("preprocess", ("preprocess",)),
    ("inference", ("inference",)),
    ("postprocess", ("postprocess",)),
    ("publish", ("reorder", "outputs")),
)
WORKER = ("preprocess", "inference", "postprocess")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=("synthetic", "file"), default="synthetic")
    p.add_argument("--video", type=Path, default=None, help="video file for --source file")
    p.add_argument("--audio", type=Path, default=None, help="separate audio file (default: the video's track)")
    p.add_argument("--seconds", type=float, default=None, help="stream length (default 20; smoke 2)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--model", default=None, help="registry model exported through the engine (default icf-lite; smoke icf-tiny)")
    p.add_argument("--weights", dest="artifact", type=Path, default=None,
                   help="which model: a checkpoint or artifact (.safetensors / .onnx / .plan) instead of --model")
    p.add_argument("--backend", default="auto", help="engine backend: auto | onnxruntime | torch | tensorrt")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of the backend")
    p.add_argument("--null", action="store_true", help="no model (stream.stages.models.NullBackend): the pipeline's own cost")
    p.add_argument("--transport", choices=("inproc", "ipc", "tcp"), default=None, help="default ipc (smoke inproc)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="icf-tiny, 2 s, inproc: checks the command end to end")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--shm", choices=("auto", "on", "off"), default="auto", help="frames source -> segmenter by shared memory (auto: on for ipc)")
    p.add_argument("--resize", choices=("fast", "area", "linear"), default="fast", help="frame -> model size (stream/stages/resize.py)")
    p.add_argument("--compare", action="store_true", help="with --null: payload vs shared-memory frames (and results) and area vs fast resize, "
                   "interleaved in one run (bench/shm_compare.py)")
    p.add_argument("--repeats", type=int, default=2, help="--compare: runs per variant")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default out/bench)")


def backend_spec(args: argparse.Namespace, folder: Path) -> dict:
    if args.null:
        return {"kind": "null", "image_size": [224, 224], "resize": args.resize}
    artifact = args.artifact
    if artifact is None:
        from .backends import Artifacts

        artifact = Artifacts(args.model, (224, 224), folder).onnx()
    options = {"threads": args.threads} if args.backend in ("auto", "onnxruntime", "torch") else {}
    return {"kind": "engine", "artifact": str(artifact), "backend": args.backend, "options": options, "resize": args.resize}


def stage_breakdown(lines: list[dict]) -> tuple[list[dict], dict]:
    """Per-frame grouped stage times -> one summary per group, plus end-to-end and worker totals."""
    per_group: dict[str, list[float]] = {name: [] for name, _ in GROUPS}
    totals: dict[str, list[float]] = {"capture_to_mask": [], "capture_to_output": [], "worker_busy": []}
    for line in lines:
        st = line.get("stages_ms") or {}
        for name, parts in GROUPS:
            if all(p in st for p in parts):
                per_group[name].append(sum(st[p] for p in parts))
        for key in ("capture_to_mask", "capture_to_output"):
            if key in st:
                totals[key].append(st[key])
        if all(p in st for p in WORKER):
            totals["worker_busy"].append(sum(st[p] for p in WORKER))
    stages = [{"stage": name, "parts": list(parts), **summarize(per_group[name])} for name, parts in GROUPS]
    return stages, {k: summarize(v) for k, v in totals.items()}


def run(args: argparse.Namespace) -> dict:
    from stream import PipelineConfig, run_pipeline

    if args.compare:
        if not args.null or args.source != "synthetic":
            raise SystemExit("icf-bench pipeline: --compare measures the pipeline alone: use it with --null (synthetic source)")
        from .shm_compare import run as compare

        return compare(args)
    args.seconds = args.seconds or (2.0 if args.smoke else 20.0)
    args.model = args.model or ("icf-tiny" if args.smoke else "icf-lite")
    args.transport = args.transport or ("inproc" if args.smoke else "ipc")
    if args.source == "file" and not args.video:
        raise SystemExit("icf-bench pipeline: --source file needs --video PATH")
    with tempfile.TemporaryDirectory(prefix="icf-bench-pipe-") as tmp:
        spec = backend_spec(args, Path(tmp))
        if args.source == "synthetic":
            source = {"kind": "synthetic", "seconds": args.seconds, "fps": args.fps, "width": args.width, "height": args.height, "pace": "realtime"}
        else:
            source = {"kind": "file", "video": str(args.video), "seconds": args.seconds, "pace": "realtime"}
            if args.audio:
                source["audio"] = str(args.audio)
        metrics = Path(tmp) / "metrics.jsonl"
        print(f"pipeline: {args.source} {args.seconds:g} s at {args.fps} fps over {args.transport}, model {spec.get('artifact', 'null')}", flush=True)
        report = run_pipeline(PipelineConfig(source=source, backend=spec, transport=args.transport, workers=args.workers, metrics=str(metrics),
                                            shm=args.shm))
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
    stages, totals = stage_breakdown(lines)
    frame_ms = 1000.0 / args.fps
    frames = report.get("frames", {})
    doc = envelope("pipeline", vars(args))
    doc["command_line"] = command_line()
    doc.update(
        stages=stages,
        end_to_end=totals,
        # < 1: the worker finishes a frame within one frame period, so it keeps up with the camera
        real_time_factor=totals["worker_busy"]["p50_ms"] / frame_ms if totals["worker_busy"]["n"] else float("nan"),
        frames=frames,
        fps=report.get("fps"),
        drops=report.get("drops"),
        # the worker's own report names the model; when it is missing, say what was asked for
        model=report.get("model") or {"asked": spec.get("artifact", "null"), "backend": spec.get("backend", "null")},
        ok=report.get("ok"),
        errors=report.get("errors"),
        stream_latency_ms=report.get("latency_ms"),
        stream_report={k: v for k, v in report.items() if k != "stages"},
    )
    if not lines:
        doc["errors"] = list(doc.get("errors") or []) + ["the stream wrote no per-frame metrics; stage breakdown missing"]
    md = markdown(doc, frame_ms)
    doc["written"] = write_report(doc, args.out, "pipeline", md, plots=not args.no_plots)
    print(md, flush=True)
    return doc


def markdown(doc: dict, frame_ms: float) -> str:
    rows = [[s["stage"], " + ".join(s["parts"]), s["p50_ms"], s["p95_ms"], s["p99_ms"], s["mean_ms"], s["n"]] for s in doc["stages"]]
    rows += [[k, "end to end" if k != "worker_busy" else "preprocess + inference + postprocess",
              v["p50_ms"], v["p95_ms"], v["p99_ms"], v["mean_ms"], v["n"]]
             for k, v in doc["end_to_end"].items()]
    stages = md_table(["stage", "stream metrics", "p50 ms", "p95 ms", "p99 ms", "mean ms", "frames"], rows)
    f, fps = doc.get("frames") or {}, doc.get("fps") or {}
    drops = doc.get("drops") or {}
    summary = md_table(
        ["frames sent", "processed", "dropped", "source fps", "processed fps", "real-time factor (worker p50 / frame period)", "ok"],
        [[f.get("sent"), f.get("processed"), f.get("dropped"), fps.get("source"), fps.get("processed"), doc["real_time_factor"], doc.get("ok")]],
    )
    text = [header_md(doc, "End-to-end pipeline (paced)"), f"- model: {doc.get('model')}; frame period {frame_ms:.1f} ms", "", summary, stages,
            f"Drops by cause: `{json.dumps(drops)}`"]
    if doc.get("errors"):
        text.append("Errors: " + "; ".join(map(str, doc["errors"])))
    return "\n\n".join(text)


__all__ = ["run", "add_args", "stage_breakdown", "GROUPS"]
