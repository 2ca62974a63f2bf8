"""The graph, from configuration: which stages run, in which processes, over which transport.

    report = stream.run_pipeline(PipelineConfig(source={"kind": "file", "video": "in.mp4"},
                                                backend={"kind": "engine", "artifact": "m.onnx"},
                                                transport="ipc", workers=2))

transport "inproc": every stage is a thread of this process (one zmq.Context, zero-copy).
transport "ipc" / "tcp": stages run in child processes (spawned, so no inherited threads or
locks): source | context + worker0 | worker1.. | sink, with this process as supervisor. The
same stage code runs either way; only the endpoint addresses differ. For several machines, run
``python -m stream.node`` style launchers with the same endpoint table (see docs/protocol.md).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .node import build_stage, node_main, run_stages
from .shm_link import DEFAULT_SLOTS
from .shm_link import wanted as shm_wanted
from .transport import Endpoints, Security, make_endpoints


class PipelineError(RuntimeError):
    """The pipeline could not run (a stage failed to open, a process died): message says which."""


@dataclass
class PipelineConfig:
    source: dict[str, Any]  # {"kind": "synthetic" | "file" | "live", **options} (see stream/sources.py, live.py)
    backend: dict[str, Any]  # spec for stream.backend.open_backend
    workers: int = 1
    transport: str = "ipc"  # inproc | ipc | tcp
    host: str = "127.0.0.1"  # tcp bind / connect host (loopback unless told otherwise)
    ports: dict[str, int] = field(default_factory=dict)  # fixed tcp ports per link (default: free ones)
    curve: bool = False  # CURVE-encrypt tcp links (ephemeral keys for this run)
    publish: str | None = None  # address of the mask PUB socket, e.g. tcp://127.0.0.1:5556
    record: str | None = None  # MP4 overlay + audio
    masks: str | None = None  # npz of every mask
    metrics: str | None = None  # JSONL log
    display: bool = False
    seconds: float | None = None  # graceful stop after this long (None: until the source ends)
    hwm: int = 4
    shm: str = "auto"  # frames source -> segmenter by shared memory: on | off | auto (on for ipc)
    stream_id: str = "cam0"
    sink: dict[str, Any] = field(default_factory=dict)  # extra SinkStage options
    context: dict[str, Any] = field(default_factory=dict)  # extra ContextStage options
    startup_timeout_s: float = 180.0
    grace_s: float = 15.0  # after stop: time to drain and finalise before processes are killed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stage_specs(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    src = dict(cfg.source)
    kind = src.pop("kind")
    src.setdefault("video_subs", 1)
    src.setdefault("audio_subs", 1 + int(bool(cfg.record)))
    inline = cfg.workers == 1 and cfg.context.get("inline", True)
    send_image = bool(cfg.record or cfg.display)  # otherwise the frame need not travel back to the sink
    ctx_opts = {"workers": cfg.workers, "send_image": send_image, **{k: v for k, v in cfg.context.items() if k != "inline"}}
    if inline:
        ctx_opts["inline"] = cfg.backend  # one worker: the context stage runs the model itself
    specs = {"source": {"type": "source", "kind": kind, "options": src}, "context": {"type": "context", "options": ctx_opts}}
    for i in range(0 if inline else cfg.workers):
        specs[f"worker{i}"] = {"type": "worker", "options": {"backend": cfg.backend, "index": i, "send_image": send_image}}
    specs["sink"] = {"type": "sink", "options": {"record": cfg.record, "masks": cfg.masks, "metrics": cfg.metrics,
                                                 "publish": bool(cfg.publish), "display": cfg.display,
                                                 "fps_hint": int(cfg.source.get("fps") or 30), **cfg.sink}}
    return specs


def _layout(cfg: PipelineConfig) -> list[tuple[str, list[str]]]:
    """Process groups: source | segmenter | sink. One worker runs inside the context stage (no
    hop); with several, worker0 shares the context's process and the others get one each."""
    if cfg.workers == 1 and cfg.context.get("inline", True):
        layout = [("source", ["source"]), ("segmenter", ["context"])]
    else:
        layout = [("source", ["source"]), ("segmenter", ["context", "worker0"])]
        layout += [(f"worker{i}", [f"worker{i}"]) for i in range(1, cfg.workers)]
    layout.append(("sink", ["sink"]))
    return layout


