"""Many streams, one model: a segmenter that serves N sources with batched ``step`` calls.

Each stream is a Lane: its own sockets (video / audio SUB, results PUSH to its own sink), its own
audio ring and its own text context (ContextKeeper) — rings of two streams never meet: a lane's
keeper is only ever fed the texts of that lane's rows. Every loop the segmenter drains all lanes
(newest frame wins per lane), then cuts a batch from the lanes whose newest frame is ready: at
once when every live lane has one (or ``max_batch`` are waiting), otherwise when the oldest ready
frame has waited ``deadline_ms``, so a slow or silent stream never holds the others. Rows go
through engine.batching.BatchedStep (static engines per batch size, padding to the nearest size).
Frames arriving while the model runs wait in their lane's SUB socket, so after a busy step most
lanes are ready together and batches fill by themselves.

The single-stream graph's segmenter (one worker, ``icf-stream run / live / demo``) is this stage with
one lane, its own stream (``streams`` left out), batch 1: a frame-order, audio or end-of-stream rule
is written once, here and in stream/stages/intake.py, for one stream and for many.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import zmq

from engine.batching import BatchedStep, open_sizes
from stream.stages.context import ContextKeeper
from stream.stages.intake import QUIET_AFTER_STOP_NS, StreamIntake
from stream.stages.metrics import Gauge
from stream.stages.models import NullBackend
from stream.stages.options import MultiOptions
from stream.stages.stage import Stage, StageEnv, StageError
from stream.stages.worker import SEND_TIMEOUT_S, STARTUP_TIMEOUT_NS, ResultSender, WorkerCore
from stream.wire.protocol import encode
from stream.wire.transport import stamp

SOURCE_QUIET_NS = 2 * 10**9  # after a stream's source ended: how long its lane waits for the EOS in flight


class RowNullBackend:
    """NullBackend for a batch of B rows, row by row (so row i's frame text depends on row i's
    audio only): the pipeline's own cost with batching, no model."""

    def __init__(self, batch: int, **spec: Any) -> None:
        self.one = NullBackend(**spec)
        self.input_specs = {k: ((batch, *s[1:]), dt) for k, (s, dt) in self.one.input_specs.items()}
        self.output_specs = {k: ((batch, *s[1:]), dt) for k, (s, dt) in self.one.output_specs.items()}
        self.sidecar = self.one.sidecar

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.one.infer({k: v[i:i + 1] for k, v in inputs.items()}) for i in range(inputs["image"].shape[0])]
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}

    def info(self) -> dict[str, Any]:
        return self.one.info()

    def close(self) -> None:
        pass


def open_batched(spec: dict[str, Any], core: WorkerCore) -> BatchedStep:
    """{batch: backend}: for engines ``spec["artifacts"]`` = {B: path} (ONNX Runtime, AOTInductor) and/or
    ``spec["batch_sizes"]`` (torch: its own program per size), the batch-1 one being the core's
    (engine.batching.open_sizes); ``spec["batch_sizes"]`` for the null kind."""
    backends: dict[int, Any] = {1: core.backend}
    if spec.get("kind") == "null":
        null = {k: v for k, v in spec.items() if k not in ("kind", "batch_sizes", "resize")}
        backends.update({int(b): RowNullBackend(int(b), **null) for b in spec.get("batch_sizes", [1]) if int(b) > 1})
    else:
        backends = open_sizes(core.backend, spec.get("batch_sizes") or [], artifacts=spec.get("artifacts"),
                              backend=spec.get("backend", "auto"), options=spec.get("options"))
    return BatchedStep(backends)


