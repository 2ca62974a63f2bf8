"""The graph, from configuration: which stages run, in which processes, over which transport.

    report = stream.run_pipeline(PipelineConfig(source={"kind": "file", "video": "in.mp4"},
                                                backend={"kind": "engine", "artifact": "m.onnx"},
                                                transport="ipc", workers=2))

transport "inproc": every stage is a thread of this process (one zmq.Context, zero-copy).
transport "ipc" / "tcp": stages run in child processes (spawned, so no inherited threads or
locks): source | context + worker0 | worker1.. | sink, with this process as supervisor. The
same stage code runs either way; only the endpoint addresses differ. For several machines, run
``icf-stream node`` (stream/graph/launch.py) with a graph file; the graph itself is stream/graph/graph.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from stream.graph.graph import (
    PipelineConfig,
    PipelineError,
    Signals,
    check_outputs,
    endpoints_for,
    layout,
    stage_specs,
    supervisor_clock,
)
from stream.graph.node import build_stage, run_stages
from stream.graph.supervise import supervise_nodes
from stream.stages.outputs import commit_outputs
from stream.wire.transport import Endpoints

__all__ = ["PipelineConfig", "PipelineError", "check_outputs", "run_pipeline"]


def run_pipeline(config: PipelineConfig | dict[str, Any]) -> dict[str, Any]:
    """Runs the graph to the end of the source, ``seconds``, or a signal; returns the report."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig(**config)
    if cfg.workers < 1:
        raise PipelineError("workers must be >= 1")
    check_outputs(cfg)
    sweep_run_dirs()
    # short: ipc paths must fit sockaddr_un (~107 bytes); the pid lets a later run clean up after
    # a supervisor that was killed (SIGKILL runs no finally)
    run_dir = tempfile.mkdtemp(prefix=f"icf-{os.getpid()}-", dir="/tmp")
    try:
        endpoints = endpoints_for(cfg, run_dir)
        specs = stage_specs(cfg)
        t0 = time.monotonic()
        if cfg.transport == "inproc":
            reports, errors = _run_threads(cfg, endpoints, specs)
        else:
            reports, errors = _run_processes(cfg, endpoints, specs)
        report = _assemble(cfg, reports, errors, time.monotonic() - t0)
        # the run's files replace the earlier run's together, only if it succeeded (stream/stages/outputs.py)
        report["outputs"] = commit_outputs([cfg.record, cfg.masks, cfg.metrics], ok=not report["errors"])
        return report
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def sweep_run_dirs() -> None:
    """Removes the socket folders of supervisors that no longer exist."""
    for path in Path("/tmp").glob("icf-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and path.is_dir() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _run_threads(cfg: PipelineConfig, endpoints: Endpoints, specs: dict) -> tuple[dict, list[str]]:
    stop, abort, go = threading.Event(), threading.Event(), threading.Event()
    stages = {name: build_stage(spec) for name, spec in specs.items()}
    with Signals(stop, abort):
        return run_stages(stages, endpoints, stop, abort, go, cfg.stream_id, supervise=supervisor_clock(cfg, stop, abort))




def _run_processes(cfg: PipelineConfig, endpoints: Endpoints, specs: dict) -> tuple[dict, list[str]]:
    """One child per node of ``layout(cfg)``, supervised by stream.graph.supervise (the shared rules)."""
    nodes = [(node, {n: specs[n] for n in names}, endpoints, cfg.stream_id) for node, names in layout(cfg)]
    by_node, errors, _ = supervise_nodes(cfg, nodes, what="pipeline")
    reports: dict[str, dict] = {}
    for payload in by_node.values():
        reports.update(payload)  # stage name -> report (stage names are unique across nodes)
    return reports, errors


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
    if sent and not processed and not errors:  # never report success for a run that made no mask
        errors = [f"no frame was processed ({sent} sent); see drops and each stage's counters in the report"]
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
                  "malformed_messages": sum(r.get("counters", {}).get(k, 0) for r in reports.values()
                                            for k in ("malformed", "oversized", "refused_jumps", "forged_eos"))},
        "queues": {**ctxr.get("queues", {}), **sink.get("queues", {})},
        "miou": sink.get("miou"),
        "stages": reports,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("backend",)} | {"backend": cfg.backend},
    }