def _endpoints(cfg: PipelineConfig, run_dir: str) -> Endpoints:
    addrs = make_endpoints(cfg.transport, host=cfg.host, ports=cfg.ports, run_dir=run_dir)
    if cfg.publish:
        addrs["masks"] = cfg.publish
    security = Security.generate() if cfg.curve else None
    if cfg.curve and cfg.transport != "tcp":
        raise PipelineError("--curve applies to tcp links; use --transport tcp")
    try:
        extra = {"shm": {"slots": DEFAULT_SLOTS}} if shm_wanted(cfg.shm, cfg.transport) else {}
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    return Endpoints(addresses=addrs, security=security, hwm=cfg.hwm, extra=extra)


class _Signals:
    """SIGINT / SIGTERM: first asks for a graceful stop, the second aborts."""

    def __init__(self, stop, abort) -> None:
        self.stop, self.abort, self.saved = stop, abort, {}
        self.count = 0  # our own signals: stop may already be set by a child that got the same Ctrl-C

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count += 1
        (self.stop if self.count == 1 else self.abort).set()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def run_pipeline(config: PipelineConfig | dict[str, Any]) -> dict[str, Any]:
    """Runs the graph to the end of the source, ``seconds``, or a signal; returns the report."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig(**config)
    if cfg.workers < 1:
        raise PipelineError("workers must be >= 1")
    _sweep_run_dirs()
    # short: ipc paths must fit sockaddr_un (~107 bytes); the pid lets a later run clean up after
    # a supervisor that was killed (SIGKILL runs no finally)
    run_dir = tempfile.mkdtemp(prefix=f"icf-{os.getpid()}-", dir="/tmp")
    try:
        endpoints = _endpoints(cfg, run_dir)
        specs = _stage_specs(cfg)
        t0 = time.monotonic()
        if cfg.transport == "inproc":
            reports, errors = _run_threads(cfg, endpoints, specs)
        else:
            reports, errors = _run_processes(cfg, endpoints, specs)
        return _assemble(cfg, reports, errors, time.monotonic() - t0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _sweep_run_dirs() -> None:
    """Removes the socket folders of supervisors that no longer exist."""
    for path in Path("/tmp").glob("icf-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and path.is_dir() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _run_threads(cfg: PipelineConfig, endpoints: Endpoints, specs: dict) -> tuple[dict, list[str]]:
    stop, abort, go = threading.Event(), threading.Event(), threading.Event()
    stages = {name: build_stage(spec) for name, spec in specs.items()}
    with _Signals(stop, abort):
        return run_stages(stages, endpoints, stop, abort, go, cfg.stream_id, supervise=_timer(cfg, stop, abort))


def _timer(cfg: PipelineConfig, stop, abort):
    """The supervisor's clock: graceful stop after ``seconds``, abort ``grace_s`` after a stop."""
    state: dict[str, float | None] = {"start": None, "stopped": None}

    def tick() -> None:
        now = time.monotonic()
        state["start"] = state["start"] or now
        if cfg.seconds is not None and now - state["start"] > cfg.seconds:
            stop.set()
        if stop.is_set():
            state["stopped"] = state["stopped"] or now
            if now - state["stopped"] > cfg.grace_s:
                abort.set()

    return tick