class Lane:
    """One stream inside the multi-stream segmenter (see module doc): its intake (sockets, audio
    ring, frame order, newest frame, end of stream: stream.stages.intake), its text context and its sink."""

    def __init__(self, ctx: zmq.Context, env: StageEnv, geo: dict[str, int], send_image: bool, audio_wait_ns: int,
                 idle_s: float = 30.0, counters: dict[str, Any] | None = None, only_stream: bool = True) -> None:
        """``counters``: the dict the lane counts into (default its own); ``only_stream``: refuse frames
        whose header names another stream (lanes that share the process with other streams)."""
        self.env, self.sid = env, env.stream_id
        self.counters: dict[str, Any] = {} if counters is None else counters
        self.intake = StreamIntake(ctx, env, self.counters, audio_wait_ns=audio_wait_ns, idle_s=idle_s,
                                   forwarded=("gt_mask", "image") if send_image else ("gt_mask",),
                                   only_stream=self.sid if only_stream else None)
        try:
            self.sender = ResultSender(ctx, env, self.counters, send_image)
        except BaseException:
            self.intake.close(env.abort)
            raise
        self.keeper = ContextKeeper.for_geometry(geo)
        self.audio_samples = geo["audio_samples"]
        self.eos_sent = False
        self.ended = env.ended.get(self.sid)  # set once this stream's source ended (or its sink is gone)
        self.blocked_since: int | None = None  # since when the sink could take no result (sink_ready)
        self.sink_gone: str | None = None

    @property
    def latest(self):
        """The stream's newest frame not run yet (newest wins), or None."""
        return self.intake.latest

    @property
    def eos_header(self) -> dict | None:
        return self.intake.eos_header

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def drain(self) -> int:
        """Reads what the stream sent; returns how many frames were admitted."""
        return self.intake.drain()

    def sink_ready(self, now: int) -> bool:
        """The sink can take a result now. A sink that takes none for SEND_TIMEOUT_S (or never
        started: the startup deadline) is gone: this stream's results stop, the others go on."""
        if self.sink_gone is None and self.sender.can_take():
            self.blocked_since = None
            return True
        if self.blocked_since is None and self.sender.sent_any:
            self.count("sink_busy")  # back-pressure: the frame waits for the sink, and newer ones supersede it meanwhile
        self.blocked_since = self.blocked_since or now
        limit = SEND_TIMEOUT_S * 1e9 if self.sender.sent_any else STARTUP_TIMEOUT_NS
        if self.sink_gone is None and now - self.blocked_since > limit:
            self.sink_gone = f"the sink at {self.env.endpoints['results']} took no result for {limit / 1e9:g} s"
            self.counters["sink_gone"] = self.sink_gone
        return False

    def ready(self, now: int) -> bool:
        """The newest frame may go: its audio is in, or it waited long enough for it, and the
        stream's sink can take the result (otherwise newer frames supersede it: newest wins)."""
        return self.latest is not None and self.sink_ready(now) and self.intake.audio_ready(now)

    def take(self, core: WorkerCore, into: np.ndarray | None = None) -> tuple | None:
        """The newest frame as a batch row: (pkt, head, arrays, step inputs), or None if it will not
        run: its shared-memory slot was reused before (superseded) or while (an error result) its
        pixels were read. ``into``: the image buffer to write (WorkerCore.prepare)."""
        job = self.intake.take(self.audio_samples)
        if job is None:
            return None
        pkt, head = job.packet, job.head
        self.intake.dispatched(pkt.seq)
        arrays: dict[str, Any] = {"audio": job.audio[None], **self.keeper.state_for(head["pts_ns"]).as_inputs(), "image": pkt.arrays["image"]}
        t = pkt.header["t"]
        t["wrk_recv"] = t["ctx_send"]  # no hop: the row is run here
        try:
            row = (pkt, head, arrays, core.prepare(arrays, t, into=into))
            # the model's input is copied out of the slot now, and the forwarded parts were (intake.take):
            # nothing reads the slot after this, so a slot lapped while the model runs costs nothing
            if not self.intake.still_valid(pkt):
                raise RuntimeError("the frame's shared-memory slot was reused while its pixels were read")
        except Exception as exc:  # noqa: BLE001 - one bad row costs that frame
            self.done(core, (pkt, head, arrays, None), exc)
            return None
        return row

    def done(self, core: WorkerCore, row: tuple, out: dict[str, np.ndarray] | Exception) -> None:
        pkt, head, arrays, _ = row
        t = pkt.header["t"]
        outcome: Any = out
        if not isinstance(out, Exception):
            try:
                outcome = core.finish(arrays["image"].shape, out, t)
                self.keeper.record(head["pts_ns"], *outcome[2])  # this lane's texts, into this lane's rings only
            except Exception as exc:  # noqa: BLE001 - one bad row costs that frame
                outcome = exc
        if isinstance(outcome, Exception):
            self.count("errors")
            self.counters["last_error"] = f"{type(outcome).__name__}: {outcome}"[:300]
        self.sender.result(core, head, pkt, t, outcome)

    def finish(self, now: int) -> None:
        """End of this stream: one eos to its sink with what the lane saw. Never waits: a sink
        that cannot take it now is asked again on the next loop, until it counts as gone."""
        self.intake.drop_latest()  # the sink is gone: its last frame ends as superseded
        if self.sink_gone is not None or not self.sink_ready(now):
            self.eos_sent = self.sink_gone is not None
            return
        self.eos_sent = self.sender.try_send(encode("eos", dict(self.intake.eos_head(), worker="multi")))

    def fault(self) -> str | None:
        """Why this stream ended early (its source fell silent, its sink is gone), or None."""
        return self.counters.get("source_silent") or self.sink_gone

    def report(self) -> dict[str, Any]:
        counters = dict(self.counters, audio_gap_samples=self.intake.ring.gap_samples, rejected_texts=self.keeper.rejected,
                        segments_closed=self.keeper.segments_closed)
        return {"counters": counters, "segments_closed": self.keeper.segments_closed}

    def close(self, abort) -> None:
        self.intake.close(abort)
        self.sender.close()


