"""The sink: restores order, measures, and hands every mask to the outputs.

Order: each result names the job dispatched before it (``prev_seq``), so the chain of dispatched
frames is known exactly: a result is released as soon as its predecessor has been, and frames the
context dropped never leave a hole to wait for. A missing link (a worker died mid-job) is given up
after ``reorder_timeout_ms`` or when ``reorder_size`` results wait behind it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import zmq

from stream.log import warn
from stream.stages.events import EventLog, SoundingEvents
from stream.stages.metrics import Gauge, Latencies, Rate
from stream.stages.options import SinkOptions
from stream.stages.outputs import Display, MaskStore, MetricsLog, display_available, render_overlay
from stream.stages.recorder import Recorder
from stream.stages.stage import Liveness, Stage, StageEnv, StageError
from stream.view.feed import ViewFeed
from stream.wire.order import RESYNC, History
from stream.wire.protocol import encode, eos_ok, finite
from stream.wire.shm_link import ResultTaker
from stream.wire.subscriptions import SubscriptionGate
from stream.wire.transport import close_socket, open_socket, recv_packet, stamp

# (name, from stamp, to stamp): the per-stage latencies, in pipeline order
STAGES = (
    ("source_send", "capture", "src_send"), ("to_context", "src_send", "ctx_recv"),
    ("context_queue", "ctx_recv", "ctx_send"), ("to_worker", "ctx_send", "wrk_recv"),
    ("preprocess", "wrk_recv", "pre_done"), ("inference", "pre_done", "infer_done"),
    ("postprocess", "infer_done", "post_done"), ("to_sink", "wrk_send", "sink_recv"),
    ("reorder", "sink_recv", "sink_out"), ("outputs", "sink_out", "sink_done"),
    ("capture_to_mask", "capture", "sink_out"), ("capture_to_output", "capture", "sink_done"),
)


def dropped_before(head: dict) -> int:
    """Frames dropped between this result's frame and the one dispatched before it: what the header
    says, but never more than its own seq and prev_seq allow (a forged 10**15 once became the report)."""
    gap = max(int(head.get("seq", 0)) - int(head.get("prev_seq", -1)) - 1, 0)
    return min(max(int(head.get("dropped_before", 0) or 0), 0), gap)


class ReorderBuffer:
    """Bounded: at most ``size`` results held, none longer than ``timeout_ns``."""

    def __init__(self, size: int = 16, timeout_ms: float = 500.0) -> None:
        self.size, self.timeout_ns = size, int(timeout_ms * 1e6)
        self.items: dict[int, tuple[int, int, Any]] = {}  # seq -> (arrival ns, prev_seq, item)
        self.by_prev: dict[int, int] = {}
        self.last = -1  # seq of the last released result (-1: the chain starts at prev_seq -1)
        self.breaks = 0  # links given up
        self.late = 0  # results that arrived after their place was given up
        self.late_run = 0  # late results in a row
        self.resyncs = 0

    def push(self, seq: int, prev: int, item: Any, now_ns: int) -> None:
        # The successor of the last release is accepted whatever its number (a restarted source
        # starts again at 0); anything else behind the chain's head is late.
        if seq in self.items:
            self.late += 1
            return
        if seq <= self.last and prev != self.last:
            self.late_run += 1
            if self.late_run < RESYNC:
                self.late += 1
                return
            # Results keep arriving behind the head: the head was a forged or wild number. Follow
            # the results instead of discarding the rest of the stream.
            self.resyncs += 1
            self.last = prev
        self.late_run = 0
        self.items[seq] = (now_ns, prev, item)
        self.by_prev[prev] = seq

    def pop_ready(self, now_ns: int, flush: bool = False) -> list[Any]:
        out = []
        while self.items:
            seq = self.by_prev.get(self.last)
            linked = seq is not None and seq in self.items
            if not linked:
                oldest = min(self.items)
                if not (flush or len(self.items) > self.size or now_ns - self.items[oldest][0] > self.timeout_ns):
                    break
                seq = oldest
                self.breaks += 1
            _, prev, item = self.items.pop(seq)
            self.by_prev.pop(prev, None)
            if not linked and seq < self.last:  # a broken chain; never go backwards
                self.late += 1
                continue
            self.last = seq
            out.append(item)
        return out


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Binary IoU of the sounding mask; two empty masks agree perfectly (1.0)."""
    p, g = pred > 0, gt > 0
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


