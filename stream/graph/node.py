"""One process of the graph: builds its stages, runs each in a thread, reports back.

``node_main`` is the entry point of a spawned child. A SIGINT / SIGTERM here only asks for a
graceful stop (the supervisor decides about aborting); a watchdog aborts when the supervisor
disappears, so a killed supervisor never leaves orphans running.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import signal
import threading
import time
from typing import Any

import zmq

from stream.stages.stage import Stage, StageEnv, run_stage
from stream.wire.transport import Endpoints

# (stage type, source kind) -> (module, class), imported when built so a process loads only what it
# runs (and sources.py need not import live.py, which builds on sources.AVOutput)
STAGE_CLASSES = {
    ("source", "synthetic"): ("sources", "SyntheticSource"),
    ("source", "file"): ("sources", "FileSource"),
    ("source", "live"): ("live", "LiveSource"),
    ("context", None): ("context_stage", "ContextStage"),
    ("worker", None): ("worker", "WorkerStage"),
    ("multi", None): ("multistream", "MultiSegmenterStage"),  # many streams, one model
    ("sink", None): ("sink", "SinkStage"),
}


def build_stage(spec: dict[str, Any]) -> Stage:
    """The stage of a spec ({"type", "kind" for sources, "options"}); its options are checked here."""
    key = (spec["type"], spec.get("kind") if spec["type"] == "source" else None)
    if key not in STAGE_CLASSES:
        raise ValueError(f"unknown stage {key}; known: {sorted(STAGE_CLASSES, key=str)}")
    module, name = STAGE_CLASSES[key]
    return getattr(importlib.import_module(f"stream.stages.{module}"), name)(**dict(spec.get("options", {})))


# Open order inside a process: binders first (inproc needs the bound end to exist in libzmq < 4.2
# and it keeps start-up logs readable): sink binds results, context binds jobs, source binds video.
_OPEN_ORDER = ("sink", "context", "worker", "source")


def _order(name: str) -> int:
    return next((i for i, p in enumerate(_OPEN_ORDER) if name.startswith(p)), len(_OPEN_ORDER))


def run_stages(stages: dict[str, Stage], endpoints: Endpoints, stop, abort, go, stream_id: str,
               ctx: zmq.Context | None = None, on_opened=None, supervise=None, ended=None) -> tuple[dict[str, dict], list[str]]:
    """Runs stages as threads until all have finished. ``on_opened(errors)`` is called once every
    stage has opened (or failed); with ``supervise`` (a callable) this thread also drives the
    clock and sets ``go`` itself (the in-process, inproc case). ``ended``: stream id -> that
    stream's stop event (the multi-stream serve, stream/graph/supervise.py)."""
    own_ctx = ctx is None
    ctx = ctx or zmq.Context()
    env = StageEnv(endpoints=endpoints, stop=stop, abort=abort, go=go, stream_id=stream_id, ended=dict(ended or {}))
    errors: list[str] = []
    reports: dict[str, dict] = {}
    threads = []
    opened = {}
    for name in sorted(stages, key=_order):
        ev = opened[name] = threading.Event()

        def target(name=name, ev=ev) -> None:
            reports[name] = run_stage(stages[name], ctx, env, ev, errors)

        th = threading.Thread(target=target, name=f"stage-{name}", daemon=True)
        th.start()
        threads.append(th)
        if not name.startswith("source"):  # a source blocks in open until go: do not wait for it
            while not ev.wait(0.05) and not abort.is_set():
                pass
    try:
        for name, ev in opened.items():
            if name.startswith("source"):
                continue
            while not ev.wait(0.05) and not abort.is_set():
                pass
        if on_opened is not None:
            on_opened(list(errors))
        elif not errors:
            go.set()
        sources = [th for th in threads if th.name.startswith("stage-source")]
        while any(th.is_alive() for th in threads):
            if sources and not any(th.is_alive() for th in sources) and not stop.is_set():
                stop.set()  # the stream has ended: from now on every stage's drain is on a clock
            if supervise is not None and go.is_set():
                supervise()
            if errors and not stop.is_set():
                stop.set()
            if supervise is not None and errors:
                supervise()
            time.sleep(0.05)
        for th in threads:
            th.join()
        if sources:
            stop.set()  # this process held the source: the stream is over for everyone
    finally:
        if own_ctx:
            ctx.destroy(linger=0)
    return reports, errors


def node_main(node: str, specs: dict[str, dict], endpoints: Endpoints, stream_id: str, stop, abort, go, inbox,
              parent_pid: int, ended: dict | None = None) -> None:
    """Child process entry: runs the node's stages, sends ("opened", node, errors) then
    ("report", node, {stage: report}) to the supervisor's queue."""
    def handle(signum, frame) -> None:
        # Only ever a graceful stop here: Ctrl-C reaches every process of the group at once, and
        # the supervisor may already have set stop; a child must not read that as "second Ctrl-C".
        # Abort comes from the supervisor (second signal, grace over) or the watchdog.
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` shows where a stage waits

    def watchdog() -> None:
        while not abort.is_set():
            if os.getppid() != parent_pid:  # the supervisor is gone: nobody will collect us
                stop.set()
                abort.set()
            time.sleep(0.2)

    threading.Thread(target=watchdog, daemon=True, name="watchdog").start()
    reports: dict[str, dict] = {}
    try:
        stages = {name: build_stage(spec) for name, spec in specs.items()}
        reports, _ = run_stages(stages, endpoints, stop, abort, go, stream_id,
                                on_opened=lambda errs: inbox.put(("opened", node, errs)), ended=ended)
    except Exception as exc:  # noqa: BLE001 - the supervisor must hear about it, whatever it is
        inbox.put(("opened", node, [f"{node}: {type(exc).__name__}: {exc}"]))
        reports = {node: {"stage": node, "error": f"{node}: {type(exc).__name__}: {exc}"}}
    inbox.put(("report", node, reports))
    inbox.close()
    inbox.join_thread()
