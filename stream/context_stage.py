"""The context stage, the heart of the ``segmenter`` node: newest frame wins, audio window, text
context; it runs the model itself (one worker: ``inline``, no hop) or feeds stateless
WorkerStages (scale-out).

Why split: the text context is a chain (frame n's rings hold frame n-1's texts), so it must live
in exactly one place. The context stage owns it and ships the ring state inside every job; a
worker needs nothing but the job, so any number of workers can serve one stream. Workers ask for
work (credit-based ROUTER / DEALER, at most one job in flight per worker) instead of receiving
a blind PUSH round-robin: a job is only cut when a worker is free, so it always carries the
newest frame and the freshest context. Results fan in to the sink over PUSH / PULL.
With a single worker the same rule holds with no message at all: the context stage calls the
WorkerCore itself (frames that arrive meanwhile wait in the SUB socket and the newest wins).
"""

from __future__ import annotations

from typing import Any

import zmq

from .context import AudioRing, ContextKeeper
from .dispatch import Dispatcher
from .metrics import Gauge
from .options import ContextOptions
from .protocol import SeqChain, encode, eos_ok, finite, forward, stamps
from .shm_link import ShmReceiver
from .shm_link import attach as shm_attach
from .stage import Liveness, Stage, StageEnv, StageError
from .transport import close_socket, open_socket, recv_packet, stamp
from .worker import ResultSender, WorkerCore


