"""The supervisor of a multi-process graph: spawn the nodes, release them together, end them.

One owner for the rules both the single-stream pipeline (stream/graph/pipeline.py) and the multi-stream
serve (stream/graph/multistream_serve.py) follow:
- every node is a spawned child (no fork: children must not inherit threads, sockets or locks)
  running ``node.node_main``; each says "opened" (with its errors) and at the end sends a report;
- ``go`` is set once every node opened without error, so no stage starts before its peers;
- a startup that takes longer than ``startup_timeout_s`` aborts the run;
- a stage error stops the run (the others finalise and report); ``grace_s`` after a stop, abort;
- a child that exits without a report (a crash) is an error too, and ends the others at once (abort);
- ``expendable(node)``: once the run is going, such a node's failure costs only itself (it goes
  into ``lost`` as "node: why", the run continues); the serve uses it for each stream's source and sink.
- ``stream_stops``: each stream (the stream id of its nodes) gets its own stop event, used as the
  stop of that stream's expendable nodes: a source that ends or fails, or a sink that fails, ends
  its own stream only. The others get every stream's event (``StageEnv.ended``) and the run-wide
  stop, which is set once every stream has ended (or by a signal, ``seconds`` or a stage error,
  and then it ends every stream).
Every child is gone when ``supervise_nodes`` returns (``reap``).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from typing import Any

from stream.graph.graph import Signals, supervisor_clock
from stream.graph.node import node_main
from stream.wire.transport import Endpoints


def supervise_nodes(
    cfg: Any,
    nodes: list[tuple[str, dict, Endpoints, str]],
    *,
    what: str = "pipeline",
    expendable: Callable[[str], bool] = lambda node: False,
    stream_stops: bool = False,
    on_go: Callable[[dict[str, int]], None] | None = None,
) -> tuple[dict[str, dict], list[str], list[str]]:
    """Runs ``nodes`` = [(node name, {stage name: spec}, endpoints, stream id)] to their end.

    ``cfg`` gives ``seconds``, ``grace_s`` and ``startup_timeout_s``; ``what`` names the run in the
    startup error. ``on_go`` (an observer, e.g. a CPU-time meter) is called once with {node: pid} when every
    stage is open and the run goes. Returns (node -> its stages' reports, errors, lost)."""
    ctx = mp.get_context("spawn")
    stop, abort, go = ctx.Event(), ctx.Event(), ctx.Event()
    inbox = ctx.Queue()
    procs: dict[str, Any] = {}
    reports: dict[str, dict] = {}
    errors: list[str] = []
    lost: list[str] = []
    opened: set[str] = set()
    finished: set[str] = set()
    tick = supervisor_clock(cfg, stop, abort)  # reads .seconds and .grace_s only
    sid_of = {node: sid for node, _, _, sid in nodes}
    ended = {sid_of[n]: ctx.Event() for n in sid_of if expendable(n)} if stream_stops else {}

    def survivable(node: str) -> bool:
        # with a stop per stream, a stream's node that fails even before the run goes costs only its stream
        return expendable(node) and (go.is_set() or sid_of[node] in ended)

    def failed(node: str, why: list[str]) -> None:
        if not why:
            return
        if survivable(node):
            lost.extend(w2 for w in why if (w2 := f"{node}: {w}") not in lost)
            if sid_of[node] in ended:
                ended[sid_of[node]].set()  # a stream whose sink (or source) is gone is over
        else:
            errors.extend(why)

    with Signals(stop, abort):
        try:
            for node, specs, endpoints, sid in nodes:
                own_stop = ended[sid] if sid in ended and expendable(node) else stop
                p = ctx.Process(target=node_main, name=f"icf-{node}", daemon=True,
                                args=(node, copy.deepcopy(specs), endpoints, sid, own_stop, abort, go, inbox, os.getpid(), ended))
                p.start()
                procs[node] = p
            deadline = time.monotonic() + cfg.startup_timeout_s
            while len(finished) < len(procs):
                try:
                    kind, node, payload = inbox.get(timeout=0.1)
                except queue.Empty:
                    kind = None
                if kind == "opened":
                    opened.add(node)
                    failed(node, payload)
                    if len(opened) == len(procs) and not errors:
                        go.set()
                        if on_go is not None:
                            on_go({n: p.pid for n, p in procs.items()})
                elif kind == "report":
                    finished.add(node)
                    reports[node] = payload
                    failed(node, [r["error"] for r in payload.values() if "error" in r and r["error"] not in errors])
                if errors and not stop.is_set():
                    stop.set()  # one stage failed: end the run, keep what the others finalise
                if ended and all(e.is_set() for e in ended.values()) and not stop.is_set():
                    stop.set()  # every stream has ended: from now on the drain is on the clock
                if stop.is_set():
                    for e in ended.values():
                        e.set()
                if go.is_set() or errors or stop.is_set():
                    tick()
                elif time.monotonic() > deadline and not abort.is_set():
                    errors.append(f"{what} did not start within {cfg.startup_timeout_s:.0f} s (opened: {sorted(opened)})")
                    stop.set()
                    abort.set()
                for node, p in procs.items():  # a child that died without a report
                    if node not in finished and p.exitcode is not None and inbox.empty():
                        time.sleep(0.2)
                        if inbox.empty():
                            finished.add(node)
                            failed(node, [f"process {node} exited with code {p.exitcode} without a report"])
                            if not survivable(node):
                                # a crashed stage: the run cannot finish; the others end now, finalise,
                                # and report (no drain that would end in a second, misleading error)
                                stop.set()
                                abort.set()
        finally:
            if any(p.is_alive() for p in procs.values()):
                stop.set()  # reports are in (or we are failing): give children a moment, then abort
                for p in procs.values():
                    p.join(timeout=5)
                abort.set()
            reap(procs)
    return reports, errors, lost


def reap(procs: dict[str, Any]) -> None:
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
