"""The context stage of a scale-out segmenter (``--workers N``, N > 1): newest frame wins, audio
window, text context, and jobs to stateless WorkerStages. With one worker there is no context
stage: the segmenter is the multi-stream segmenter with one lane (stream/stages/multistream.py),
which runs the model itself, so the one-model path is written once.

Why split: the text context is a chain (frame n's rings hold frame n-1's texts), so it must live
in exactly one place. The context stage owns it and ships the ring state inside every job; a
worker needs nothing but the job, so any number of workers can serve one stream. Workers ask for
work (credit-based ROUTER / DEALER, at most one job in flight per worker) instead of receiving
a blind PUSH round-robin: a job is only cut when a worker is free, so it always carries the
newest frame and the freshest context. Results fan in to the sink over PUSH / PULL.
"""

from __future__ import annotations

from typing import Any

import zmq

from stream.stages.context import ContextKeeper
from stream.stages.dispatch import Dispatcher
from stream.stages.intake import QUIET_AFTER_STOP_NS, StreamIntake
from stream.stages.metrics import Gauge
from stream.stages.options import ContextOptions
from stream.stages.stage import Stage, StageEnv, StageError
from stream.wire.protocol import GEOMETRY_KEYS, encode, forward, geometry
from stream.wire.transport import close_socket, open_socket, recv_packet, stamp


