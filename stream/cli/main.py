"""icf-stream: real-time audio-visual segmentation from a camera + microphone, a file, or the
built-in synthetic scene, over a ZeroMQ pipeline (one process or many).

    icf-stream demo                          # real photos + real sounds (or the synthetic scene), 10 s -> out/demo/
    icf-stream live --camera 0 --mic default  # the shipped real-media weights; watch http://127.0.0.1:8080
    icf-stream run --video clip.mp4 --publish tcp://127.0.0.1:5556 --record out/clip-overlay.mp4
    icf-stream predict photo.jpg clip.mp4 frames/ --out out/predict   # offline: overlay MP4 + masks per video, JSON
    icf-stream devices
    icf-stream keys --out keys/              # CURVE key files: then --curve-keys keys/ (docs/protocol.md)
    icf-stream serve --streams 3                 # many cameras, one batched model (stream/cli/serve_cli.py)
    icf-stream node --graph graph.json --node segmenter     # one part of a graph spread over machines
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engine.cache import cache_dir
from icfcli import UserError, make_parser, non_negative_int, positive_float, positive_int, run, size_wh
from stream.cli import preflight
from weights import SHIPPED_NAME, weights_arg


def _shipped_weights() -> Path:
    """The checkpoint that ships with the package (weights/ is package data): found from any directory."""
    try:
        from weights import SHIPPED
    except ImportError:
        return Path("weights/icf-lite-stamps.safetensors")
    return SHIPPED


SHIPPED_WEIGHTS = _shipped_weights()
SYNTH_WEIGHTS = SHIPPED_WEIGHTS.with_name("icf-lite-synthavs.safetensors")  # the demo's synthetic scene plays to these
NO_WEIGHTS = """the shipped weights {path} are not here.
  They come with the package (weights/*.safetensors + .json: in a clone, restore them with
  `git checkout -- weights/`), or make them yourself (about 70 min on 2 CPU cores):
      icf-train fit --config stamps-cpu         (real photos + sounds; synthavs-cpu for the synthetic scenes)
  then pass the checkpoint it writes with --weights.
  Or run without trained weights, to see the pipeline work (masks will be meaningless):
      icf-stream {cmd} --model icf-lite"""
ARTIFACT_SUFFIXES = (".safetensors", ".onnx", ".plan", ".engine", ".ep", ".pt2")
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")


def default_threads() -> int:
    """Cores for the model: all but one. On 2 cores one ORT thread gives the best tail latency: a
    second thread keeps getting preempted by the source and the sink, and an op waits for it."""
    return max(1, (os.cpu_count() or 2) - 1)


def _model_args(p) -> None:
    g = p.add_argument_group("model (default: the shipped weights, trained on 58 real objects' photos and sounds: "
                                  "a start, not a general model; see README)")
    g.add_argument("--weights", metavar="FILE", type=weights_arg,
                   help=f"which model ({SHIPPED_NAME} names the shipped weights anywhere): an ICF checkpoint "
                        "(.safetensors, exported to ONNX once and cached under "
                        f"{cache_dir()}) or an engine artifact (.onnx with its .json sidecar, .plan, .pt2 AOTInductor, .ep)")
    g.add_argument("--model", metavar="NAME", help="registry model with UNTRAINED weights (icf-tiny, icf-lite): to try the pipeline")
    g.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="engine backend (default auto: TensorRT / CUDA when present, else ONNX Runtime on the CPU)")
    g.add_argument("--trust-package", action="store_true",
                   help="run a .pt2 this machine did not build (loading one runs its native code; default: refused)")
    g.add_argument("--threads", type=positive_int, default=default_threads(),
                   help="intra-op threads for the backend (default: CPU cores - 1, leaving one for capture, "
                        f"transport and outputs; here {default_threads()})")


def _pipeline_args(p, *, display: bool = True) -> None:
    g = p.add_argument_group("pipeline")
    g.add_argument("--transport", default="ipc", choices=("inproc", "ipc", "tcp"),
                   help="inproc: one process, threads; ipc / tcp: one process per stage group (default ipc)")
    g.add_argument("--workers", type=positive_int, default=1, help="segmenter workers (default 1)")
    g.add_argument("--host", default="127.0.0.1", help="tcp bind/connect host (default loopback)")
    g.add_argument("--curve", action="store_true", help="encrypt tcp links with CURVE (ephemeral keys)")
    g.add_argument("--curve-keys", metavar="DIR", help="encrypt tcp links and --publish with the keys made by `icf-stream keys`")
    g.add_argument("--hwm", type=positive_int, default=4, help="high-water mark (messages) of frame sockets (default 4)")
    g.add_argument("--seconds", type=positive_float, help="stop after this many seconds")
    o = p.add_argument_group("outputs (nothing is written unless asked)")
    o.add_argument("--out", metavar="DIR",
                   help="write all of the outputs below into DIR (overlay.mp4, masks.npz, metrics.jsonl, events.jsonl, report.json)")
    o.add_argument("--publish", metavar="ADDR", help="publish every mask on a PUB socket, e.g. tcp://127.0.0.1:5556 (docs/protocol.md)")
    o.add_argument("--record", metavar="FILE", help="record the overlay with the original audio to an MP4")
    o.add_argument("--masks", metavar="FILE", help="save every mask to an npz")
    o.add_argument("--metrics", metavar="FILE", help="JSONL log, one line per frame")
    o.add_argument("--events", metavar="FILE", help="JSONL of 'started / stopped sounding' events (concept, time, mask area); "
                                                    "also published with --publish")
    o.add_argument("--report", metavar="FILE", help="write the run report (JSON)")
    from stream.cli.console import add_view_args

    add_view_args(o)
    if display:
        o.add_argument("--no-display", action="store_true", help="no window (there is none anyway without DISPLAY / WAYLAND_DISPLAY)")
        o.add_argument("--show", action="store_true", help="a window with the overlay, also without DISPLAY set (needs an OpenCV "
                                                            "with a GUI: opencv-python; the browser view (--view) needs none)")


def add_demo(sub) -> None:
    from synthavs.config import MODES

    d = sub.add_parser("demo", help="a generated audio-visual stream (real photos and sounds, or synthetic) through the "
                                    "multi-process pipeline; writes out/demo/")
    d.add_argument("--out", default="out/demo", metavar="DIR", help="output folder: every file the demo writes goes here (default out/demo)")
    d.add_argument("--seconds", type=positive_float, default=10.0, help="stream length (default 10)")
    d.add_argument("--fps", type=positive_int, default=30, help="frames per second (default 30)")
    d.add_argument("--size", type=size_wh, default=(640, 480), metavar="WxH", help="frame size (default 640x480)")
    d.add_argument("--scene", default="auto", choices=("auto", "stamps", "synth"),
                   help="stamps: real photo cut-outs with their real recordings on real photos (Debian tuxpaint-stamps-default + "
                        "opencv-doc), played to the real-media weights; synth: SynthAVS shapes and tones, played to the "
                        "SynthAVS weights; auto (default): stamps when those packages are installed, else synth")
    d.add_argument("--mode", default="single", choices=MODES, help="scene mode (default single)")
    d.add_argument("--seed", type=non_negative_int, default=0, help="scene seed")
    d.add_argument("--transport", default="ipc", choices=("inproc", "ipc", "tcp"), help="inproc: threads; ipc / tcp: processes")
    d.add_argument("--workers", type=positive_int, default=1, help="segmenter workers")
    d.add_argument("--publish", metavar="ADDR", help="also publish masks here")
    from stream.cli.console import add_view_args

    add_view_args(d)
    _model_args(d)
    d.set_defaults(func=cmd_demo)


def add_live(sub) -> None:
    lv = sub.add_parser("live", help="camera + microphone (a device, or a network camera URL)")
    lv.add_argument("--camera", default="0", help="camera index, device path, or network URL (rtsp://, http://, udp://) (default 0)")
    lv.add_argument("--mic", default="default",
                    help="microphone: default, an index or a name fragment (see `icf-stream devices`); 'none' for silence")
    lv.add_argument("--size", type=size_wh, metavar="WxH", help="ask the camera for this size")
    lv.add_argument("--fps", type=positive_int, help="ask the camera for this frame rate")
    _model_args(lv)
    _pipeline_args(lv)
    lv.set_defaults(func=cmd_live)


def add_run(sub) -> None:
    r = sub.add_parser("run", help="a video file or network stream with audio (its audio track, or --audio)")
    r.add_argument("--video", required=True, metavar="FILE|URL", help="a video file, or a URL PyAV opens (http://, rtsp://, udp://)")
    r.add_argument("--audio", metavar="FILE", help="audio from another file (default: the video's own track)")
    r.add_argument("--fast", action="store_true",
                   help="read a file as fast as possible instead of at real time (frames the model cannot keep up with are dropped)")
    _model_args(r)
    _pipeline_args(r)
    r.set_defaults(func=cmd_run)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="offline: images, videos or a folder in; masks + overlays (MP4 for videos) + predictions.json out")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image (.png .jpg ...), video (.mp4 .mkv ...) or folder of them")
    p.add_argument("--out", default="out/predict", metavar="DIR", help="output folder (default out/predict)")
    p.add_argument("--audio", metavar="FILE", help="a sound for the images (they hear its first second) and in place of the videos' own tracks")
    p.add_argument("--png", action="store_true", help="videos: also a mask and an overlay PNG per frame (default: overlay.mp4 + masks.npz)")
    _model_args(p)
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from stream.cli.predict import collect, predict

    files = collect(args.inputs)  # every input checked before the model loads or a file is written
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if args.audio:
        if not Path(args.audio).is_file():
            raise UserError(f"--audio {args.audio} not found")
        preflight.check_media(args.audio, "audio", "--audio")
    spec = _backend_spec(args, "predict")
    out.mkdir(parents=True, exist_ok=True)
    doc = predict(files, spec, out, audio=Path(args.audio) if args.audio else None, pngs=args.png, progress=not args.quiet)
    ran = len(doc["outputs"])
    print(f"icf-stream predict: {len(doc['frames'])} frame(s) of {ran} file(s) -> {out}/ "
          f"({'predictions.json, ' if ran else ''}per input: overlay.mp4 + masks.npz for videos, PNGs for images)")
    for item in doc["skipped"]:
        print(f"icf-stream predict: skipped {item['file']}: {item['why']}", file=sys.stderr)
    return 2 if doc["skipped"] else 0


def add_devices(sub) -> None:
    sub.add_parser("devices", help="list cameras and microphones").set_defaults(func=cmd_devices)


def add_keys(sub) -> None:
    k = sub.add_parser("keys", help="make CURVE key files (for --curve-keys, graph files and subscribers)")
    k.add_argument("--out", default="keys", metavar="DIR", help="folder for the key files (default keys/)")
    k.add_argument("--force", action="store_true", help="replace keys already there")
    k.set_defaults(func=cmd_keys)


def add_serve(sub) -> None:
    from stream.cli import serve_cli
    sv = sub.add_parser("serve", help="many camera streams, one batched model (per-stream reports and masks)",
                        description=serve_cli.__doc__)
    serve_cli.add_args(sv)
    sv.set_defaults(func=serve_cli.cmd_serve)


def add_node(sub) -> None:
    n = sub.add_parser("node", help="run one node of a graph file (pipelines across machines; see stream/graph/launch.py)")
    n.add_argument("--graph", required=True, metavar="FILE", help="graph JSON: pipeline config + endpoint of every link")
    n.add_argument("--node", help="which node to run here (source, segmenter, worker1.., sink)")
    n.add_argument("--list", action="store_true", help="list the graph's nodes and exit")
    n.add_argument("--report", metavar="FILE", help="write this node's report (JSON)")
    n.set_defaults(func=cmd_node)


def build_parser():
    ap, sub = make_parser("icf-stream", __doc__)
    # a new sub-command: an add_x(sub) + one entry here
    for add in (add_demo, add_live, add_run, add_predict, add_devices, add_keys, add_serve, add_node):
        add(sub)
    return ap


# ---- validation (nothing opened or written) then the model ----
def _check_model(args, cmd: str) -> None:
    """Every model argument checked before anything is exported, opened or written."""
    if args.weights and args.model:
        raise UserError("give one of --weights FILE and --model NAME")
    if args.model:
        return
    path = Path(args.weights) if args.weights else getattr(args, "default_weights", SHIPPED_WEIGHTS)
    if not path.is_file():
        if path.is_dir():
            raise UserError(f"--weights {path} is a folder; give the checkpoint or artifact file in it")
        if args.weights:
            raise UserError(f"weights file {path} not found")
        raise UserError(NO_WEIGHTS.format(path=path, cmd=cmd))
    if path.suffix not in ARTIFACT_SUFFIXES:
        raise UserError(f"{path}: not a checkpoint or engine artifact (expected one of {', '.join(ARTIFACT_SUFFIXES)})")
    preflight.check_artifact(str(path), trust_package=args.trust_package)  # tampered, mismatched, foreign: before any process starts


def _backend_spec(args, cmd: str) -> dict:
    """The engine spec for the workers; exports a checkpoint (or a registry model) once, into the user cache."""
    from engine.spec import ArtifactError
    from stream.stages.models import export_cached

    _check_model(args, cmd)
    # threads is an option of the CPU-capable backends; an explicit tensorrt backend refuses it
    options = {"threads": args.threads} if args.threads and args.backend in ("auto", "onnxruntime", "torch") else {}
    try:
        if args.model:
            artifact = str(export_cached(model=args.model, cache_dir=None))  # None: the engine's cache (engine/cache.py)
        else:
            artifact = str(args.weights or getattr(args, "default_weights", SHIPPED_WEIGHTS))
            if artifact.endswith(".safetensors") and args.backend in ("auto", "onnxruntime"):
                artifact = str(export_cached(weights=artifact, cache_dir=None))  # once, before workers start
    except (ArtifactError, RuntimeError) as exc:  # the export's own last line says what was wrong (e.g. an unknown model name)
        last = [line for line in str(exc).splitlines() if line.strip()]
        raise UserError(last[-1].removeprefix("icf-engine export: ").removeprefix("error: ") if last else str(exc)) from None
    if args.trust_package and artifact.endswith(".pt2"):
        options["trust_package"] = True  # an option of the aotinductor backend only
    return {"kind": "engine", "artifact": artifact, "backend": args.backend, "options": options}


def _outputs(args) -> dict:
    """--out DIR fills in every output not named on its own."""
    names = {"record": "overlay.mp4", "masks": "masks.npz", "metrics": "metrics.jsonl", "report": "report.json", "events": "events.jsonl"}
    got = {k: getattr(args, k) for k in names}
    if args.out:
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise UserError(f"--out {args.out} is a file, not a folder")
        got = {k: v or str(Path(args.out) / names[k]) for k, v in got.items()}
    for k, v in got.items():
        if v and Path(v).is_dir():
            raise UserError(f"--{k} {v} is a folder; give a file name")
    return got


def _check_outputs(outputs: dict, inputs: tuple) -> None:
    """Every output path checked before the model is exported or a stage starts (never an input file)."""
    from stream.stages.outputs import check_output

    for k in ("record", "masks", "metrics", "report", "events"):
        why = check_output(outputs[k], inputs) if outputs[k] else None
        if why:
            raise UserError(f"--{k}: {why}")


def _run(cfg, report_path: str | None, quiet: bool = False, view: tuple[str, int] | None = None, what: str = "") -> int:
    """Runs the pipeline between the start banner (``what`` runs, the live view, the outputs) and
    its summary, with the live view and the status line (stream/cli/console.py) fed by the sink."""
    from stream.cli.console import run_in_console
    from stream.graph.pipeline import run_pipeline
    from stream.graph.report import format_summary, save_report
    from stream.stages.outputs import failed_path

    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    outs = [p for p in (cfg.record, cfg.masks, cfg.metrics, cfg.sink.get("events"), report_path) if p]
    banner = [what] if what else []
    banner.append(f"  outputs: {', '.join(outs)}" if outs else "  outputs: none written (--out DIR keeps the overlay, masks, metrics and report)")
    if cfg.publish:
        banner.append(f"  masks published on {cfg.publish}")
    report = run_in_console(run_pipeline, cfg, view=view, quiet=quiet, banner=banner)
    if report is None:
        return 2
    if report_path:  # a failed run's report goes beside the earlier run's, like its other files
        report_path = str(save_report(report, report_path if not report["errors"] else failed_path(report_path)))
    ran = bool(report.get("frames", {}).get("sent"))
    if not quiet and ran:
        print(format_summary({**report, "errors": []}))
    if not quiet:
        written = [p for p in (*report.get("outputs", {}).values(), report_path) if p and Path(p).exists()]
        if written:
            print(("\noutputs of the failed run (earlier outputs untouched): " if report["errors"] else "\noutputs: ") + ", ".join(written))
    for e in report["errors"]:
        print(f"icf-stream: error: {e}", file=sys.stderr)
    return 2 if report["errors"] else 0


def cmd_demo(args) -> int:
    from stream.graph.pipeline import PipelineConfig

    (w, h), out = args.size, Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    preflight.check_publish(args.publish)
    scene = _demo_scene(args)
    spec = _backend_spec(args, "demo")  # validated and exported before out/ is touched
    out.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig(
        source={"kind": "synthetic", "width": w, "height": h, "fps": args.fps, "mode": args.mode, "seed": args.seed,
                "seconds": args.seconds, "media": scene},
        backend=spec, workers=args.workers, transport=args.transport, publish=args.publish,
        record=str(out / "overlay.mp4"), masks=str(out / "masks.npz"), metrics=str(out / "metrics.jsonl"),
        sink={"events": str(out / "events.jsonl")})
    scene_name = "real photos + real recordings (tuxpaint stamps on opencv-doc photos)" if scene == "stamps" else "SynthAVS"
    what = (f"icf-stream demo: {args.seconds:g} s of {scene_name} '{args.mode}' at {args.fps} fps, {w}x{h}, "
            f"{args.transport} with {args.workers} worker(s), model {spec['artifact']}")
    rc = _run(cfg, str(out / "report.json"), quiet=args.quiet, view=args.view, what=what)
    return rc


def _demo_scene(args) -> str:
    """The demo's scene, and its weights when none were named: each scene is played to the weights trained on it."""
    from synthavs.stamps import StampsMissing, check_installed

    scene = args.scene
    if scene in ("auto", "stamps"):
        try:
            check_installed()
            scene = "stamps"
        except StampsMissing as exc:
            if args.scene == "stamps":
                raise UserError(str(exc)) from None
            scene = "synth"
    args.default_weights = SHIPPED_WEIGHTS if scene == "stamps" else SYNTH_WEIGHTS
    return scene


def _common_cfg(args, source: dict, cmd: str, outputs: dict, sink: dict | None = None):
    from stream.graph.pipeline import PipelineConfig

    if args.curve_keys and not Path(args.curve_keys).exists():
        raise UserError(f"--curve-keys {args.curve_keys} not found (make the keys with `icf-stream keys --out DIR`)")
    spec = _backend_spec(args, cmd)
    for path in filter(None, outputs.values()):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return PipelineConfig(source=source, backend=spec, workers=args.workers, transport=args.transport,
                          host=args.host, curve=args.curve_keys or args.curve, hwm=args.hwm, seconds=args.seconds, publish=args.publish,
                          record=outputs["record"], masks=outputs["masks"], metrics=outputs["metrics"],
                          sink={**(sink or {}), **({"events": outputs["events"]} if outputs.get("events") else {})},
                          display=args.show or (not args.no_display and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))))


def cmd_live(args) -> int:
    outputs = _outputs(args)
    _check_outputs(outputs, ())
    if args.mic != "none":  # before any export or output: each is a one-line answer
        preflight.check_mic(args.mic)
    preflight.check_camera(args.camera)
    preflight.check_publish(args.publish)
    _check_model(args, "live")
    source = {"kind": "live", "camera": args.camera, "mic": None if args.mic == "none" else args.mic, "fps": args.fps}
    if args.size:
        source.update(width=args.size[0], height=args.size[1])
    cfg = _common_cfg(args, source, "live", outputs)
    what = (f"icf-stream live: camera {args.camera}, microphone {args.mic}, model {cfg.backend['artifact']} "
            f"({args.backend}, {args.workers} worker(s))")
    return _run(cfg, outputs["report"], quiet=args.quiet, view=args.view, what=what)


def cmd_run(args) -> int:
    from stream.stages.sources import is_url

    outputs = _outputs(args)
    for path in filter(None, (args.video, args.audio)):
        if not is_url(path) and not Path(path).is_file():
            what = "is a folder, not a media file" if Path(path).is_dir() else "does not exist"
            raise UserError(f"'{path}' {what}")
    _check_outputs(outputs, (args.video, args.audio))
    preflight.check_media(args.video, "video", "--video")
    if args.audio:
        preflight.check_media(args.audio, "audio", "--audio")
    preflight.check_publish(args.publish)
    _check_model(args, "run")
    # a network stream is live: read at the pace it arrives (never faster than its timestamps), never "fast"
    pace = "fast" if args.fast and not is_url(args.video) else "realtime"
    source = {"kind": "file", "video": args.video, "audio": args.audio, "pace": pace}
    audio_file = args.audio or args.video
    # the recording carries the file's own audio track (its rate and channels), not the model's 16 kHz mono
    sink = {"record_audio_from": audio_file} if outputs["record"] and not is_url(audio_file) else {}
    cfg = _common_cfg(args, source, "run", outputs, sink)
    what = (f"icf-stream run: {args.video}" + (f" with audio from {args.audio}" if args.audio else "")
            + f" ({pace}), model {cfg.backend['artifact']} ({args.backend}, {args.workers} worker(s))")
    return _run(cfg, outputs["report"], quiet=args.quiet, view=args.view, what=what)


def cmd_devices(args) -> int:
    from stream.stages.live import list_devices

    found = list_devices()
    if found["cameras"]:
        print("cameras:")
        for c in found["cameras"]:
            print(f"  {c['index']}: {c['size']} ({c['backend']})   use --camera {c['index']}")
    else:
        print("cameras: none found (a network camera works too: --camera rtsp://HOST/PATH)")
    if found["microphones"]:
        print("microphones:")
        for m in found["microphones"]:
            print(f"  {m['index']}: {m['name']} ({m['channels']} ch, {m['default_rate']:.0f} Hz)   use --mic {m['index']}")
    else:
        why = f" ({found['microphone_error']})" if found["microphone_error"] else ""
        print(f"microphones: none found{why}")
    return 0


def cmd_keys(args) -> int:
    from stream.wire.transport import make_keys

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")
    try:
        made = make_keys(args.out, args.force)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    for path, public in made.items():
        print(f"{path}: public key {public}")
    print(f"secret keys: {args.out}/server.key_secret, {args.out}/client.key_secret (keep them private)\n"
          f"use: icf-stream run ... --transport tcp --publish tcp://HOST:5556 --curve-keys {args.out}\n"
          f"a subscriber needs {args.out}/server.key and {args.out}/client.key_secret (docs/protocol.md)")
    return 0


def cmd_node(args) -> int:
    from stream.graph.launch import load_graph, node_names, run_node
    from stream.graph.pipeline import PipelineError
    from stream.graph.report import save_report

    if not Path(args.graph).is_file():
        raise UserError(f"graph file {args.graph} not found")
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
    return run(build_parser(), argv, errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "build_parser"]
