"""The segmenter: one ContextStage (newest frame wins, audio window, text context) feeding one or
more stateless WorkerStages (resize, engine backend, mask upsampling).

Why split: the text context is a chain (frame n's rings hold frame n-1's texts), so it must live
in exactly one place. The context stage owns it and ships the ring state inside every job; a
worker needs nothing but the job, so any number of workers can serve one stream. Workers ask for
work (credit-based ROUTER / DEALER, at most one job in flight per worker) instead of receiving
a blind PUSH round-robin: a job is only cut when a worker is free, so it always carries the
newest frame and the freshest context. Results fan in to the sink over PUSH / PULL.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import cv2
import numpy as np
import zmq

from .backend import model_geometry, open_backend, warm_up
from .context import AudioRing, ContextKeeper
from .metrics import Gauge
from .protocol import encode, forward
from .stage import Stage, StageEnv, StageError
from .transport import close_socket, open_socket, recv_packet, stamp


class ContextStage(Stage):
    """Inputs: ``frame`` / ``audio`` / ``eos`` from the source (SUB on the video and audio links),
    ``ready`` from workers (ROUTER on the jobs link, carrying the texts of their last job).
    Outputs: ``job`` messages (frame image + gt, the 15,600-sample audio window ending at the
    frame's pts, the four ring arrays) and a final ``eos`` per worker.
    Options: workers (how many to expect), audio_wait_ms (how long a frame may wait for its audio
    to arrive, default 30), job_timeout_s (a job whose worker never answers is given up, 5)."""

    name = "context"

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        ep = env.endpoints
        self.vsub = open_socket(ctx, zmq.SUB, ep, "video", bind=False)
        self.asub = open_socket(ctx, zmq.SUB, ep, "audio", bind=False, hwm=1000, frames=False)
        for s in (self.vsub, self.asub):
            s.setsockopt(zmq.SUBSCRIBE, b"")
        self.router = open_socket(ctx, zmq.ROUTER, ep, "jobs", bind=True, frames=True)
        self.poller = zmq.Poller()
        for s in (self.vsub, self.asub, self.router):
            self.poller.register(s, zmq.POLLIN)
        self.expected_workers = int(self.options.get("workers", 1))
        self.audio_wait_ns = int(self.options.get("audio_wait_ms", 30) * 1e6)
        self.job_timeout_ns = int(self.options.get("job_timeout_s", 5.0) * 1e9)
        self.ring = AudioRing()
        self.keeper: ContextKeeper | None = None
        self.geometry: dict[str, Any] | None = None
        self.workers: set[bytes] = set()
        self.idle: deque[bytes] = deque()
        self.inflight: deque[list] = deque()  # [seq, pts, t_sent, texts or None, done] in dispatch order
        self.latest = None
        self.last_seq: int | None = None
        self.last_dispatched = -1
        self.eos_header: dict | None = None
        self.eos_sent: set[bytes] = set()
        self.eos_deadline: int | None = None
        self.audio_seen = False
        self.backlog, self.in_flight_gauge = Gauge(), Gauge()
        self.counters.update(received=0, transport_gaps=0, superseded=0, dispatched=0, audio_underruns=0, lost_jobs=0)

    # ---- inputs ----
    def _drain_audio(self) -> None:
        while self.asub.poll(0):
            _, pkt = recv_packet(self.asub, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("audio", "eos"))
            if pkt is None or pkt.kind == "eos":
                continue
            first = pkt.header.get("first_sample")
            if not isinstance(first, int) or "samples" not in pkt.arrays or pkt.arrays["samples"].ndim != 1:
                self.count("malformed")
                continue
            self.ring.write(first, pkt.arrays["samples"])
            self.audio_seen = True

    def _drain_video(self) -> None:
        n = 0
        while self.vsub.poll(0):
            _, pkt = recv_packet(self.vsub, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("frame", "eos"))
            if pkt is None:
                continue
            if pkt.kind == "eos":
                self.eos_header = self.eos_header or pkt.header
                self.counters["eos_from_source"] = True
                continue
            image = pkt.arrays.get("image")
            if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape \
                    or not isinstance(pkt.header.get("pts_ns"), int):
                self.count("malformed")
                continue
            seq = pkt.seq
            expected = 0 if self.last_seq is None else self.last_seq + 1
            if seq < expected:  # a restarted or duplicated sender: never reorder the chain
                self.count("stale")
                continue
            self.counters["transport_gaps"] += seq - expected  # lost at a high-water mark on the way
            self.last_seq = seq
            n += 1
            self.counters["received"] += 1
            if self.latest is not None:
                self.counters["superseded"] += 1  # newest frame wins
            pkt.header.setdefault("t", {})["ctx_recv"] = stamp()
            self.latest = pkt
        if n:
            self.backlog.set(n)

    def _drain_router(self) -> None:
        while self.router.poll(0):
            env, pkt = recv_packet(self.router, self.counters, max_bytes=1 << 20, kinds=("ready",), envelope=2)
            if pkt is None or not env:
                continue
            wid = env[0]
            if wid not in self.workers:
                geo = pkt.header.get("geometry")
                if not isinstance(geo, dict):
                    self.count("malformed")
                    continue
                self._register(wid, geo)
            seq = pkt.header.get("job")
            for item in self.inflight:
                if item[0] == seq and not item[4]:
                    ok = pkt.header.get("ok") and "frame_text" in pkt.arrays and "segment_text" in pkt.arrays
                    item[3] = (pkt.arrays["frame_text"], pkt.arrays["segment_text"]) if ok else None
                    item[4] = True
            if wid not in self.idle and wid not in self.eos_sent:
                self.idle.append(wid)
        self._apply_texts()

    def _register(self, wid: bytes, geo: dict) -> None:
        keys = ("width", "frame_ring", "segment_ring", "audio_samples")
        if not all(isinstance(geo.get(k), int) and geo[k] > 0 for k in keys):
            raise StageError(f"worker {wid!r} sent a bad geometry {geo}")
        if self.geometry is None:
            self.geometry = {k: geo[k] for k in keys}
            self.keeper = ContextKeeper(geo["width"], geo["frame_ring"], geo["segment_ring"])
        elif any(self.geometry[k] != geo[k] for k in keys):
            raise StageError(f"workers run different models: {self.geometry} vs {geo}")
        self.workers.add(wid)

    def _apply_texts(self) -> None:
        """Results update the keeper strictly in dispatch order (see context.py for the rule)."""
        now = stamp()
        while self.inflight and (self.inflight[0][4] or now - self.inflight[0][2] > self.job_timeout_ns):
            seq, pts, _, texts, done = self.inflight.popleft()
            if not done:
                self.counters["lost_jobs"] += 1
            if texts is not None and self.keeper is not None:
                nxt = self.inflight[0][1] if self.inflight else None
                self.keeper.record(pts, texts[0], texts[1], next_pts_ns=nxt)

    # ---- output ----
    def _dispatch(self) -> None:
        pkt = self.latest
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
                "t": pkt.header["t"], "prev_seq": prev, "dropped_before": pkt.seq - prev - 1}
        arrays: dict[str, Any] = {"image": forward(pkt, "image")}
        if "gt_mask" in pkt.arrays:
            arrays["gt_mask"] = forward(pkt, "gt_mask")
        arrays.update({"audio": window[None], **state.as_inputs()})
        msg = encode("job", head, arrays)
        while self.idle:
            wid = self.idle.popleft()
            try:
                self.router.send_multipart([wid, b"", *msg], copy=False)
            except zmq.ZMQError:  # that worker is gone (ROUTER_MANDATORY): try the next one
                self.workers.discard(wid)
                self.count("workers_lost")
                continue
            self.inflight.append([pkt.seq, pts, stamp(), None, False])
            self.last_dispatched = pkt.seq
            self.counters["dispatched"] += 1
            self.latest = None
            return

    def _send_eos(self) -> bool:
        """After the source's EOS and the last dispatch: one eos per worker; True when all sent."""
        if self.eos_deadline is None:
            self.eos_deadline = stamp() + int(self.options.get("eos_timeout_s", 10) * 1e9)
        src = self.eos_header or {}
        last_seq = src.get("last_seq", self.last_seq if self.last_seq is not None else -1)
        tail = max(last_seq - max(self.last_dispatched, self.last_seq if self.last_seq is not None else -1), 0)
        head = {"stream": self.env.stream_id, "seq": max(last_seq + 1, 0), "capture_ns": stamp(),
                "frames_sent": src.get("frames_sent", last_seq + 1), "last_seq": last_seq,
                "last_dispatched": self.last_dispatched, "dispatched": self.counters["dispatched"],
                "tail_lost": tail, "context": {k: v for k, v in self.counters.items() if isinstance(v, int)}}
        while self.idle:
            wid = self.idle.popleft()
            try:
                self.router.send_multipart([wid, b"", *encode("eos", head)])
                self.count("eos_sent")
            except zmq.ZMQError as exc:
                self.counters["eos_error"] = str(exc)
            self.eos_sent.add(wid)
        done = len(self.eos_sent) >= max(self.expected_workers, len(self.workers)) and not self.inflight
        return done or stamp() > self.eos_deadline

    def process(self) -> bool:
        self.poller.poll(5 if self.latest is not None else 50)
        self._drain_audio()
        self._drain_video()
        self._drain_router()
        if self.latest is not None and self.idle and self.keeper is not None:
            self._dispatch()
        self.in_flight_gauge.set(len(self.inflight))
        if self.eos_header is None and self.env.stop.is_set() and self.latest is None:
            # the source is gone without an EOS that reached us: end after a quiet second
            self.eos_deadline = self.eos_deadline or stamp() + 1_000_000_000
            if stamp() > self.eos_deadline:
                self.eos_header, self.eos_deadline = {}, None
        if self.eos_header is not None and self.latest is None:
            return not self._send_eos()
        return True

    def report(self) -> dict[str, Any]:
        rep = super().report()
        rep["counters"].update(audio_gap_samples=self.ring.gap_samples, workers=len(self.workers),
                               segments_closed=self.keeper.segments_closed if self.keeper else 0)
        rep["queues"] = {"context_backlog": self.backlog.summary(), "jobs_in_flight": self.in_flight_gauge.summary()}
        return rep

    def close(self) -> None:
        for s in ("vsub", "asub", "router"):
            close_socket(getattr(self, s, None), self.env.abort)


class WorkerStage(Stage):
    """Inputs: ``job`` messages (DEALER on the jobs link). Outputs: a ``ready`` message back to the
    context (texts of the job just run), then a ``result`` to the sink (PUSH on the results link)
    with parts mask [H,W] uint8 (1 = sounding, or a class index for semantic models), the frame
    image and gt_mask forwarded untouched, and the top concepts in the header.
    Options: backend (spec dict, see stream.backend), index (worker number), top_k (3)."""

    name = "worker"

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        self.name = f"worker{self.options.get('index', 0)}"
        spec = dict(self.options["backend"])
        if spec.get("kind") == "null":
            spec.setdefault("seed", int(self.options.get("index", 0)))  # workers must not share a jitter sequence
        try:
            self.backend = open_backend(spec)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise StageError(f"cannot load the model {spec.get('artifact', spec.get('kind'))}: {exc}") from exc
        self.geo = model_geometry(self.backend)
        self.warmup_ms = warm_up(self.backend, self.geo)
        self.concepts = self.geo["concepts"]
        info = self.info = self.backend.info()  # kept: a closed backend cannot describe itself
        self.model_id = f"{self.geo['model']}:{info.get('backend', '?')}"
        ep = env.endpoints
        ident = f"{self.name}-{time.monotonic_ns() % 10**9}".encode()  # unique even if a worker restarts
        self.dealer = open_socket(ctx, zmq.DEALER, ep, "jobs", bind=False, identity=ident)
        self.push = open_socket(ctx, zmq.PUSH, ep, "results", bind=False)
        self.push.setsockopt(zmq.SNDTIMEO, 200)
        self.counters.update(jobs=0, errors=0)
        self._ready(-1, None)

    def _ready(self, seq: int, texts: tuple[np.ndarray, np.ndarray] | None) -> None:
        head = {"stream": self.env.stream_id, "seq": max(seq, 0), "capture_ns": stamp(), "job": seq, "ok": texts is not None,
                "worker": self.name, "geometry": {k: self.geo[k] for k in ("width", "frame_ring", "segment_ring", "audio_samples")}}
        arrays = {"frame_text": texts[0], "segment_text": texts[1]} if texts is not None else {}
        self.dealer.send_multipart([b"", *encode("ready", head, arrays)])

    def _send(self, msg: list) -> None:
        """Blocking send with a short timeout so an abort is still noticed: a slow sink slows this
        worker, which then takes no new job, so frames are dropped at the context (newest wins)."""
        while not self.env.abort.is_set():
            try:
                self.push.send_multipart(msg, copy=False)
                return
            except zmq.Again:
                self.count("result_send_waits")

    def _run(self, pkt) -> tuple[dict[str, Any], np.ndarray | None, tuple | None]:
        t = pkt.header.setdefault("t", {})
        image = pkt.arrays["image"]
        h, w = self.geo["image_size"]
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        x = small.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)
        inputs = {"image": x, **{k: pkt.arrays[k] for k in ("audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid")}}
        t["pre_done"] = stamp()
        out = self.backend.infer(inputs)
        t["infer_done"] = stamp()
        logits = out["mask_logits"][0]
        if logits.shape[0] == 1:  # binary: upsample logits (smooth edges), then threshold at 0
            mask = (cv2.resize(logits[0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR) > 0).view(np.uint8)
        else:  # semantic: class index per pixel, nearest keeps labels intact
            cls = logits.argmax(0).astype(np.uint8)
            mask = cv2.resize(cls, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        cl = out["concept_logits"][0].astype(np.float64)
        p = np.exp(cl - cl.max())
        p /= p.sum()
        top = np.argsort(-p)[: int(self.options.get("top_k", 3))]
        names = self.concepts or [f"concept{i}" for i in range(len(p))]
        extra = {"concepts": [[names[i] if i < len(names) else str(i), round(float(p[i]), 4)] for i in top],
                 "mask_kind": "binary" if logits.shape[0] == 1 else "semantic"}
        t["post_done"] = stamp()
        return extra, mask, (out["frame_text"], out["segment_text"])

    def process(self) -> bool:
        if not self.dealer.poll(100):
            return True
        _, pkt = recv_packet(self.dealer, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("job", "eos"), envelope=1)
        if pkt is None:
            self._ready(-1, None)  # keep our credit: the context must not wait on a message it never sent
            return True
        if pkt.kind == "eos":
            head = dict(pkt.header, worker=self.name)
            self._send(encode("eos", head))
            self.counters["eos_forwarded"] = True
            return False
        if not isinstance(pkt.header.get("t"), dict):
            pkt.header["t"] = {}
        t = pkt.header["t"]
        t["wrk_recv"] = stamp()
        head = {k: pkt.header.get(k) for k in ("stream", "seq", "capture_ns", "pts_ns", "prev_seq", "dropped_before")}
        head.update(t=t, model=self.model_id, worker=self.name)
        try:
            self._check_job(pkt)
            extra, mask, texts = self._run(pkt)
        except Exception as exc:  # noqa: BLE001 - a bad job or a backend failure costs one frame, not the worker
            self.count("errors")
            self.counters["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
            self._ready(pkt.seq, None)
            head["error"] = self.counters["last_error"]
            self._send(encode("result", head))
            return True
        self.counters["jobs"] += 1
        self._ready(pkt.seq, texts)  # first: the context can cut the next job while we send
        head.update(extra)
        t["wrk_send"] = stamp()
        arrays: dict[str, Any] = {"mask": mask, "image": forward(pkt, "image")}
        if "gt_mask" in pkt.arrays:
            arrays["gt_mask"] = forward(pkt, "gt_mask")
        self._send(encode("result", head, arrays))
        return True

    def _check_job(self, pkt) -> None:
        for name in ("audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid"):
            shape, _ = self.backend.input_specs[name]
            got = pkt.arrays.get(name)
            if got is None or tuple(got.shape) != tuple(shape) or got.dtype != np.float32:
                raise ValueError(f"job part '{name}' is {None if got is None else (got.shape, got.dtype)}, model wants {shape} float32")
        img = pkt.arrays.get("image")
        if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 2:
            raise ValueError("job has no valid RGB image")
        if not isinstance(pkt.header.get("pts_ns"), int) or not isinstance(pkt.header.get("prev_seq"), int):
            raise ValueError("job header lacks pts_ns / prev_seq")

    def report(self) -> dict[str, Any]:
        rep = super().report()
        rep["worker"] = self.name
        rep["warmup_ms"] = round(getattr(self, "warmup_ms", 0.0), 1)
        rep["model"] = getattr(self, "model_id", None)
        rep["backend"] = getattr(self, "info", None)
        return rep

    def close(self) -> None:
        for s in ("dealer", "push"):
            close_socket(getattr(self, s, None), self.env.abort)
        if hasattr(self, "backend"):
            self.backend.close()