class MultiSegmenterStage(Stage):
    """Inputs: per stream, ``frame`` / ``audio`` / ``eos`` on that stream's video and audio links.
    Outputs: per stream, ``result`` messages and a final ``eos`` to that stream's sink (its own
    results link), exactly as a scale-out worker sends them.
    Options: streams (list of {"stream_id", "endpoints"}; left out: one lane, the stage's own stream),
    backend (spec: {"kind": "engine", "artifact": batch-1 path, "artifacts": {B: path}, ...} or {"kind":
    "null", "batch_sizes": [...]}), max_batch (cap, default the largest size), deadline_ms (longest a
    ready frame waits for others, 5), audio_wait_ms (30), send_image (False).

    A stream that ends early (its source fell silent, its sink is gone) ends its own lane, and the
    others go on. On its own stream (the single-stream graph) there is nothing else to serve: such
    an end is the stage's error, naming the peer, so the run fails with the reason."""

    name = "segmenter"
    Options = MultiOptions
    options: MultiOptions

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        o = self.options
        spec = dict(o.backend)
        self.core = WorkerCore(spec, 0, o.top_k)
        self.step = open_batched(spec, self.core)
        self.max_batch = min(int(o.max_batch or self.step.max_batch), self.step.max_batch)
        self.deadline_ns = int(o.deadline_ms * 1e6)
        geo = self.core.geometry()
        wait = int(o.audio_wait_ms * 1e6)
        self.own_stream = o.streams is None
        streams = [{"stream_id": env.stream_id, "endpoints": env.endpoints}] if self.own_stream else o.streams
        if not streams:
            raise StageError("the multi-stream segmenter needs at least one stream")
        if len({s["stream_id"] for s in streams}) != len(streams):
            raise StageError("stream ids must be unique")
        self.backlog = Gauge()  # frames admitted in one pass over the lanes: more than one means newer ones superseded older
        self.lanes = []
        for s in streams:  # one by one: close() closes the lanes opened before one that failed
            # one lane: its counters are the stage's counters (report()["counters"], as the single-stream report has them)
            self.lanes.append(Lane(ctx, dataclasses.replace(env, endpoints=s["endpoints"], stream_id=s["stream_id"]), geo,
                                   o.send_image, wait, o.idle_timeout_s, counters=self.counters if len(streams) == 1 else None,
                                   only_stream=not self.own_stream))
        self.poller = zmq.Poller()
        for lane in self.lanes:
            for s in lane.intake.sockets:
                self.poller.register(s, zmq.POLLIN)
        self.batch_sizes: list[int] = []
        self.counters.update(batches=0, rows=0)

    def _cut(self, now: int | None = None) -> list[Lane]:
        """The lanes to run now (``now``: a stamp; the clock when None)."""
        now = stamp() if now is None else now
        ready = [lane for lane in self.lanes if lane.ready(now)]
        if not ready:
            return []
        live = [lane for lane in self.lanes if not lane.eos_sent and lane.eos_header is None and lane.blocked_since is None]
        oldest = min(lane.latest.header["t"]["ctx_recv"] for lane in ready)
        if len(ready) >= min(self.max_batch, max(len(live), 1)) or now - oldest >= self.deadline_ns:
            ready.sort(key=lambda lane: lane.latest.header["t"]["ctx_recv"])  # the longest-waiting first
            return ready[: self.max_batch]
        return []

    def _run(self, lanes: list[Lane]) -> None:
        into = self.core.image_in if self.max_batch == 1 else None  # one row per step: the core's one buffer, reused
        rows = [(lane, row) for lane in lanes if (row := lane.take(self.core, into)) is not None]
        if not rows:
            return
        try:
            outs: list[Any] = self.step.run([row[3] for _, row in rows])
        except Exception as exc:  # noqa: BLE001 - a failing call costs these frames, not the streams
            outs = [exc] * len(rows)
            self.count("failed_steps")  # each row's frame counts as an error of its lane
        now = stamp()
        for _, row in rows:
            row[0].header["t"]["infer_done"] = now
        for (lane, row), out in zip(rows, outs):
            lane.done(self.core, row, out)
        self.counters["batches"] += 1
        self.counters["rows"] += len(rows)
        self.batch_sizes.append(len(rows))

    def process(self) -> bool:
        pending = any(lane.latest is not None for lane in self.lanes)
        self.poller.poll(1 if pending else 50)
        if admitted := sum(lane.drain() for lane in self.lanes):
            self.backlog.set(admitted)
        batch = self._cut()
        if batch:
            self._run(batch)
        now = stamp()
        stopping = self.env.stop.is_set()
        for lane in self.lanes:
            source_over = lane.ended is not None and lane.ended.is_set()
            if stopping:  # the sources are gone; an EOS that never reached us is waited for a second
                lane.intake.end_if_quiet(now, QUIET_AFTER_STOP_NS, stopped=True)
            else:  # this stream's source is over, or its EOS came on the audio link only
                lane.intake.end_if_quiet(now, SOURCE_QUIET_NS, stopped=source_over)
            if not stopping and not source_over and lane.eos_header is None and (why := lane.intake.liveness.silent()):
                lane.counters["source_silent"] = why  # this stream has ended; the others go on
                lane.intake.eos_header = {}
            if self.own_stream and (why := lane.fault()):
                raise StageError(why)
            if lane.eos_header is not None and (lane.latest is None or lane.sink_gone) and not lane.eos_sent:
                lane.finish(now)
        return not all(lane.eos_sent for lane in self.lanes)

    def report(self) -> dict[str, Any]:
        rep = super().report()
        sizes = np.asarray(self.batch_sizes or [0])
        rep["batching"] = {"max_batch": getattr(self, "max_batch", None), "mean_rows": round(float(sizes.mean()), 3),
                           "histogram": {str(k): int((sizes == k).sum()) for k in sorted(set(sizes.tolist())) if k},
                           "step": self.step.info() if hasattr(self, "step") else None}
        lanes = getattr(self, "lanes", [])
        rep["streams"] = {lane.sid: lane.report() for lane in lanes}
        if len(lanes) == 1:
            rep["counters"] = rep["streams"][lanes[0].sid]["counters"]  # one lane: the lane's counters are the stage's
        if hasattr(self, "backlog"):
            rep["queues"] = {"context_backlog": self.backlog.summary()}
        core = getattr(self, "core", None)
        if core is not None:  # the one worker of the graph (pipeline._assemble reads its backend as the run's model)
            rep["counters"]["jobs"] = core.jobs
            rep.update(worker=core.name, model=core.model_id, warmup_ms=round(core.warmup_ms, 1), backend=core.info)
        return rep

    def close(self) -> None:
        for lane in getattr(self, "lanes", []):
            lane.close(self.env.abort)
        if getattr(self, "step", None) is not None:
            self.step.close()  # closes the core's backend too (it is the batch-1 entry)
        elif getattr(self, "core", None) is not None:
            self.core.close()