def _run_processes(cfg: PipelineConfig, endpoints: Endpoints, specs: dict) -> tuple[dict, list[str]]:
    ctx = mp.get_context("spawn")  # no fork: children must not inherit threads, sockets or locks
    stop, abort, go = ctx.Event(), ctx.Event(), ctx.Event()
    inbox = ctx.Queue()
    procs: dict[str, Any] = {}
    reports: dict[str, dict] = {}
    errors: list[str] = []
    opened: set[str] = set()
    layout = _layout(cfg)
    tick = _timer(cfg, stop, abort)
    with _Signals(stop, abort):
        try:
            for node, names in layout:
                node_specs = {n: copy.deepcopy(specs[n]) for n in names}
                p = ctx.Process(target=node_main, name=f"icf-{node}", daemon=True,
                                args=(node, node_specs, endpoints, cfg.stream_id, stop, abort, go, inbox, os.getpid()))
                p.start()
                procs[node] = p
            deadline = time.monotonic() + cfg.startup_timeout_s
            finished: set[str] = set()
            while len(finished) < len(procs):
                try:
                    kind, node, payload = inbox.get(timeout=0.1)
                except queue.Empty:
                    kind = None
                if kind == "opened":
                    opened.add(node)
                    errors.extend(payload)
                    if len(opened) == len(procs) and not errors:
                        go.set()
                elif kind == "report":
                    finished.add(node)
                    reports.update(payload)
                    errors.extend(r["error"] for r in payload.values() if "error" in r and r["error"] not in errors)
                if errors and not stop.is_set():
                    stop.set()  # one stage failed: end the run, keep what the others finalise
                if go.is_set():
                    tick()
                elif time.monotonic() > deadline and not abort.is_set():
                    errors.append(f"pipeline did not start within {cfg.startup_timeout_s:.0f} s (opened: {sorted(opened)})")
                    stop.set()
                    abort.set()
                elif errors or stop.is_set():
                    tick()
                for node, p in procs.items():  # a child that died without a report
                    if node not in finished and p.exitcode is not None and inbox.empty():
                        time.sleep(0.2)
                        if inbox.empty():
                            finished.add(node)
                            errors.append(f"process {node} exited with code {p.exitcode} without a report")
                            stop.set()
        finally:
            if any(p.is_alive() for p in procs.values()):
                stop.set()  # reports are in (or we are failing): give children a moment, then abort
                for p in procs.values():
                    p.join(timeout=5)
                abort.set()
            _reap(procs)
    return reports, errors


def _reap(procs: dict[str, Any]) -> None:
    """Every child is gone when this returns: join, then terminate, then kill."""
    for p in procs.values():
        p.join(timeout=5)
    for p in procs.values():
        if p.is_alive():
            p.terminate()
            p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=3)


def _assemble(cfg: PipelineConfig, reports: dict[str, dict], errors: list[str], elapsed: float) -> dict[str, Any]:
    sink = reports.get("sink", {})
    src = reports.get("source", {}).get("counters", {})
    ctxr = reports.get("context", {})
    workers = [r for n, r in sorted(reports.items()) if n.startswith("worker") or (n == "context" and "worker" in r)]
    sent = src.get("frames_sent")
    frames = dict(sink.get("frames", {}))
    if frames.get("sent") is None and sent is not None:
        frames["sent"] = sent
    fps_source = sent / src["elapsed_s"] if sent and src.get("elapsed_s") else None
    processed = frames.get("processed", 0)
    return {
        "ok": not errors and bool(sink),
        "errors": errors,
        "elapsed_s": round(elapsed, 2),
        "transport": cfg.transport,
        "workers": cfg.workers,
        "model": next((w.get("backend") for w in workers if w.get("backend")), None),
        "frames": frames,
        "fps": {"source": round(fps_source, 2) if fps_source else None, "processed": sink.get("fps_processed"),
                "processed_ratio": round(processed / sent, 4) if sent else None},
        "latency_ms": sink.get("latency_ms", {}),
        "drops": {"context": {k: ctxr.get("counters", {}).get(k, 0) for k in
                              ("transport_gaps", "superseded", "stale", "seq_resets", "audio_underruns", "lost_jobs", "malformed", "oversized")},
                  "sink": frames.get("dropped_by"),
                  "malformed_messages": sum(r.get("counters", {}).get(k, 0) for r in reports.values() for k in ("malformed", "oversized"))},
        "queues": {**ctxr.get("queues", {}), **sink.get("queues", {})},
        "miou": sink.get("miou"),
        "stages": reports,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("backend",)} | {"backend": cfg.backend},
    }
