"""The stream graph as data: its configuration, which stages exist and with what options, how
they are grouped into processes, where every link lives; plus the supervisor's signal handling and
clock. ``stream.graph.pipeline`` (all nodes from one supervisor) and ``stream.graph.launch`` (one node by hand)
both build on it, so neither reaches into the other.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from stream.stages.options import MultiOptions, OptionsError, options_class
from stream.wire.shm_link import DEFAULT_SLOTS, RESULT_SLOTS
from stream.wire.shm_link import wanted as shm_wanted
from stream.wire.transport import Endpoints, Security, make_endpoints


class PipelineError(RuntimeError):
    """The pipeline could not run (a stage failed to open, a process died): message says which."""


@dataclass
class PipelineConfig:
    source: dict[str, Any]  # {"kind": "synthetic" | "file" | "live", **options} (see stream/stages/sources.py, live.py)
    backend: dict[str, Any]  # spec for stream.stages.models.open_backend
    workers: int = 1
    transport: str = "ipc"  # inproc | ipc | tcp
    host: str = "127.0.0.1"  # tcp bind / connect host (loopback unless told otherwise)
    ports: dict[str, int] = field(default_factory=dict)  # fixed tcp ports per link (default: free ones)
    curve: bool | str = False  # CURVE-encrypt tcp links: True = one-run keys; a folder = keys made by `icf-stream keys`
    publish: str | None = None  # address of the mask PUB socket, e.g. tcp://127.0.0.1:5556
    record: str | None = None  # MP4 overlay + audio
    masks: str | None = None  # npz of every mask
    metrics: str | None = None  # JSONL log
    display: bool = False
    seconds: float | None = None  # graceful stop after this long (None: until the source ends)
    hwm: int = 4
    # frames source -> segmenter and results -> sink by shared memory: on | off | auto (on for ipc);
    # frames: the frame ring only, results as payload (for comparisons)
    shm: str = "auto"
    stream_id: str = "cam0"
    sink: dict[str, Any] = field(default_factory=dict)  # extra SinkStage options
    # extra segmenter options: one worker, MultiOptions' (audio_wait_ms, idle_timeout_s, top_k, ...); several, ContextOptions'
    # (top_k goes to the workers); "inline": False runs one worker behind a context stage (scale-out with one worker)
    context: dict[str, Any] = field(default_factory=dict)
    startup_timeout_s: float = 180.0
    grace_s: float = 15.0  # after stop: time to drain and finalise before processes are killed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_specs(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """{stage name: {"type", "kind" (sources), "options"}}, every stage's options checked against
    its dataclass (stream/stages/options.py) here, in the supervisor: a bad option is a PipelineError
    naming the stage and the option before any process starts."""
    src = dict(cfg.source)
    kind = src.pop("kind", None)
    src.setdefault("video_subs", 1)
    src.setdefault("audio_subs", 1 + int(bool(cfg.record)))
    send_image = bool(cfg.record or cfg.display or cfg.sink.get("view"))  # otherwise the frame need not travel back to the sink
    extra = {k: v for k, v in cfg.context.items() if k != "inline"}
    specs = {"source": {"type": "source", "kind": kind, "options": src}}
    # the segmenter keeps the name "context" whatever runs it: the report's stages, drops and queues read it there
    if _inline(cfg):  # one worker, no hop: the multi-stream segmenter with one lane (this graph's own stream), batch 1
        specs["context"] = {"type": "multi", "options": {"backend": cfg.backend, "max_batch": 1, "send_image": send_image,
                                                         **_segmenter_options(extra)}}
    else:
        worker_opts = {"top_k": extra.pop("top_k")} if "top_k" in extra else {}
        specs["context"] = {"type": "context", "options": {"workers": cfg.workers, **extra}}
        for i in range(cfg.workers):
            specs[f"worker{i}"] = {"type": "worker", "options": {"backend": cfg.backend, "index": i, "send_image": send_image,
                                                                 **worker_opts}}
    specs["sink"] = {"type": "sink", "options": {"record": cfg.record, "masks": cfg.masks, "metrics": cfg.metrics,
                                                 "publish": bool(cfg.publish), "display": cfg.display,
                                                 "fps_hint": int(cfg.source.get("fps") or 30), **cfg.sink}}
    for spec in specs.values():
        try:
            options_class(spec).parse(spec["options"])
        except OptionsError as exc:
            raise PipelineError(f"bad pipeline configuration: {exc}") from None
    return specs



def _inline(cfg: PipelineConfig) -> bool:
    """One worker run by the segmenter itself (no hop), unless ``context["inline"]`` is False."""
    return cfg.workers == 1 and cfg.context.get("inline", True)


def _segmenter_options(extra: dict[str, Any]) -> dict[str, Any]:
    """``cfg.context`` for the one-worker segmenter: its own options pass; the scale-out ones
    (workers, job_timeout_s, eos_timeout_s: no worker to wait for) and streams / backend are refused."""
    own = {f.name for f in fields(MultiOptions)} - {"streams", "backend", "max_batch"}
    if bad := sorted(set(extra) - own):
        raise PipelineError(f"bad pipeline configuration: context option(s) {bad} do not apply to one worker "
                            f"(they do with --workers 2 or more); one worker takes {sorted(own)}")
    return extra


def check_outputs(cfg: PipelineConfig) -> None:
    """Every output path is checked before anything starts: never found at the first frame, and
    never the input file (recording onto the input destroyed it)."""
    from stream.stages.outputs import check_output

    inputs = (cfg.source.get("video"), cfg.source.get("audio"))
    for what, path in (("--record", cfg.record), ("--masks", cfg.masks), ("--metrics", cfg.metrics)):
        why = check_output(path, inputs) if path else None
        if why:
            raise PipelineError(f"{what}: {why}")


def layout(cfg: PipelineConfig) -> list[tuple[str, list[str]]]:
    """Process groups: source | segmenter | sink. One worker runs inside the segmenter (no hop);
    with several, worker0 shares the context stage's process and the others get one each."""
    if _inline(cfg):
        layout = [("source", ["source"]), ("segmenter", ["context"])]
    else:
        layout = [("source", ["source"]), ("segmenter", ["context", "worker0"])]
        layout += [(f"worker{i}", [f"worker{i}"]) for i in range(1, cfg.workers)]
    layout.append(("sink", ["sink"]))
    return layout


