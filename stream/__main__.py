"""icf-stream: real-time audio-visual segmentation from a camera + microphone, a file, or the
built-in synthetic scene, over a ZeroMQ pipeline (one process or many).

    icf-stream demo                          # synthetic 30 fps scene, 10 s, shipped weights -> out/demo/
    icf-stream live --camera 0 --mic default --weights weights/icf-lite-synthavs.safetensors
    icf-stream run --video clip.mp4 --publish tcp://127.0.0.1:5556 --record out/clip-overlay.mp4
    icf-stream devices
    icf-stream node --graph graph.json --node segmenter     # one part of a graph spread over machines
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

SHIPPED_WEIGHTS = Path("weights/icf-lite-synthavs.safetensors")
NO_WEIGHTS = """the shipped weights {path} are not here.
  They come with the repository (weights/icf-lite-synthavs.safetensors + .json: restore them from git,
  e.g. `git checkout -- weights/`), or make them yourself (about 25 min on 2 CPU cores):
      icf-train fit --config synthavs-cpu       (then copy the checkpoint it writes to {path})
  Or run without trained weights, to see the pipeline work (masks will be meaningless):
      icf-stream {cmd} --model icf-lite"""


def default_threads() -> int:
    """Cores for the model: all but one. On 2 cores one ORT thread gives the best tail latency: a
    second thread keeps getting preempted by the source and the sink, and an op waits for it."""
    return max(1, (os.cpu_count() or 2) - 1)


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (one of; default: the shipped weights)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--weights", metavar="CKPT", help="ICF checkpoint (.safetensors); exported to ONNX once through the engine (cached under out/engine/)")
    m.add_argument("--engine", metavar="ARTIFACT", help="an engine artifact: .onnx (+ .json sidecar), .plan, or .safetensors")
    m.add_argument("--model", metavar="NAME", help="registry model with untrained weights (icf-tiny, icf-lite): for trying the pipeline")
    g.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                   help="engine backend (default auto: TensorRT / CUDA when present, else ONNX Runtime on the CPU)")
    g.add_argument("--threads", type=int, default=default_threads(),
                   help="intra-op threads for the backend (default: CPU cores - 1, leaving one for capture, "
                        f"transport and outputs; here {default_threads()})")


def _pipeline_args(p: argparse.ArgumentParser, *, display: bool = True) -> None:
    g = p.add_argument_group("pipeline")
    g.add_argument("--transport", default="ipc", choices=("inproc", "ipc", "tcp"),
                   help="inproc: one process, threads; ipc / tcp: one process per stage group (default ipc)")
    g.add_argument("--workers", type=int, default=1, help="segmenter workers (default 1)")
    g.add_argument("--host", default="127.0.0.1", help="tcp bind/connect host (default loopback)")
    g.add_argument("--curve", action="store_true", help="encrypt tcp links with CURVE (ephemeral keys)")
    g.add_argument("--hwm", type=int, default=4, help="high-water mark (messages) of frame sockets (default 4)")
    g.add_argument("--seconds", type=float, help="stop after this many seconds")
    o = p.add_argument_group("outputs")
    o.add_argument("--publish", metavar="ADDR", help="publish every mask on a PUB socket, e.g. tcp://127.0.0.1:5556 (docs/protocol.md)")
    o.add_argument("--record", metavar="FILE", help="record the overlay with the original audio to an MP4")
    o.add_argument("--masks", metavar="FILE", help="save every mask to an npz")
    o.add_argument("--metrics", metavar="FILE", help="JSONL log, one line per frame")
    o.add_argument("--report", metavar="FILE", help="write the run report (JSON)")
    if display:
        o.add_argument("--no-display", action="store_true", help="no window (there is none anyway without DISPLAY / WAYLAND_DISPLAY)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="icf-stream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="log what the engine and stages decide")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="synthetic audio-visual stream through the multi-process pipeline; writes out/demo/")
    d.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    d.add_argument("--seconds", type=float, default=10.0, help="stream length (default 10)")
    d.add_argument("--fps", type=int, default=30)
    d.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    d.add_argument("--mode", default="single", help="SynthAVS scene mode (default single)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--transport", default="ipc", choices=("inproc", "ipc", "tcp"))
    d.add_argument("--workers", type=int, default=1)
    d.add_argument("--publish", metavar="ADDR", help="also publish masks here")
    _model_args(d)

    lv = sub.add_parser("live", help="camera + microphone")
    lv.add_argument("--camera", default="0", help="camera index or device path / URL (default 0)")
    lv.add_argument("--mic", default="default", help="microphone: default, an index or a name fragment; 'none' for silence")
    lv.add_argument("--size", help="ask the camera for WxH")
    lv.add_argument("--fps", type=int, help="ask the camera for this frame rate")
    _model_args(lv)
    _pipeline_args(lv)

    r = sub.add_parser("run", help="a video file (its audio track, or --audio)")
    r.add_argument("--video", required=True, metavar="FILE")
    r.add_argument("--audio", metavar="FILE", help="audio from another file (default: the video's own track)")
    r.add_argument("--fast", action="store_true", help="read as fast as possible instead of at real time (frames the model cannot keep up with are dropped)")
    _model_args(r)
    _pipeline_args(r)

    sub.add_parser("devices", help="list cameras and microphones")

    n = sub.add_parser("node", help="run one node of a graph file (pipelines across machines; see stream/launch.py)")
    n.add_argument("--graph", required=True, metavar="FILE", help="graph JSON: pipeline config + endpoint of every link")
    n.add_argument("--node", help="which node to run here (source, segmenter, worker1.., sink)")
    n.add_argument("--list", action="store_true", help="list the graph's nodes and exit")
    n.add_argument("--report", metavar="FILE", help="write this node's report (JSON)")
    return ap


def _backend_spec(args, cmd: str) -> dict:
    from .backend import export_cached

    # threads is an option of the CPU-capable backends; an explicit tensorrt backend refuses it
    options = {"threads": args.threads} if args.threads and args.backend in ("auto", "onnxruntime", "torch") else {}
    if args.engine:
        artifact = args.engine
    elif args.model:
        artifact = str(export_cached(model=args.model))
    else:
        artifact = args.weights or str(SHIPPED_WEIGHTS)
        if not Path(artifact).is_file():
            if args.weights:
                raise SystemExit(f"icf-stream: weights file {artifact} not found")
            raise SystemExit("icf-stream: " + NO_WEIGHTS.format(path=SHIPPED_WEIGHTS, cmd=cmd))
        if args.backend in ("auto", "onnxruntime"):
            artifact = str(export_cached(weights=artifact))  # once, before workers start: no export race
    if not Path(artifact).is_file():
        raise SystemExit(f"icf-stream: model artifact {artifact} not found")
    return {"kind": "engine", "artifact": artifact, "backend": args.backend, "options": options}


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"icf-stream: size '{text}' is not WxH (e.g. 640x480)") from None
    return w, h


def _run(cfg, report_path: str | None, quiet: bool = False) -> int:
    from .pipeline import PipelineError, run_pipeline
    from .report import format_summary, save_report

    try:
        report = run_pipeline(cfg)
    except PipelineError as exc:
        print(f"icf-stream: {exc}", file=sys.stderr)
        return 2
    if report_path:
        save_report(report, report_path)
    ran = bool(report.get("frames", {}).get("sent"))
    if not quiet and ran:
        print(format_summary({**report, "errors": []}))
        if report_path:
            print(f"\nreport: {report_path}")
    for e in report["errors"]:
        print(f"icf-stream: error: {e}", file=sys.stderr)
    return 2 if report["errors"] else 0


def cmd_demo(args) -> int:
    from .pipeline import PipelineConfig

    w, h = _size(args.size)
    spec = _backend_spec(args, "demo")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig(
        source={"kind": "synthetic", "width": w, "height": h, "fps": args.fps, "mode": args.mode, "seed": args.seed,
                "seconds": args.seconds},
        backend=spec, workers=args.workers, transport=args.transport, publish=args.publish,
        record=str(out / "overlay.mp4"), masks=str(out / "masks.npz"), metrics=str(out / "metrics.jsonl"))
    print(f"icf-stream demo: {args.seconds:g} s of SynthAVS '{args.mode}' at {args.fps} fps, {w}x{h}, "
          f"{args.transport} with {args.workers} worker(s), model {spec['artifact']}")
    rc = _run(cfg, str(out / "report.json"))
    print(f"outputs: {out / 'overlay.mp4'}, {out / 'masks.npz'}, {out / 'metrics.jsonl'}")
    return rc


def _common_cfg(args, source: dict, cmd: str):
    from .pipeline import PipelineConfig

    return PipelineConfig(source=source, backend=_backend_spec(args, cmd), workers=args.workers, transport=args.transport,
                          host=args.host, curve=args.curve, hwm=args.hwm, seconds=args.seconds, publish=args.publish,
                          record=args.record, masks=args.masks, metrics=args.metrics,
                          display=not args.no_display and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))


def cmd_live(args) -> int:
    size = _size(args.size)
    if args.mic != "none":
        from .live import import_sounddevice
        from .stage import StageError

        try:  # before any export or output: a missing library is a one-line answer, not a traceback
            import_sounddevice()
        except StageError as exc:
            print(f"icf-stream live: {exc}", file=sys.stderr)
            return 2
    source = {"kind": "live", "camera": args.camera, "mic": None if args.mic == "none" else args.mic, "fps": args.fps}
    if size:
        source.update(width=size[0], height=size[1])
    return _run(_common_cfg(args, source, "live"), args.report)


def cmd_run(args) -> int:
    for path in filter(None, (args.video, args.audio)):
        if not Path(path).is_file():
            print(f"icf-stream: file '{path}' does not exist", file=sys.stderr)
            return 2
    source = {"kind": "file", "video": args.video, "audio": args.audio, "pace": "fast" if args.fast else "realtime"}
    return _run(_common_cfg(args, source, "run"), args.report)


def cmd_devices(args) -> int:
    from .live import list_devices

    found = list_devices()
    if found["cameras"]:
        print("cameras:")
        for c in found["cameras"]:
            print(f"  {c['index']}: {c['size']} ({c['backend']})   use --camera {c['index']}")
    else:
        print("cameras: none found")
    if found["microphones"]:
        print("microphones:")
        for m in found["microphones"]:
            print(f"  {m['index']}: {m['name']} ({m['channels']} ch, {m['default_rate']:.0f} Hz)   use --mic {m['index']}")
    else:
        why = f" ({found['microphone_error']})" if found["microphone_error"] else ""
        print(f"microphones: none found{why}")
    return 0


def cmd_node(args) -> int:
    from .launch import load_graph, node_names, run_node
    from .pipeline import PipelineError
    from .report import save_report

    try:
        if args.list or not args.node:
            cfg, endpoints = load_graph(args.graph)
            print("nodes:", " ".join(node_names(cfg)))
            print("\n".join(f"  {k:8s} {v}" for k, v in endpoints.addresses.items()))
            return 0 if args.list else 2
        report = run_node(args.graph, args.node)
    except PipelineError as exc:
        print(f"icf-stream: {exc}", file=sys.stderr)
        return 2
    if args.report:
        save_report(report, args.report)
    for e in report["errors"]:
        print(f"icf-stream: error: {e}", file=sys.stderr)
    sink = report["stages"].get("sink")
    if sink:
        print(json.dumps({"frames": sink.get("frames"), "fps_processed": sink.get("fps_processed"), "miou": sink.get("miou")}))
    return 2 if report["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    handlers = {"demo": cmd_demo, "live": cmd_live, "run": cmd_run, "devices": cmd_devices, "node": cmd_node}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "build_parser"]