class ContextStage(Stage):
    """Inputs: ``frame`` / ``audio`` / ``eos`` from the source (SUB on the video and audio links),
    ``ready`` from workers (ROUTER on the jobs link, carrying the texts of their last job).
    Outputs: ``job`` messages (frame image + gt, the 15,600-sample audio window ending at the
    frame's pts, the four ring arrays) and a final ``eos`` per worker.
    Options (stream.options.ContextOptions): workers (how many to expect), inline (a backend spec:
    run the model here instead, results go straight to the sink), audio_wait_ms (how long a frame
    may wait for its audio to arrive, default 30), job_timeout_s (a job whose worker never answers
    is given up, 5). Which worker gets a job, and in which order answers count: stream.dispatch."""

    name = "context"
    Options = ContextOptions
    options: ContextOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        # sockets and the inline worker are opened in open(); close() and report() run even if it failed
        self.vsub = self.asub = self.router = self.sender = None
        self.core: WorkerCore | None = None
        self.shm: ShmReceiver | None = None
        self.ring = AudioRing()
        self.chain = SeqChain()  # the stream's frame order: refused jumps, duplicates, restarts, gaps
        self.keeper: ContextKeeper | None = None
        self.jobs = Dispatcher(o.workers, int(o.job_timeout_s * 1e9))
        self.backlog, self.in_flight_gauge = Gauge(), Gauge()

    @property
    def last_seq(self) -> int | None:
        """The newest seq admitted into the chain (None before the first frame)."""
        return self.chain.last_seq

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        o = self.options
        ep = env.endpoints
        self.vsub = open_socket(ctx, zmq.SUB, ep, "video", bind=False)
        self.asub = open_socket(ctx, zmq.SUB, ep, "audio", bind=False, hwm=1000, frames=False)
        for s in (self.vsub, self.asub):
            s.setsockopt(zmq.SUBSCRIBE, b"")
        self.shm = ShmReceiver(ep.max_bytes) if ep.extra.get("shm") else None  # frames by shared memory (stream/shm_link.py)
        self.poller = zmq.Poller()
        if o.inline:
            self.core = WorkerCore(o.inline, 0, o.top_k)
            self.sender = ResultSender(ctx, env, self.counters, o.send_image)
        else:
            self.router = open_socket(ctx, zmq.ROUTER, ep, "jobs", bind=True, frames=True)
            self.poller.register(self.router, zmq.POLLIN)
        for s in (self.vsub, self.asub):
            self.poller.register(s, zmq.POLLIN)
        self.audio_wait_ns = int(o.audio_wait_ms * 1e6)
        self.geometry: dict[str, Any] | None = None
        self.latest = None
        self.last_dispatched = -1
        self.eos_header: dict | None = None
        self.eos_deadline: int | None = None
        self.audio_seen = False
        self.counters.update(received=0, transport_gaps=0, superseded=0, dispatched=0, audio_underruns=0, lost_jobs=0)
        self.liveness = Liveness(env, f"the source (video link {ep['video']})", self.options.idle_timeout_s)
        if self.core is not None:
            self._register(b"inline", self.core.geometry())
            self.jobs.answered(b"inline", None, None)  # the inline worker's first credit

    # ---- inputs ----
    def _drain_audio(self) -> None:
        while self.asub.poll(0):
            _, pkt = recv_packet(self.asub, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("audio", "eos"))
            if pkt is None or pkt.kind == "eos":
                continue
            first = pkt.header["first_sample"]
            samples, bad = finite(pkt.arrays["samples"], -1.0, 1.0)  # NaN audio must not reach the model
            if bad:
                self.count("nonfinite_audio_samples", bad)
            self.ring.write(first, samples)
            self.audio_seen = True

    def _drain_video(self) -> None:
        n = 0
        while self.vsub.poll(0):
            _, pkt = recv_packet(self.vsub, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("frame", "eos"))
            self.liveness.heard()
            if pkt is None:
                continue
            if pkt.kind == "eos":
                if not eos_ok(pkt.header, self.env.endpoints.token):
                    self.count("forged_eos")
                    continue
                self.eos_header = self.eos_header or pkt.header
                self.counters["eos_from_source"] = True
                continue
            if not shm_attach(self.shm, pkt, self.counters):
                continue  # its slot was lapped (shm_stale) or its parts are malformed (protocol.validate)
            if not self.chain.admit(pkt.seq, pkt.header["pts_ns"], self.counters):
                continue  # refused jump, duplicate or late (protocol.SeqChain)
            n += 1
            self.counters["received"] += 1
            if self.latest is not None:
                self.counters["superseded"] += 1  # newest frame wins
            stamps(pkt.header)["ctx_recv"] = stamp()
            self.latest = pkt
        if n:
            self.backlog.set(n)

    def _drain_router(self) -> None:
        while self.router is not None and self.router.poll(0):
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
        keys = ("width", "frame_ring", "segment_ring", "audio_samples", "ring_rate")
        geo = None if geo is None else {"ring_rate": 1, **geo}  # a worker that names no ring clock means 1
        if geo is not None and self.geometry is None:
            self.geometry = {k: geo[k] for k in keys}
            self.keeper = ContextKeeper(geo["width"], geo["frame_ring"], geo["segment_ring"], ring_rate=geo["ring_rate"])
        if geo is None or any(self.geometry[k] != geo[k] for k in keys):
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
        pkt = self.latest
        forwarded = ("gt_mask",) if self.core is not None and not self.sender.send_image else ("gt_mask", "image")
        if self.shm is not None and not self.shm.materialize(pkt, forwarded, self.counters):
            self.latest = None  # its slot was reused: newer frames overwrote it (counted as superseded too)
            self.counters["superseded"] += 1
            return
        pts = pkt.header["pts_ns"]
        end = self.ring.sample_at(pts)
        if self.audio_seen and self.ring.end < end and stamp() - pkt.header["t"]["ctx_recv"] < self.audio_wait_ns:
            return  # its audio is still on the way (separate socket); wait a little
        if self.audio_seen and self.ring.end < end:
            self.counters["audio_underruns"] += 1
        window = self.ring.window(end, self.geometry["audio_samples"])
        state = self.keeper.state_for(pts)
        pkt.header["t"]["ctx_send"] = stamp()
        prev = self.last_dispatched
        head = {"stream": pkt.header["stream"], "seq": pkt.seq, "capture_ns": pkt.header["capture_ns"], "pts_ns": pts,
                "prev_seq": prev, "dropped_before": pkt.seq - prev - 1}
        arrays: dict[str, Any] = {"audio": window[None], **state.as_inputs()}
        if self.core is not None:
            self._run_inline(pkt, head, arrays)
            return
        arrays = {"image": forward(pkt, "image"), **({"gt_mask": forward(pkt, "gt_mask")} if "gt_mask" in pkt.arrays else {}),
                  **arrays}
        msg = encode("job", dict(head, t=pkt.header["t"]), arrays)
        while (wid := self.jobs.next_worker()) is not None:
            try:
                self.router.send_multipart([wid, b"", *msg], copy=False)
            except zmq.ZMQError:  # that worker is gone (ROUTER_MANDATORY): try the next one
                self.jobs.lose(wid)
                self.count("workers_lost")
                continue
            self.jobs.sent(pkt.seq, pts, stamp())
            self._dispatched(pkt.seq)
            return

    def _dispatched(self, seq: int) -> None:
        self.last_dispatched = seq
        self.counters["dispatched"] += 1
        self.latest = None

    def _run_inline(self, pkt, head: dict, arrays: dict) -> None:
        """One worker, no hop: run the frame here, feed the keeper, send the result to the sink."""
        t = pkt.header["t"]
        t["wrk_recv"] = stamp()
        arrays["image"] = pkt.arrays["image"]
        try:
            outcome = self.core.run(arrays, t)
            if self.shm is not None and not self.shm.still_valid(pkt, self.counters):
                raise RuntimeError("the frame's shared-memory slot was reused while the model read it")
            ft, st = outcome[2]
            self.keeper.record(head["pts_ns"], ft, st)
        except Exception as exc:  # noqa: BLE001 - a failing frame costs that frame, not the stream
            outcome = exc
            self.count("errors")
            self.counters["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
        self._dispatched(pkt.seq)
        self.sender.result(self.core, head, pkt, t, outcome)

    def _send_eos(self) -> bool:
        """After the source's EOS and the last dispatch: one eos per worker; True when all sent."""
        if self.eos_deadline is None:
            self.eos_deadline = stamp() + int(self.options.eos_timeout_s * 1e9)
        src = self.eos_header or {}
        last_seq = src.get("last_seq", self.last_seq if self.last_seq is not None else -1)
        tail = max(last_seq - max(self.last_dispatched, self.last_seq if self.last_seq is not None else -1), 0)
        self.counters["tail_lost"] = tail  # sent after the last frame that reached us: lost on the way
        head = {"stream": self.env.stream_id, "seq": max(last_seq + 1, 0), "capture_ns": stamp(),
                "frames_sent": src.get("frames_sent", last_seq + 1), "last_seq": last_seq,
                "last_dispatched": self.last_dispatched, "dispatched": self.counters["dispatched"],
                "tail_lost": tail, "token": self.env.endpoints.token, "context": {k: v for k, v in self.counters.items() if isinstance(v, int)}}
        while (wid := self.jobs.next_worker()) is not None:
            try:
                if self.core is not None:
                    self.sender.send(encode("eos", dict(head, worker=self.core.name)))
                else:
                    self.router.send_multipart([wid, b"", *encode("eos", head)])
                self.count("eos_sent")
            except zmq.ZMQError as exc:
                self.counters["eos_error"] = str(exc)
            self.jobs.eos_to(wid)
        return self.jobs.all_ended() or stamp() > self.eos_deadline

    def process(self) -> bool:
        self.poller.poll(5 if self.latest is not None else 50)
        self._drain_audio()
        self._drain_video()
        self._drain_router()
        if self.latest is not None and self.jobs.has_credit() and self.keeper is not None:
            self._dispatch()
        self.in_flight_gauge.set(len(self.jobs.in_flight))
        if self.eos_header is None and self.env.stop.is_set() and self.latest is None:
            # the source is gone without an EOS that reached us: end after a quiet second
            self.eos_deadline = self.eos_deadline or stamp() + 1_000_000_000
            if stamp() > self.eos_deadline:
                self.eos_header, self.eos_deadline = {}, None
        if self.eos_header is None and not self.env.stop.is_set() and (why := self.liveness.silent()):
            raise StageError(why)
        if self.eos_header is not None and self.latest is None:
            return not self._send_eos()
        return True

    def report(self) -> dict[str, Any]:
        rep = super().report()
        rep["counters"].update(audio_gap_samples=self.ring.gap_samples, workers=len(self.jobs.workers),
                               rejected_texts=self.keeper.rejected if self.keeper else 0,
                               segments_closed=self.keeper.segments_closed if self.keeper else 0)
        rep["queues"] = {"context_backlog": self.backlog.summary(), "jobs_in_flight": self.in_flight_gauge.summary()}
        core = self.core
        if core is not None:  # the inline worker reports here
            rep["counters"]["jobs"] = core.jobs
            rep.update(worker="worker0", warmup_ms=round(core.warmup_ms, 1), model=core.model_id, backend=core.info)
        return rep

    def close(self) -> None:
        for sock in (self.vsub, self.asub, self.router):
            close_socket(sock, self.env.abort)
        if self.shm is not None:
            self.shm.close()
        if self.sender is not None:
            self.sender.close()
        if self.core is not None:
            self.core.close()
