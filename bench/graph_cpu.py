"""CPU time of every process of a running stream graph, read from /proc while it runs.

``GraphCPU()`` is handed to ``run_serve(..., on_go=meter.on_go)``: when every stage is open the
supervisor calls it with {node: pid}, and from that moment a thread of the supervisor's process reads each process's utime + stime from
/proc/<pid>/stat (and each thread's from /proc/<pid>/task/<tid>/stat) as the baseline, then again
every ``interval_s`` while the process lives, keeping the last reading. The difference is what the
process spent from the moment every stage was open to its end (start-up, model loading and warm-up
excluded; the last ``interval_s`` before a process exits, its report, is missed). The supervisor
(this process, without the sampling thread itself) is counted as "supervisor".

Threads are grouped by name: ZeroMQ's I/O threads (``ZMQbg/...``) are the transport's own hops; the
rest of a process is its stage threads (serialisation and shared-memory copies are done there, so
they stay inside the stage's share). Linux only (/proc); resolution one clock tick (10 ms).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_ticks(path: str | Path) -> tuple[str, int] | None:
    """(comm, utime + stime in ticks) of a /proc/.../stat file; None when it is gone."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")  # comm may hold spaces and parentheses: split at the last ")"
    fields = tail.split()
    return head.partition("(")[2], int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def process_ticks(pid: int, skip_tid: int | None = None) -> tuple[int, dict[str, tuple[str, int]]] | None:
    """(process ticks, {tid: (thread name, ticks)}); None when the process is gone."""
    total = stat_ticks(f"/proc/{pid}/stat")
    if total is None:
        return None
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        if skip_tid is not None and int(tid) == skip_tid:
            continue
        got = stat_ticks(f"/proc/{pid}/task/{tid}/stat")
        if got is not None:
            threads[tid] = got
    ticks = total[1]
    if skip_tid is not None:  # the sampler's own time is not the graph's
        own = stat_ticks(f"/proc/{pid}/task/{skip_tid}/stat")
        ticks -= own[1] if own else 0
    return ticks, threads


class GraphCPU:
    """See the module doc. Use as a context manager around ``run_serve``; then ``result()``."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.pids: dict[str, int] = {}
        self.go = threading.Event()
        self.base: dict[str, tuple[int, dict]] = {}
        self.last: dict[str, tuple[int, dict]] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="graph-cpu", daemon=True)

    def __enter__(self) -> GraphCPU:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    def on_go(self, pids: dict[str, int]) -> None:
        """The supervisor's ``on_go`` observer: every stage is open; measure from now."""
        self.pids = dict(pids)
        self.go.set()

    def _pids(self) -> dict[str, int]:
        return {**self.pids, "supervisor": os.getpid()}

    def _read(self, pids: dict[str, int]) -> dict[str, tuple[int, dict]]:
        me = threading.get_native_id()
        out = {}
        for node, pid in pids.items():
            got = process_ticks(pid, skip_tid=me if node == "supervisor" else None)
            if got is not None:
                out[node] = got
        return out

    def _loop(self) -> None:
        while not self.done.is_set() and not self.go.wait(0.02):
            pass
        if not self.go.is_set():
            return
        pids = self._pids()
        self.base = self._read(pids)
        self.last = dict(self.base)
        while not self.done.wait(self.interval_s):
            self._merge(self._read(pids))
        self._merge(self._read(pids))

    def _merge(self, reading: dict[str, tuple[int, dict]]) -> None:
        """A thread that has ended (a stage's, ZeroMQ's after the context closed) keeps its last reading."""
        for node, (ticks, threads) in reading.items():
            self.last[node] = (ticks, {**self.last.get(node, (0, {}))[1], **threads})

    def result(self) -> dict[str, Any]:
        """{node: {"cpu_s", "zmq_io_cpu_s", "threads": {name: cpu_s}}} over the window (see module doc)."""
        out: dict[str, Any] = {}
        for node, (ticks, threads) in self.last.items():
            base_ticks, base_threads = self.base.get(node, (0, {}))
            per: dict[str, float] = {}
            for tid, (name, t) in threads.items():
                before = base_threads.get(tid, (name, 0))[1]
                per[name] = per.get(name, 0.0) + (t - before) * TICK_S
            zmq = sum(v for k, v in per.items() if k.startswith("ZMQbg"))
            out[node] = {"cpu_s": round((ticks - base_ticks) * TICK_S, 3), "zmq_io_cpu_s": round(zmq, 3),
                         "threads": {k: round(v, 3) for k, v in sorted(per.items()) if v > 0}}
        return out


def breakdown(nodes: dict[str, Any], model_cpu_s: float, processed: int, sent: int | None = None) -> dict[str, Any]:
    """CPU-ms per processed frame of the whole graph, by part: sources, the segmenter's model calls,
    the rest of the segmenter (context, pre/post-processing, lanes, sending), sinks, ZeroMQ I/O
    threads (all processes), the supervisor; and per sent frame (``sent``: frames the sources made;
    the sources' cost follows those, not the processed ones, when frames are dropped)."""
    def total(prefix: str, key: str = "cpu_s") -> float:
        return sum(v[key] for n, v in nodes.items() if n.startswith(prefix))

    zmq = sum(v["zmq_io_cpu_s"] for v in nodes.values())
    parts = {
        "sources": total("source-") - total("source-", "zmq_io_cpu_s"),
        "model": model_cpu_s,
        "segmenter_other": total("segmenter") - total("segmenter", "zmq_io_cpu_s") - model_cpu_s,
        "sinks": total("sink-") - total("sink-", "zmq_io_cpu_s"),
        "zmq_io_threads": zmq,
        "supervisor": total("supervisor") - total("supervisor", "zmq_io_cpu_s"),
    }
    graph = sum(v["cpu_s"] for v in nodes.values())
    per = (lambda s: round(s * 1e3 / processed, 2)) if processed else (lambda s: None)
    per_sent = (lambda s: round(s * 1e3 / sent, 2)) if sent else (lambda s: None)
    return {"graph_cpu_s": round(graph, 2), "processed_frames": processed, "sent_frames": sent,
            "graph_cpu_ms_per_processed_frame": per(graph), "cpu_ms_per_processed_frame": {k: per(v) for k, v in parts.items()},
            "cpu_ms_per_sent_frame": {k: per_sent(v) for k, v in parts.items()}}


__all__ = ["GraphCPU", "breakdown", "process_ticks"]
