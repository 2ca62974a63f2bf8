"""The segmenter's compute: resize to the model's size (stream/stages/resize.py), one
backend step through engine.runtime, mask upsampled back to the frame size, top concepts.

WorkerCore has no sockets, so it runs either inside the segmenter (stream/stages/multistream.py:
one worker, no hop at all) or in a WorkerStage that takes jobs over the network (scale-out).
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import zmq

from stream.stages.hearing import Hearing, silence_reference
from stream.stages.models import model_geometry, open_backend, warm_up
from stream.stages.options import WorkerOptions
from stream.stages.resize import resize_frame
from stream.stages.stage import Stage, StageEnv, StageError
from stream.wire.protocol import GEOMETRY_KEYS, encode, eos_ok, finite, forward, stamps
from stream.wire.shm_link import ResultRing
from stream.wire.transport import GRACEFUL_LINGER_MS, close_socket, open_socket, recv_packet, stamp

SEND_TIMEOUT_S = 10.0  # a peer that takes nothing for this long is gone
RING_STUCK_S = 3.0  # a full results ring while the sink's socket takes messages: its words are not the sink's, go payload
RING_UNCLAIMED_S = 5.0  # a full results ring no sink ever handed back: the sink cannot map it, go payload
STARTUP_TIMEOUT_NS = 120 * 10**9
STATE = ("audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid")


class WorkerCore:
    """A loaded backend and the per-frame compute around it. Options: backend (spec dict, see
    stream.stages.models), index (worker number), top_k (concepts named per frame, 3)."""

    def __init__(self, spec: dict[str, Any], index: int = 0, top_k: int = 3) -> None:
        # OpenCV's own thread pool splits the mask upsample across cores; on a small box the other
        # core is busy (capture, sink, the model) and a split op waits for it: measured 0.1 ms
        # alone, 2.5 ms p50 inside the pipeline. One thread is steadier.
        cv2.setNumThreads(1)
        self.name = f"worker{index}"
        spec = dict(spec)
        self.resize = spec.pop("resize", "fast")  # stream/stages/resize.py: fast (0.15 ms at 640x480) | area (as in training, 1.3 ms)
        if spec.get("kind") == "null":
            spec.setdefault("seed", index)  # workers must not share a jitter sequence
        try:
            self.backend = open_backend(spec)
        except (OSError, ValueError, RuntimeError, ImportError, KeyError) as exc:
            raise StageError(f"cannot load the model {spec.get('artifact', spec.get('kind'))}: {exc}") from exc
        self.geo = model_geometry(self.backend)
        # the one image input run() (a WorkerStage) reuses every frame: written in place, handed to the
        # backend as is (no transposed temporary and no second copy inside the backend's checks)
        self.image_in = np.empty(self.backend.input_specs["image"][0], np.float32)
        self.warmup_ms = warm_up(self.backend)
        self.info = self.backend.info()  # kept: a closed backend cannot describe itself
        self.model_id = f"{self.geo['model']}:{self.info.get('backend', '?')}"
        self.top_k = top_k
        self.names = self.geo["concepts"]
        self.hearing = Hearing(silence_reference(self.backend), self.names)  # "nothing" / "unsure" (stream/stages/hearing.py)
        self.jobs = 0
        self.errors = 0
        self.nonfinite = 0  # non-finite input values replaced by 0

    def geometry(self) -> dict[str, int]:
        return {k: self.geo[k] for k in GEOMETRY_KEYS}

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        for name in STATE:
            shape, _ = self.backend.input_specs[name]
            got = arrays.get(name)
            if got is None or tuple(got.shape) != tuple(shape) or got.dtype != np.float32:
                raise ValueError(f"job part '{name}' is {None if got is None else (got.shape, got.dtype)}, model wants {shape} float32")
        img = arrays.get("image")
        if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 2:
            raise ValueError("job has no valid RGB image")

    def run(self, arrays: dict[str, np.ndarray], t: dict[str, int]) -> tuple[dict[str, Any], np.ndarray, tuple]:
        """One frame: returns (header extras, mask [H,W] uint8, (frame_text, segment_text))."""
        inputs = self.prepare(arrays, t, into=self.image_in)
        out = self.backend.infer(inputs)
        t["infer_done"] = stamp()
        return self.finish(arrays["image"].shape, out, t)

    def prepare(self, arrays: dict[str, np.ndarray], t: dict[str, int], into: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The step's batch-1 inputs for a job: image resized and scaled, state passed through.

        ``into``: the contiguous [1,3,H,W] float32 buffer the image is written into (one pass: HWC
        uint8 -> CHW float32 scaled); None allocates one, for callers that keep several rows alive
        (multistream batches). The frame's pixels are written once and never copied again."""
        h, w = self.geo["image_size"]
        small = resize_frame(arrays["image"], (w, h), self.resize)
        x = np.empty((1, 3, h, w), np.float32) if into is None else into
        np.multiply(small.transpose(2, 0, 1), np.float32(1 / 255), out=x[0])
        inputs = {"image": x}
        for k in STATE:  # a job from the wire may carry NaN / Inf: never let it reach the model
            inputs[k], bad = finite(arrays[k])
            self.nonfinite += bad
        t["pre_done"] = stamp()
        return inputs

    def finish(self, image_shape: tuple[int, ...], out: dict[str, np.ndarray], t: dict[str, int]) -> tuple[dict[str, Any], np.ndarray, tuple]:
        """Step outputs (batch 1) -> (header extras, mask at the frame's size, texts)."""
        logits = out["mask_logits"][0]
        size = (image_shape[1], image_shape[0])
        if logits.shape[0] == 1:  # binary: upsample logits (smooth edges), then threshold at 0
            mask = (cv2.resize(logits[0], size, interpolation=cv2.INTER_LINEAR) > 0).view(np.uint8)
        else:  # semantic: class index per pixel; nearest keeps labels intact
            mask = cv2.resize(logits.argmax(0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        cl = out["concept_logits"][0].astype(np.float64)
        p = np.exp(cl - cl.max())
        p /= p.sum()
        top = np.argsort(-p)[: self.top_k]
        names = [self.names[i] if i < len(self.names) else f"concept{i}" for i in top]
        area = float(np.count_nonzero(mask)) / mask.size  # share of the frame painted as sounding
        extra = {"concepts": [[n, round(float(p[i]), 4)] for n, i in zip(names, top)],
                 "mask_kind": "binary" if logits.shape[0] == 1 else "semantic", "hears": self.hearing.label(cl, area),
                 "mask_area": round(area, 5)}
        t["post_done"] = stamp()
        self.jobs += 1
        return extra, mask, (out["frame_text"], out["segment_text"])

    def close(self) -> None:
        self.backend.close()


class ResultSender:
    """PUSH to the sink. Sends block (in short slices, so an abort is noticed): a slow sink slows
    the worker, which then takes no new job, so frames are dropped at the context (newest wins)
    instead of queueing anywhere. On same-host links (``Endpoints.extra["shm"]``) a result's parts
    go through a shared-memory ring whose slots the sink hands back (stream/shm_link.ResultRing):
    a slow sink then blocks the wait for a free slot instead of the send, under the same deadline."""

    def __init__(self, ctx: zmq.Context, env: StageEnv, counters: dict, send_image: bool = True,
                 send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.env, self.counters = env, counters
        self.send_timeout_ns = int(send_timeout_s * 1e9)
        self.sent_any = False
        self._unfree: int | None = None  # since when the ring has had no free slot (can_take)
        self.send_image = send_image  # the frame goes back only when the sink draws on it (record / display)
        shm = env.endpoints.extra.get("shm")
        self.ring = ResultRing(shm) if ResultRing.wanted(shm) else None
        self.push = open_socket(ctx, zmq.PUSH, env.endpoints, "results", bind=False)
        self.push.setsockopt(zmq.SNDTIMEO, 200)

    def _deadline(self) -> tuple[int, int]:
        # before the first result got through, the sink may simply not have started yet (nodes of
        # a graph start in any order): wait as long as a source waits for its subscribers
        wait_ns = self.send_timeout_ns if self.sent_any else max(self.send_timeout_ns, STARTUP_TIMEOUT_NS)
        return stamp() + wait_ns, wait_ns

    def can_take(self) -> bool:
        """Whether a result can go now without waiting: a free ring slot (when the ring is in use)
        and room on the socket. The multi-stream segmenter asks before it runs a stream's frame,
        so a slow sink costs its own stream's frames, never the other streams' time."""
        if self.ring is not None and not self.ring.free():
            if self.ring.unclaimed() and stamp() - self.unfree_since() > RING_UNCLAIMED_S * 1e9:
                self.ring.give_up(f"the sink handed back none of {self.ring.slots} results in {RING_UNCLAIMED_S:g} s: "
                                  "it cannot map this host's /dev/shm, or has not started reading")
            elif not self._ring_stuck(self.unfree_since()):
                return False
        self._unfree = None
        return bool(self.push.getsockopt(zmq.EVENTS) & zmq.POLLOUT)

    def _ring_stuck(self, since: int) -> bool:
        """No slot came back for RING_STUCK_S while the sink's socket takes messages: the
        handed-back words are not the sink's (another process wrote them). Results go as payload
        from now on, counted, instead of waiting for slots that never come and blaming a live sink."""
        if stamp() - since <= RING_STUCK_S * 1e9 or not self.push.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
            return False
        self.counters["result_ring_stuck"] = self.counters.get("result_ring_stuck", 0) + 1
        self.ring.give_up(f"no result slot came back for {RING_STUCK_S:g} s while the sink took messages")
        return True

    def unfree_since(self) -> int:
        self._unfree = self._unfree or stamp()
        return self._unfree

    def try_send(self, msg: list) -> bool:
        """One send that never waits; False if the sink cannot take it now."""
        try:
            self.push.send_multipart(msg, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.sent_any = True
        return True

    def _gone(self, wait_ns: int) -> StageError:
        return StageError(f"the sink at {self.env.endpoints['results']} took no result for "
                          f"{wait_ns / 1e9:g} s: it is gone (start it, or check the address)")

    def send(self, msg: list, deadline: tuple[int, int] | None = None) -> None:
        """Blocks while the sink is slow, never longer than the deadline: a sink that takes nothing
        for ``send_timeout_s`` is gone, and this stage ends with an error naming it (a node
        whose sink died used to retry forever)."""
        deadline, wait_ns = deadline or self._deadline()
        while not self.env.abort.is_set():
            try:
                self.push.send_multipart(msg, copy=False)
                self.sent_any = True
                return
            except zmq.Again:
                self.counters["result_send_waits"] = self.counters.get("result_send_waits", 0) + 1
                if stamp() > deadline:
                    raise self._gone(wait_ns) from None

    def _into_ring(self, head: dict, arrays: dict, deadline: tuple[int, int]) -> tuple[dict, dict]:
        """Waits (bounded by the send deadline) until the sink handed back the next slot, then
        moves the parts there: a slow sink back-pressures here, a result is never overwritten."""
        pause, start = 50e-6, stamp()
        if not self.ring.free():
            self.counters["result_slot_waits"] = self.counters.get("result_slot_waits", 0) + 1
            while not self.ring.free():
                if self.env.abort.is_set():
                    return head, arrays  # send() sees the abort too and sends nothing
                if stamp() > deadline[0]:
                    raise self._gone(deadline[1])
                if self.ring.unclaimed() and stamp() - start > RING_UNCLAIMED_S * 1e9:
                    self.ring.give_up(f"the sink handed back none of {self.ring.slots} results in {RING_UNCLAIMED_S:g} s: "
                                      "it cannot map this host's /dev/shm, or has not started reading")
                    break
                if self._ring_stuck(start):
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.002)
        arrays = {k: v if isinstance(v, np.ndarray) else np.frombuffer(_buffer(v[0]), v[1]["dtype"]).reshape(v[1]["shape"])
                  for k, v in arrays.items()}
        head, arrays = self.ring.pack(head, arrays)
        if self.ring.reclaimed:
            self.counters["result_slots_reclaimed"] = self.ring.reclaimed
        return head, arrays

    def result(self, core: WorkerCore, head: dict, pkt, t: dict, outcome) -> None:
        """The result message for a job: mask + the frame's image and gt forwarded untouched, or an
        ``error`` entry (the frame still takes its place in the sink's order)."""
        head = dict(head, t=t, model=core.model_id, worker=core.name)
        if isinstance(outcome, Exception):
            head["error"] = f"{type(outcome).__name__}: {outcome}"[:300]
            self.send(encode("result", head))
            return
        extra, mask, _ = outcome
        head.update(extra)
        t["wrk_send"] = stamp()
        arrays: dict[str, Any] = {"mask": mask}
        if self.send_image:
            arrays["image"] = forward(pkt, "image")
        if "gt_mask" in pkt.arrays:
            arrays["gt_mask"] = forward(pkt, "gt_mask")
        deadline = self._deadline()
        if self.ring is not None:
            head, arrays = self._into_ring(head, arrays, deadline)
        self.send(encode("result", head, arrays), deadline)

    def close(self) -> None:
        if self.ring is not None and self.ring.writer is not None and not self.env.abort.is_set():
            # the last results may still be on their way: unlink once the sink handed them back
            # (bounded like the socket's linger), so a sink that maps the ring late still finds it
            end = stamp() + GRACEFUL_LINGER_MS * 1_000_000
            while self.ring.writer.held() and stamp() < end and not self.env.abort.is_set():
                time.sleep(0.002)
        close_socket(self.push, self.env.abort)
        if self.ring is not None:
            self.ring.close()


def _buffer(part) -> memoryview:
    """The bytes of a forwarded part (a received zmq.Frame, or an array copied out of a slot)."""
    return part if isinstance(part, np.ndarray) else part.buffer


class WorkerStage(Stage):
    """Inputs: ``job`` messages (DEALER on the jobs link). Outputs: a ``ready`` message back to the
    context (texts of the job just run), then a ``result`` to the sink (PUSH on the results link)
    with parts mask [H,W] uint8 (1 = sounding, or a class index for semantic models), the frame
    image and gt_mask forwarded untouched, and the top concepts in the header.
    Options: backend (spec dict, see stream.stages.models), index (worker number), top_k (3),
    send_image (return the frame with the mask; default True, off when nothing draws)."""

    name = "worker"
    Options = WorkerOptions
    options: WorkerOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.core: WorkerCore | None = None  # opened in open(); close() runs even if it failed
        self.dealer = self.sender = None

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        self.core = WorkerCore(self.options.backend, self.options.index, self.options.top_k)
        self.name = self.core.name
        ident = f"{self.name}-{time.monotonic_ns() % 10**9}".encode()  # unique even if a worker restarts
        self.dealer = open_socket(ctx, zmq.DEALER, env.endpoints, "jobs", bind=False, identity=ident)
        self.sender = ResultSender(ctx, env, self.counters, self.options.send_image)
        self.counters.update(jobs=0, errors=0)
        self._ready(-1, None)

    def _ready(self, seq: int, texts: tuple[np.ndarray, np.ndarray] | None) -> None:
        head = {"stream": self.env.stream_id, "seq": max(seq, 0), "capture_ns": stamp(), "job": seq, "ok": texts is not None,
                "worker": self.name, "geometry": self.core.geometry()}
        arrays = {"frame_text": texts[0], "segment_text": texts[1]} if texts is not None else {}
        try:
            self.dealer.send_multipart([b"", *encode("ready", head, arrays)])
        except zmq.Again:
            raise StageError(f"the segmenter at {self.env.endpoints['jobs']} takes no message: it is gone") from None

    def process(self) -> bool:
        if not self.dealer.poll(100):
            return True
        _, pkt = recv_packet(self.dealer, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("job", "eos"), envelope=1)
        if pkt is None:
            self._ready(-1, None)  # keep our credit: the context must not wait on a message it never sent
            return True
        if pkt.kind == "eos":
            if not eos_ok(pkt.header, self.env.endpoints.token):
                self.count("forged_eos")
                self._ready(-1, None)
                return True
            self.sender.send(encode("eos", dict(pkt.header, worker=self.name)))
            self.counters["eos_forwarded"] = True
            return False
        t = stamps(pkt.header)
        t["wrk_recv"] = stamp()
        head = {k: pkt.header.get(k) for k in ("stream", "seq", "capture_ns", "pts_ns", "prev_seq", "dropped_before")}
        try:
            self.core.check(pkt.arrays)
            outcome = self.core.run(pkt.arrays, t)
        except Exception as exc:  # noqa: BLE001 - a bad job or a backend failure costs one frame, not the worker
            outcome = exc
            self.count("errors")
            self.counters["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
        self._ready(pkt.seq, None if isinstance(outcome, Exception) else outcome[2])  # first: the next job is cut meanwhile
        if not isinstance(outcome, Exception):
            self.counters["jobs"] += 1
        self.sender.result(self.core, head, pkt, t, outcome)
        return True

    def report(self) -> dict[str, Any]:
        rep = super().report()
        core = self.core
        rep.update(worker=self.name, warmup_ms=round(core.warmup_ms, 1) if core else None,
                   model=core.model_id if core else None, backend=core.info if core else None)
        return rep

    def close(self) -> None:
        close_socket(self.dealer, self.env.abort)
        if self.sender is not None:
            self.sender.close()
        if self.core is not None:
            self.core.close()