class ContextStage(Stage):
    """Inputs: ``frame`` / ``audio`` / ``eos`` from the source (SUB on the video and audio links,
    read by stream.stages.intake.StreamIntake), ``ready`` from workers (ROUTER on the jobs link, carrying
    the texts of their last job).
    Outputs: ``job`` messages (frame image + gt, the 15,600-sample audio window ending at the
    frame's pts, the four ring arrays) and a final ``eos`` per worker.
    Options (stream.stages.options.ContextOptions): workers (how many to expect), audio_wait_ms (how long a
    frame may wait for its audio to arrive, default 30), job_timeout_s (a job whose worker never answers
    is given up, 5). Which worker gets a job, and in which order answers count: stream.stages.dispatch."""

    name = "context"
    Options = ContextOptions
    options: ContextOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        # sockets are opened in open(); close() and report() run even if it failed
        self.intake: StreamIntake | None = None
        self.router = None
        self.keeper: ContextKeeper | None = None
        self.jobs = Dispatcher(o.workers, int(o.job_timeout_s * 1e9))
        self.backlog, self.in_flight_gauge = Gauge(), Gauge()

    @property
    def last_seq(self) -> int | None:
        """The newest seq admitted into the stream's frame order (None before the first frame)."""
        return None if self.intake is None else self.intake.last_seq

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        o = self.options
        # a worker needs the frame itself, so the image is always copied out of shared memory
        self.intake = StreamIntake(ctx, env, self.counters, audio_wait_ns=int(o.audio_wait_ms * 1e6), idle_s=o.idle_timeout_s,
                                   forwarded=("gt_mask", "image"))
        self.router = open_socket(ctx, zmq.ROUTER, env.endpoints, "jobs", bind=True, frames=True)
        self.poller = zmq.Poller()
        for s in (self.router, *self.intake.sockets):
            self.poller.register(s, zmq.POLLIN)
        self.geometry: dict[str, Any] | None = None
        self.eos_deadline: int | None = None
        self.counters.update(lost_jobs=0)

    # ---- inputs ----
    def _drain_router(self) -> None:
        while self.router.poll(0):
            env, pkt = recv_packet(self.router, self.counters, max_bytes=1 << 20, kinds=("ready",), envelope=2)
            if pkt is None or not env:
                continue
            wid = env[0]
            if wid not in self.jobs.workers:
                if wid in self.jobs.refused or not self._register(wid, pkt.header.get("geometry")):
                    continue  # never given work: the others keep the stream going
            ok = pkt.header.get("ok") and "frame_text" in pkt.arrays and "segment_text" in pkt.arrays
            self.jobs.answered(wid, pkt.header.get("job"), (pkt.arrays["frame_text"], pkt.arrays["segment_text"]) if ok else None)
        self._apply_texts()

    def _register(self, wid: bytes, geo: dict | None) -> bool:
        """A worker's first ``ready`` names its model's geometry (range-checked by protocol.py).
        The first worker sets it; one that disagrees or names none is refused and never given
        work, and the stream goes on with the others."""
        geo = None if geo is None else geometry(geo)
        if geo is not None and self.geometry is None:
            self.geometry = geo
            self.keeper = ContextKeeper.for_geometry(geo)
        if geo is None or any(self.geometry[k] != geo[k] for k in GEOMETRY_KEYS):
            self.jobs.refuse(wid)
            self.count("workers_refused")
            self.counters["last_error"] = f"worker {wid!r} refused: geometry {geo} (the stream's model: {self.geometry})"[:300]
            return False
        self.jobs.join(wid)
        return True

    def _apply_texts(self) -> None:
        """Results update the keeper strictly in dispatch order (see context.py for the rule)."""
        for job, next_pts in self.jobs.settled(stamp()):
            if not job.done:
                self.counters["lost_jobs"] += 1
            if job.texts is not None and self.keeper is not None:
                self.keeper.record(job.pts_ns, job.texts[0], job.texts[1], next_pts_ns=next_pts)

    # ---- output ----
    def _dispatch(self) -> None:
        intake = self.intake
        if not intake.audio_ready(stamp()):
            return  # its audio is still on the way (separate socket); wait a little
        job = intake.take(self.geometry["audio_samples"])
        if job is None:
            return  # its shared-memory slot was reused: newer frames overwrote it
        pkt, head = job.packet, job.head
        arrays = {"image": forward(pkt, "image"), **({"gt_mask": forward(pkt, "gt_mask")} if "gt_mask" in pkt.arrays else {}),
                  "audio": job.audio[None], **self.keeper.state_for(head["pts_ns"]).as_inputs()}
        msg = encode("job", dict(head, t=pkt.header["t"]), arrays)
        while (wid := self.jobs.next_worker()) is not None:
            try:
                self.router.send_multipart([wid, b"", *msg], copy=False)
            except zmq.ZMQError:  # that worker is gone (ROUTER_MANDATORY): try the next one
                self.jobs.lose(wid)
                self.count("workers_lost")
                continue
            self.jobs.sent(pkt.seq, head["pts_ns"], stamp())
            intake.dispatched(pkt.seq)
            return

    def _send_eos(self) -> bool:
        """After the source's EOS and the last dispatch: one eos per worker; True when all sent."""
        if self.eos_deadline is None:
            self.eos_deadline = stamp() + int(self.options.eos_timeout_s * 1e9)
        head = self.intake.eos_head()
        while (wid := self.jobs.next_worker()) is not None:
            try:
                self.router.send_multipart([wid, b"", *encode("eos", head)])
                self.count("eos_sent")
            except zmq.ZMQError as exc:
                self.counters["eos_error"] = str(exc)
            self.jobs.eos_to(wid)
        return self.jobs.all_ended() or stamp() > self.eos_deadline

    def process(self) -> bool:
        intake = self.intake
        self.poller.poll(5 if intake.latest is not None else 50)
        if n := intake.drain():
            self.backlog.set(n)
        self._drain_router()
        if intake.latest is not None and self.jobs.has_credit() and self.keeper is not None:
            self._dispatch()
        self.in_flight_gauge.set(len(self.jobs.in_flight))
        stopped = self.env.stop.is_set()  # the source is gone: its EOS may never reach us
        intake.end_if_quiet(stamp(), QUIET_AFTER_STOP_NS, stopped=stopped)
        if not stopped and intake.eos_header is None and (why := intake.liveness.silent()):
            raise StageError(why)
        if intake.eos_header is not None and intake.latest is None:
            return not self._send_eos()
        return True

    def report(self) -> dict[str, Any]:
        rep = super().report()
        rep["counters"].update(audio_gap_samples=self.intake.ring.gap_samples if self.intake else 0, workers=len(self.jobs.workers),
                               rejected_texts=self.keeper.rejected if self.keeper else 0,
                               segments_closed=self.keeper.segments_closed if self.keeper else 0)
        rep["queues"] = {"context_backlog": self.backlog.summary(), "jobs_in_flight": self.in_flight_gauge.summary()}
        return rep

    def close(self) -> None:
        if self.intake is not None:
            self.intake.close(self.env.abort)
        close_socket(self.router, self.env.abort)