class SinkStage(Stage):
    """Inputs: ``result`` and ``eos`` messages (PULL, bound on the results link); audio chunks (SUB
    on the audio link) when recording. Outputs: every mask as a ``mask`` message on a PUB socket
    (the masks link) when ``publish`` is set; MP4 overlay recording (``record``), mask archive
    (``masks``), JSONL log (``metrics``), a window (``display``, only with a display).
    Options: record, masks, metrics (paths), publish (bool), display (bool), max_age_ms (a result
    older than this is skipped when a newer one waits: newest wins, default 500), reorder_size,
    reorder_timeout_ms, fps_hint, eos_timeout_s,
    record_audio_from (a media file whose own audio track the recording carries)."""

    name = "sink"
    Options = SinkOptions
    options: SinkOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pull = self.asub = self.pub = self.pub_gate = None  # sockets and outputs are opened in open(); close() runs even if it failed
        self.taker: ResultTaker | None = None
        self.recorder = self.store = self.log = self.display = None
        self.view: ViewFeed | None = None
        self.event_log: EventLog | None = None
        self.events: SoundingEvents | None = None
        self.last_delivered: tuple[int, int, int] | None = None

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        super().open(ctx, env)
        o = self.options
        ep = env.endpoints
        self.pull = open_socket(ctx, zmq.PULL, ep, "results", bind=True)
        self.taker = ResultTaker(ep.max_bytes) if ep.extra.get("shm") else None  # same host: results through a ring (stream/wire/shm_link.py)
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)
        try:  # the paths were checked before the run (graph.check_outputs); this names a late problem
            self.recorder = Recorder(o.record, fps_hint=o.fps_hint, inputs=(o.record_audio_from,),
                                     source_audio=o.record_audio_from, staged=True) if o.record else None
        except ValueError as exc:
            raise StageError(f"cannot record: {exc}") from exc
        if self.recorder is not None:
            self.asub = open_socket(ctx, zmq.SUB, ep, "audio", bind=False, hwm=1000, frames=False)
            self.asub.setsockopt(zmq.SUBSCRIBE, b"")
            self.poller.register(self.asub, zmq.POLLIN)
        self.pub = open_socket(ctx, zmq.XPUB, ep, "masks", bind=True, hwm=o.publish_hwm) if o.publish else None
        self.pub_gate = SubscriptionGate(self.pub) if self.pub is not None else None  # bounded subscriptions (stream/wire/subscriptions.py)
        self.store = MaskStore(o.masks, staged=True) if o.masks else None
        self.view = ViewFeed(ctx, o.view, env.stream_id) if o.view else None  # the live view (stream/view): never waits
        self.events = SoundingEvents(env.stream_id) if (o.events or o.publish or o.view) else None  # started / stopped sounding
        self.recent_events: deque[dict] = deque(maxlen=5)  # the last few, for the live view
        self.event_log = EventLog(o.events) if o.events else None
        self.log = MetricsLog(o.metrics, staged=True) if o.metrics else None
        if o.display:
            why = display_available()
            if why:
                warn(f"no window: {why}")
            else:
                self.display = Display()
        self.history = History()
        self.reorder = ReorderBuffer(o.reorder_size, o.reorder_timeout_ms)
        self.max_age_ns = int(o.max_age_ms * 1e6)
        self.lat = Latencies()
        self.rate = Rate()
        self.recent: deque[int] = deque(maxlen=64)
        self.depth = Gauge()
        self.iou_sum, self.iou_n = 0.0, 0  # running mean: nothing grows with the length of the run
        self.eos: dict | None = None
        self.eos_deadline: int | None = None
        self.received = 0
        self.models: set[str] = set()
        self.counters.update(delivered=0, errors=0, skipped=0, upstream_dropped=0, published=0)
        self.liveness = Liveness(env, f"the segmenter (results link {ep['results']})", o.idle_timeout_s)

    def _drain(self) -> None:
        while self.asub is not None and self.asub.poll(0):
            _, pkt = recv_packet(self.asub, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("audio", "eos"))
            if pkt is not None and pkt.kind == "audio":
                samples, bad = finite(pkt.arrays["samples"], -1.0, 1.0)  # NaN / Inf would stop the AAC encoder
                if bad:
                    self.count("nonfinite_audio_samples", bad)
                self.recorder.add_audio(pkt.header["first_sample"], samples)
        while self.pull.poll(0):
            _, pkt = recv_packet(self.pull, self.counters, max_bytes=self.env.endpoints.max_bytes, kinds=("result", "eos"))
            self.liveness.heard()
            if pkt is None:
                continue
            if "shm" in pkt.header and (self.taker is None or not self.taker.take(pkt, self.counters)):
                if self.taker is None:  # a slot descriptor on a link that is not same-host: nothing to map
                    self.count("malformed")
                continue  # stale (counted: shm_stale; the result is lost in flight) or malformed
            if pkt.kind == "eos":
                if not eos_ok(pkt.header, self.env.endpoints.token):
                    self.count("forged_eos")
                    continue
                self.eos = self.eos or pkt.header
                continue
            if not self.history.accept(pkt.seq, pkt.header["pts_ns"]):
                self.count("refused_jumps")  # a seq / pts far beyond the stream's own history
                continue
            self.received += 1
            pkt.header["t"]["sink_recv"] = stamp()
            self.reorder.push(pkt.seq, pkt.header["prev_seq"], pkt, stamp())
        self.depth.set(len(self.reorder.items))

    def _deliver(self, pkt) -> None:
        h, t = pkt.header, pkt.header["t"]
        self.counters["upstream_dropped"] += dropped_before(h)
        if "error" in h:
            self.counters["errors"] += 1
            return
        now = stamp()
        t["sink_out"] = now
        mask = pkt.arrays["mask"]
        if self.pub is not None:
            head = {k: h.get(k) for k in ("stream", "seq", "capture_ns", "pts_ns", "model", "concepts", "mask_kind")}
            head.update({k: h[k] for k in ("hears", "mask_area") if k in h})  # the verdict (stream/stages/hearing.py), not only raw concepts
            head["t"] = {k: t[k] for k in ("capture", "sink_out") if k in t}
            self.pub_gate.drain()
            self.pub.send_multipart(encode("mask", head, {"mask": mask}), copy=False)
            self.counters["published"] += 1
        self.models.add(str(h.get("model")))
        self.counters["delivered"] += 1
        self.rate.tick(now)
        self.recent.append(now)
        gt = pkt.arrays.get("gt_mask")
        score = iou(mask, gt) if gt is not None and gt.shape == mask.shape else None
        if score is not None:
            self.iou_sum += score
            self.iou_n += 1
        lines = self._readout(h, t)
        if (self.recorder is not None or self.display is not None) and "image" in pkt.arrays:
            overlay = render_overlay(pkt.arrays["image"], mask, lines)
            if self.recorder is not None:
                self.recorder.add_frame(overlay, h["pts_ns"])
            if self.display is not None and not self.display.show(overlay):
                self.env.stop.set()
        if self.events is not None:
            self.last_delivered = (pkt.seq, h["pts_ns"], h["capture_ns"])
            for event in self.events.update(pkt.seq, h["pts_ns"], h.get("hears"), float(np.count_nonzero(mask)) / mask.size):
                self._emit(event, h["capture_ns"])
        if self.view is not None and "image" in pkt.arrays:
            self.view.frame(self._view_info(pkt.seq, h, t, mask), pkt.arrays["image"], mask)
        if self.store is not None:
            self.store.add(pkt.seq, h["pts_ns"], h["capture_ns"], mask, gt)
        t["sink_done"] = stamp()
        for name, a, b in STAGES:
            self.lat.add_ns(name, t.get(a), t.get(b))
        if "infer_done" in t and "pre_done" in t:
            self.lat.add("overhead", (t["sink_out"] - t["capture"] - (t["infer_done"] - t["pre_done"])) / 1e6)
        if self.log is not None:
            self.log.write({"seq": pkt.seq, "pts_ms": h["pts_ns"] / 1e6, "capture_to_mask_ms": (t["sink_out"] - t["capture"]) / 1e6,
                            "stages_ms": {n: round((t[b] - t[a]) / 1e6, 3) for n, a, b in STAGES if a in t and b in t},
                            "hears": h.get("hears"), "mask_area": h.get("mask_area"), "concepts": h.get("concepts"), "iou": score,
                            "worker": h.get("worker"), "dropped_before": h.get("dropped_before")})

    def _readout(self, h: dict, t: dict) -> list[str]:
        hears = h.get("hears")  # "nothing" / "unsure" by the worker's calibrated rule (stream/stages/hearing.py)
        if hears not in ("nothing", "unsure"):
            hears = ", ".join(f"{n} {p:.2f}" for n, p in (h.get("concepts") or [])[:2])
        fps = (len(self.recent) - 1) * 1e9 / (self.recent[-1] - self.recent[0]) if len(self.recent) > 1 else 0.0
        return [f"hears: {hears}", f"{fps:4.1f} fps  capture->mask {(t['sink_out'] - t['capture']) / 1e6:5.1f} ms"]

    def _emit(self, event: dict, capture_ns: int) -> None:
        """A sounding event to the JSON lines and the PUB socket (an ``event`` message: header only)."""
        if self.event_log is not None:
            self.event_log.write(event)
        self.recent_events.append({k: event[k] for k in ("event", "concept", "pts_ms", "mask_area")})
        if self.pub is not None:
            self.pub_gate.drain()
            self.pub.send_multipart(encode("event", {**event, "capture_ns": capture_ns, "pts_ns": int(round(event["pts_ms"] * 1e6))}))
        self.count("events")

    def _view_info(self, seq: int, h: dict, t: dict, mask: np.ndarray) -> dict[str, Any]:
        c = self.counters
        fps = (len(self.recent) - 1) * 1e9 / (self.recent[-1] - self.recent[0]) if len(self.recent) > 1 else 0.0
        return {"seq": seq, "pts_ns": h["pts_ns"], "hears": h.get("hears"), "concepts": h.get("concepts"), "fps": round(fps, 2),
                "latency_ms": round((t["sink_out"] - t["capture"]) / 1e6, 2), "mask_area": float(np.count_nonzero(mask)) / mask.size,
                "delivered": c["delivered"], "dropped": c["upstream_dropped"] + c["skipped"] + c["errors"],
                "events": list(self.recent_events)}

    def _view_state(self, now: int) -> None:
        """A heartbeat for the page: running, or waiting when no result came for 2 s (camera lost and retrying, a stall)."""
        if self.counters["delivered"] and self.recent and now - self.recent[-1] < 2_000_000_000:
            return self.view.state("running", force=False)
        self.view.state("waiting" if self.counters["delivered"] else "starting", {"delivered": self.counters["delivered"]}, force=False)

    def process(self) -> bool:
        self.poller.poll(20)
        self._drain()
        now = stamp()
        done = self.eos is not None and self.received >= int(self.eos.get("dispatched", 0))
        if self.eos is not None and self.eos_deadline is None:
            self.eos_deadline = now + int(self.options.eos_timeout_s * 1e9)
        timed_out = self.eos_deadline is not None and now > self.eos_deadline
        ready = self.reorder.pop_ready(now, flush=done or timed_out)
        for i, pkt in enumerate(ready):
            stale = now - pkt.header["capture_ns"] > self.max_age_ns
            if stale and i < len(ready) - 1 and "error" not in pkt.header:  # newest wins when behind
                self.counters["skipped"] += 1
                self.counters["upstream_dropped"] += dropped_before(pkt.header)
                continue
            self._deliver(pkt)
        if self.view is not None:
            self._view_state(now)
        if self.env.stop.is_set() and self.eos is None and self.eos_deadline is None:
            self.eos_deadline = now + int(self.options.eos_timeout_s * 1e9)
        if self.eos is None and self.eos_deadline is None and (why := self.liveness.silent()):
            raise StageError(why)  # the results so far are finalised by close()
        return not (done or timed_out)

    def report(self) -> dict[str, Any]:
        rep = super().report()
        eos = self.eos or {}
        c = self.counters
        sent = eos.get("frames_sent")
        lost = max(int(eos.get("dispatched", self.received)) - self.received, 0)
        tail = int(eos.get("tail_lost", 0))
        if "last_seq" in eos and "last_dispatched" in eos:
            # every frame after the last dispatched one never reaches a sink: lost on the way (tail_lost) or
            # superseded / stale in the context after its last dispatch, which no result's dropped_before covers
            tail = max(int(eos["last_seq"]) - int(eos["last_dispatched"]), 0)
        dropped = c["upstream_dropped"] + tail + c["skipped"] + c["errors"] + lost
        rep["frames"] = {
            "sent": sent, "processed": c["delivered"], "dropped": dropped,
            "dropped_by": {"context_or_transport": c["upstream_dropped"] + tail, "sink_skipped": c["skipped"],
                           "errors": c["errors"], "lost_in_flight": lost},
            "accounted": sent is not None and c["delivered"] + dropped == sent,
            "reorder_breaks": self.reorder.breaks, "late_results": self.reorder.late, "reorder_resyncs": self.reorder.resyncs,
        }
        rep["context"] = eos.get("context", {})
        rep["fps_processed"] = round(self.rate.per_second(), 2)
        rep["latency_ms"] = self.lat.summary()
        rep["queues"] = {"reorder_depth": self.depth.summary()}
        rep["miou"] = round(self.iou_sum / self.iou_n, 4) if self.iou_n else None
        rep["miou_frames"] = self.iou_n
        rep["models"] = sorted(self.models)
        if self.recorder is not None:
            rep["recorded_frames"] = self.recorder.frames
        if self.store is not None and (self.store.other_size or self.store.over_limit):
            # masks the archive could not keep (one frame size per npz; at most ``limit`` masks): counted, never silent
            rep["masks_not_stored"] = {"other_size": self.store.other_size, "over_limit": self.store.over_limit}
        return rep

    def close(self) -> None:
        if self.pull is None:
            return
        failed = []
        if self.events is not None and self.last_delivered is not None:
            seq, pts, capture = self.last_delivered
            for event in self.events.finish(seq, pts):  # a sound still going at the end stops there
                try:
                    self._emit(event, capture)
                except Exception as exc:  # noqa: BLE001 - the other outputs still close
                    warn(f"sounding event lost at close: {exc}")
        if self.store is not None and (self.store.other_size or self.store.over_limit):
            warn(f"{self.store.path} does not hold {self.store.other_size} masks of another frame size and "
                 f"{self.store.over_limit} past its {self.store.limit}-mask limit (counted in the report: masks_not_stored)")
        for out in (self.recorder, self.store, self.log, self.display, self.event_log):
            if out is not None:
                try:
                    out.close()
                except Exception as exc:  # noqa: BLE001 - one failing output must not lose the others
                    failed.append(str(exc))
        if self.view is not None:
            self.view.state("ended", {"delivered": self.counters["delivered"], "reason": (self.eos or {}).get("reason", "stopped"),
                                      "events": list(self.recent_events)})
            self.view.close()
        if self.pub_gate is not None:
            self.counters.update({k: n for k, n in self.pub_gate.counters.items() if n and k != "subscriptions"})
        for s in (self.pull, self.asub, self.pub):
            close_socket(s, self.env.abort)
        if self.taker is not None:
            self.taker.close()
        if failed:  # the run fails: its other outputs are not committed either (outputs.commit_outputs)
            raise StageError("; ".join(failed))