def endpoints_for(cfg: PipelineConfig, run_dir: str) -> Endpoints:
    addrs = make_endpoints(cfg.transport, host=cfg.host, ports=cfg.ports, run_dir=run_dir)
    if cfg.publish:
        addrs["masks"] = cfg.publish
    try:
        security = (Security.load(cfg.curve) if isinstance(cfg.curve, str) else Security.generate()) if cfg.curve else None
    except RuntimeError as exc:
        raise PipelineError(str(exc)) from None
    if cfg.curve and cfg.transport != "tcp" and not (cfg.publish or "").startswith("tcp://"):
        raise PipelineError("--curve applies to tcp links; use --transport tcp or a tcp:// --publish address")
    try:
        shm = {"slots": DEFAULT_SLOTS, "result_slots": 0 if cfg.shm == "frames" else RESULT_SLOTS}  # frames: results stay payload
        extra = {"shm": shm} if shm_wanted(cfg.shm, cfg.transport) else {}
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    # EOS token: shared by this run's stages, never published (a forged EOS cannot stop the run)
    return Endpoints(addresses=addrs, security=security, hwm=cfg.hwm, extra=extra, token=secrets.token_hex(16))


class Signals:
    """SIGINT / SIGTERM: first asks for a graceful stop, the second aborts."""

    def __init__(self, stop, abort) -> None:
        self.stop, self.abort, self.saved = stop, abort, {}
        self.count = 0  # our own signals: stop may already be set by a child that got the same Ctrl-C

    def __enter__(self) -> Signals:
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


def supervisor_clock(cfg: PipelineConfig, stop, abort):
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
