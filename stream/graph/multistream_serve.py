"""``icf-stream serve``: N sources, one model. Processes: one per source, the multi-stream
segmenter (stream/stages/multistream.py), one sink per stream (masks, metrics, PUB keyed by stream id),
supervised by the same rules as the single-stream pipeline (stream/graph/supervise.py: spawn, go, stop, abort, reap).

    report = run_serve(ServeConfig(sources=[{"kind": "synthetic", "seed": i} for i in range(3)],
                                   backend={"kind": "engine", "artifact": "b/icf-lite-b1.onnx",
                                            "artifacts": {1: ..., 2: ..., 3: ...}}))

Every stream has its own endpoint table (its own video, audio, results and masks links), so a
stream's frames, audio and results can only meet its own lane and its own sink. ``publish``: one
address where every stream's masks appear (each header names its ``stream``): the sinks publish on
internal sockets and a forwarder in the supervisor (XSUB connected to all of them -> XPUB bound
at ``publish``) merges them, passing subscriptions upstream.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream.graph.graph import PipelineError
from stream.graph.pipeline import sweep_run_dirs
from stream.graph.supervise import supervise_nodes
from stream.stages.outputs import commit_outputs
from stream.wire.shm_link import DEFAULT_SLOTS, RESULT_SLOTS
from stream.wire.shm_link import wanted as shm_wanted
from stream.wire.subscriptions import SubscriptionGate, warn_if_exposed
from stream.wire.transport import MAX_SUBSCRIPTION_BYTES, Endpoints, make_endpoints


@dataclass
class ServeConfig:
    sources: list[dict[str, Any]]  # one {"kind": ..., **options} per stream; "stream_id" optional (default cam<i>)
    backend: dict[str, Any]  # batch-1 spec + "artifacts" {B: path} (engine) or "batch_sizes" (null)
    transport: str = "ipc"  # ipc | tcp (every stage in its own process)
    host: str = "127.0.0.1"
    max_batch: int | None = None  # cap on rows per step call (default: the largest exported size)
    deadline_ms: float = 5.0  # longest a ready frame waits for other streams' frames
    shm: str = "auto"  # frames by shared memory: on | off | auto (ipc)
    publish: str | None = None  # one PUB address for every stream's masks (e.g. tcp://127.0.0.1:5560)
    out_dir: str | None = None  # per-stream masks (<id>.npz) and metrics (<id>.jsonl)
    seconds: float | None = None
    hwm: int = 4
    startup_timeout_s: float = 180.0
    grace_s: float = 15.0
    sink: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ids(self) -> list[str]:
        return [s.get("stream_id") or f"cam{i}" for i, s in enumerate(self.sources)]


class MaskForwarder:
    """XSUB (connected to every sink's internal mask socket) -> XPUB (bound at the public address),
    in a thread of the supervisor. Masks of all streams on one socket; a slow subscriber loses
    masks at the HWM, never stalls a sink."""

    def __init__(self, internal: list[str], public: str, hwm: int = 32) -> None:
        import threading

        import zmq

        self.ctx = zmq.Context()
        self.xsub, self.xpub = self.ctx.socket(zmq.XSUB), self.ctx.socket(zmq.XPUB)
        for sock in (self.xsub, self.xpub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
        self.xpub.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        self.xpub.setsockopt(zmq.XPUB_MANUAL, 1)  # subscriptions bounded by the gate, passed up only when new (stream/wire/subscriptions.py)
        self.gate = SubscriptionGate(self.xpub, forward=self.xsub.send)
        if public.startswith("tcp://"):
            warn_if_exposed(public)
        try:
            self.xpub.bind(public)
        except zmq.ZMQError as exc:
            self.close()
            raise PipelineError(f"cannot bind the mask PUB socket at {public}: {exc}") from None
        for addr in internal:
            self.xsub.connect(addr)
        self.done = threading.Event()
        self.forwarded = 0
        self.thread = threading.Thread(target=self._run, name="mask-forwarder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self.xsub, zmq.POLLIN)
        poller.register(self.xpub, zmq.POLLIN)
        while not self.done.is_set():
            for sock, _ in poller.poll(100):
                if sock is self.xsub:
                    self.xpub.send_multipart(self.xsub.recv_multipart(copy=False), copy=False)
                    self.forwarded += 1
                else:  # (un)subscriptions from outside: the gate passes new topics up to every sink
                    self.gate.drain()

    def close(self) -> None:
        if hasattr(self, "done"):
            self.done.set()
            self.thread.join(5)
        self.xsub.close(0)
        self.xpub.close(0)
        self.ctx.term()


def _tables(cfg: ServeConfig, run_dir: str) -> dict[str, Endpoints]:
    try:
        shm = {"slots": DEFAULT_SLOTS, "result_slots": 0 if cfg.shm == "frames" else RESULT_SLOTS}  # frames: results stay payload
        extra = {"shm": shm} if shm_wanted(cfg.shm, cfg.transport) else {}
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    tables = {}
    for i, sid in enumerate(cfg.ids):
        folder = os.path.join(run_dir, str(i))
        os.makedirs(folder, exist_ok=True)
        addrs = make_endpoints(cfg.transport, host=cfg.host, run_dir=folder)  # masks: internal, see MaskForwarder
        # EOS token per stream: shared by its stages, never published (graph.endpoints_for does the same)
        tables[sid] = Endpoints(addresses=addrs, hwm=cfg.hwm, extra=dict(extra), token=secrets.token_hex(16))
    return tables


def _nodes(cfg: ServeConfig, tables: dict[str, Endpoints]) -> list[tuple[str, str, Endpoints, dict]]:
    """(node, stream id, endpoints, {stage: spec}) for every process."""
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    nodes = []
    for src, sid in zip(cfg.sources, cfg.ids):
        opts = {k: v for k, v in src.items() if k not in ("kind", "stream_id")}
        opts.setdefault("video_subs", 1)
        opts.setdefault("audio_subs", 1)
        nodes.append((f"source-{sid}", sid, tables[sid], {"source": {"type": "source", "kind": src["kind"], "options": opts}}))
    streams = [{"stream_id": sid, "endpoints": tables[sid]} for sid in cfg.ids]
    multi = {"type": "multi", "options": {"streams": streams, "backend": cfg.backend, "max_batch": cfg.max_batch,
                                          "deadline_ms": cfg.deadline_ms, "send_image": bool(cfg.sink.get("view"))}}
    nodes.append(("segmenter", "multi", tables[cfg.ids[0]], {"multi": multi}))
    for src, sid in zip(cfg.sources, cfg.ids):
        sink = {"masks": str(out / f"{sid}.npz") if out else None, "metrics": str(out / f"{sid}.jsonl") if out else None,
                "publish": bool(cfg.publish), "fps_hint": int(src.get("fps") or 30), **cfg.sink}
        nodes.append((f"sink-{sid}", sid, tables[sid], {"sink": {"type": "sink", "options": sink}}))
    return nodes


def run_serve(config: ServeConfig | dict[str, Any], *, on_go: Callable[[dict[str, int]], None] | None = None) -> dict[str, Any]:
    """Runs N streams through one batched model until the sources end, ``seconds``, or a signal.
    ``on_go``: called once with {node: pid} when every stage is open (see stream.graph.supervise)."""
    cfg = config if isinstance(config, ServeConfig) else ServeConfig(**config)
    if not cfg.sources:
        raise PipelineError("serve needs at least one source")
    if cfg.transport not in ("ipc", "tcp"):
        raise PipelineError(f"serve runs every stage in its own process: transport ipc or tcp, not {cfg.transport!r}")
    if len(set(cfg.ids)) != len(cfg.ids):
        raise PipelineError(f"stream ids must be unique: {cfg.ids}")
    sweep_run_dirs()
    run_dir = tempfile.mkdtemp(prefix=f"icf-{os.getpid()}-", dir="/tmp")
    try:
        tables = _tables(cfg, run_dir)
        nodes = _nodes(cfg, tables)
        forwarder = MaskForwarder([t["masks"] for t in tables.values()], cfg.publish) if cfg.publish else None
        t0 = time.monotonic()
        try:
            reports, errors, lost = _supervise(cfg, nodes, on_go)
        finally:
            if forwarder is not None:
                forwarder.close()
        report = _assemble(cfg, reports, errors, lost, time.monotonic() - t0)
        report["published"] = forwarder.forwarded if forwarder is not None else None
        report["outputs"] = {}
        for sid, s in report["streams"].items():  # a stream's files are committed when it and the run succeeded
            files = [str(Path(cfg.out_dir) / f"{sid}{ext}") for ext in (".npz", ".jsonl")] if cfg.out_dir else []
            report["outputs"].update(commit_outputs(files, ok=s["ok"] and not errors and bool(reports.get(f"sink-{sid}"))))
        return report
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)




def _supervise(cfg: ServeConfig, nodes: list, on_go=None) -> tuple[dict[str, dict], list[str], list[str]]:
    """The single-stream supervisor's rules (stream.graph.supervise), with one difference: once the
    streams run, each stream ends on its own. A source that ends or fails, or a sink that fails or
    dies, ends its own stream only (failures recorded in ``lost``); the run ends with the last stream."""
    launches = [(node, specs, endpoints, sid) for node, sid, endpoints, specs in nodes]
    return supervise_nodes(cfg, launches, what="serve", expendable=lambda node: node.startswith(("source-", "sink-")),
                           stream_stops=True, on_go=on_go)


def _assemble(cfg: ServeConfig, reports: dict[str, dict], errors: list[str], lost: list[str], elapsed: float) -> dict[str, Any]:
    multi = reports.get("segmenter", {}).get("multi", {})
    streams = {}
    for sid in cfg.ids:
        sink = reports.get(f"sink-{sid}", {}).get("sink", {})
        src = reports.get(f"source-{sid}", {}).get("source", {}).get("counters", {})
        frames = dict(sink.get("frames", {}))
        sent = src.get("frames_sent", frames.get("sent"))
        lat = sink.get("latency_ms", {})
        processed = frames.get("processed", 0)
        why = [w.split(": ", 1)[1] for w in lost if w.startswith((f"source-{sid}: ", f"sink-{sid}: "))]
        lane = multi.get("streams", {}).get(sid, {}).get("counters", {})
        why += [f"segmenter: {lane[k]}" for k in ("source_silent", "sink_gone") if lane.get(k)]
        reason = src.get("end_reason")  # end (of the media) | stopped (signal, --seconds, a failed stage) | closed
        streams[sid] = {
            "ended": "; ".join(why) if why else f"the source {'ended' if reason in ('end', None) else reason}", "ok": not why,
            "frames": frames, "sent": sent, "processed": processed,
            "processed_ratio": round(processed / sent, 4) if sent else None,
            "capture_to_mask_ms": lat.get("capture_to_mask", {}), "fps_processed": sink.get("fps_processed"),
            "miou": sink.get("miou"), "lane": multi.get("streams", {}).get(sid, {}),
        }
    if lost and not any(s["ok"] for s in streams.values()):
        errors = [*errors, "every stream ended early (see lost)"]
    return {
        "ok": not errors and all(reports.get(f"sink-{s}") for s in cfg.ids),
        "errors": errors, "lost": lost, "elapsed_s": round(elapsed, 2), "transport": cfg.transport, "n_streams": len(cfg.ids),
        "model": multi.get("model"), "batching": multi.get("batching"), "streams": streams,
        "stages": reports, "config": cfg.to_dict(),
    }


__all__ = ["ServeConfig", "run_serve"]
