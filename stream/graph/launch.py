"""Run one node of a graph by hand, for pipelines that span machines: ``icf-stream node``.

A graph file (JSON) holds the pipeline configuration and where every link lives:

    {
      "pipeline": {"source": {"kind": "live", "camera": 0, "mic": "default"},
                   "backend": {"kind": "engine", "artifact": "icf-lite.onnx", "backend": "auto"},
                   "workers": 2, "record": "out/overlay.mp4", "transport": "tcp"},
      "endpoints": {"video": "tcp://cam-host:5555", "audio": "tcp://cam-host:5556",
                    "jobs": "tcp://gpu-host:5557", "results": "tcp://show-host:5558",
                    "masks": "tcp://show-host:5559"},
      "bind": {"video": "tcp://0.0.0.0:5555", "audio": "tcp://0.0.0.0:5556", "jobs": "tcp://0.0.0.0:5557",
               "results": "tcp://0.0.0.0:5558", "masks": "tcp://0.0.0.0:5559"},
      "curve_keys": "keys/"
    }

Nodes (see ``icf-stream node --list``): source, segmenter (context + worker0, or with one worker
the segmenter that runs the model itself), worker1.., sink. Start them in any order; the source waits for its
subscribers. The end of the stream travels as EOS messages, so every node finishes by itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from stream.graph.graph import PipelineConfig, PipelineError, Signals, check_outputs, layout, stage_specs, supervisor_clock
from stream.graph.node import build_stage, run_stages
from stream.stages.outputs import commit_outputs
from stream.wire.transport import LINKS, Endpoints, Security


def load_graph(path: str | Path) -> tuple[PipelineConfig, Endpoints]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read graph file {path}: {exc}") from exc
    missing = [k for k in ("pipeline", "endpoints") if k not in doc]
    if missing:
        raise PipelineError(f"graph file {path} lacks {missing}")
    cfg = PipelineConfig(**doc["pipeline"])
    links = [link for link in LINKS if link not in doc["endpoints"] and not (link == "masks" and not cfg.publish)]
    if links:
        raise PipelineError(f"graph file {path}: no endpoint for link(s) {links}")
    security = Security.from_dir(doc["curve_keys"]) if doc.get("curve_keys") else None
    addrs = dict(doc["endpoints"])
    if cfg.publish:
        addrs["masks"] = cfg.publish
    # EOS token: the graph's own, or one derived from the CURVE secret every machine holds
    token = doc.get("eos_token") or (hashlib.sha256(security.server_secret).hexdigest()[:32] if security else None)
    return cfg, Endpoints(addresses=addrs, bind=dict(doc.get("bind", {})), security=security, hwm=cfg.hwm, token=token)


def node_names(cfg: PipelineConfig) -> list[str]:
    return [name for name, _ in layout(cfg)]


def run_node(path: str | Path, node: str) -> dict[str, Any]:
    """Runs the stages of ``node`` in this process until the stream ends; returns their reports."""
    cfg, endpoints = load_graph(path)
    check_outputs(cfg)  # never record onto an input, never find a bad path at the first frame
    groups = dict(layout(cfg))
    if node not in groups:
        raise PipelineError(f"no node '{node}' in this graph; nodes: {list(groups)}")
    specs = stage_specs(cfg)
    if "source" in groups[node]:
        specs["source"]["options"].setdefault("subscriber_timeout_s", 120)  # other machines start when they start
    stages = {name: build_stage(specs[name]) for name in groups[node]}
    stop, abort, go = threading.Event(), threading.Event(), threading.Event()
    with Signals(stop, abort):
        reports, errors = run_stages(stages, endpoints, stop, abort, go, cfg.stream_id, supervise=supervisor_clock(cfg, stop, abort))
    report = {"node": node, "errors": errors, "stages": reports}
    if "sink" in groups[node]:  # the sink's files replace the earlier run's only if this node's run succeeded
        report["outputs"] = commit_outputs([cfg.record, cfg.masks, cfg.metrics], ok=not errors)
    return report
