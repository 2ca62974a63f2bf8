"""The receive side of one stream, owned once: what the scale-out context stage
(stream/stages/context_stage.py) and every lane of the segmenter (stream/stages/multistream.py; the
single-stream graph's is one lane) read from a source, and the rules they apply to it.

A StreamIntake holds the stream's video and audio SUB sockets (and its shared-memory receiver),
the audio ring, the frame order (stream.wire.order.SeqChain), the newest frame (newest wins: a frame that
is not taken before the next one arrives is counted ``superseded``), the audio-wait rule, the job
header of a taken frame, and the end of stream (the source's EOS, a source that went quiet, the
EOS header sent on). What a frame becomes afterwards (a job for a worker, a batch row, the text
context it is paired with) is its owner's business.

One frame's walk: ``drain`` admits it (valid, in order, of this stream) and makes it ``latest``;
``audio_ready`` says whether it may go (its audio is in, or it waited ``audio_wait_ns``);
``take`` copies its shared-memory parts out and cuts its audio window and header; the owner hands
it on and then calls ``dispatched``. A frame not taken before a newer one is admitted is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from stream.stages.context import AudioRing
from stream.stages.stage import Liveness, StageEnv
from stream.wire.order import SeqChain
from stream.wire.protocol import Packet, eos_ok, finite, stamps
from stream.wire.shm_link import ShmReceiver
from stream.wire.shm_link import attach as shm_attach
from stream.wire.transport import close_socket, open_socket, recv_packet, stamp

QUIET_AFTER_STOP_NS = 10**9  # after a stop (the source is gone) with no EOS: how long what is in flight gets (end_if_quiet)


@dataclass(frozen=True)
class TakenFrame:
    """A frame on its way to the model."""

    packet: Packet  # the frame itself (its shared-memory parts copied out)
    head: dict[str, Any]  # the job / result header: stream, seq, capture_ns, pts_ns, prev_seq, dropped_before
    audio: np.ndarray  # the audio window ending at the frame's pts, float32 [audio_samples]


class StreamIntake:
    """One stream's sockets, audio ring, frame order, newest frame and end of stream (module doc).

    ``counters`` is the owner's dict (a stage's or a lane's): the intake counts into it, so its
    report and the EOS header's ``context`` carry them. ``forwarded``: the parts a taken frame must
    carry past this process (copied out of shared memory). ``only_stream``: refuse frames whose
    header names another stream (a lane shares its process with other streams)."""

    def __init__(self, ctx: zmq.Context, env: StageEnv, counters: dict[str, Any], *, audio_wait_ns: int,
                 idle_s: float, forwarded: tuple[str, ...], only_stream: str | None = None) -> None:
        self.env, self.counters, self.forwarded, self.only_stream = env, counters, forwarded, only_stream
        ep = env.endpoints
        self.vsub = self.asub = None  # close() runs even if opening failed half way
        self.shm: ShmReceiver | None = None
        try:
            self.vsub = open_socket(ctx, zmq.SUB, ep, "video", bind=False)
            self.asub = open_socket(ctx, zmq.SUB, ep, "audio", bind=False, hwm=1000, frames=False)
            for s in (self.vsub, self.asub):
                s.setsockopt(zmq.SUBSCRIBE, b"")
            self.shm = ShmReceiver(ep.max_bytes) if ep.extra.get("shm") else None  # frames by shared memory (stream/wire/shm_link.py)
        except BaseException:
            self.close(env.abort)  # the owner never gets this object to close
            raise
        self.audio_wait_ns = audio_wait_ns
        self.ring = AudioRing()
        self.audio_seen = False  # a stream that never sends audio is not waited for
        self.chain = SeqChain()  # the stream's frame order: refused jumps, duplicates, restarts, gaps
        self.latest: Packet | None = None  # the newest admitted frame not taken yet
        self.last_dispatched = -1
        self.eos_header: dict | None = None  # the source's EOS header ({} once the stream ended without one)
        # the same EOS as it came on the audio link (a deep queue, so it survives where the video link's
        # shallow one drops it at the high-water mark together with the last frames): the source's word
        # on how many frames it sent, so the end waits for exactly those instead of guessing from a clock
        self.eos_promised: dict | None = None
        self.quiet_since: int | None = None
        peer = "the source" if only_stream is None else f"the source of stream {only_stream}"
        self.liveness = Liveness(env, f"{peer} (video link {ep['video']})", idle_s)
        counters.update(received=0, transport_gaps=0, superseded=0, dispatched=0, audio_underruns=0)

    @property
    def sockets(self) -> tuple[zmq.Socket, zmq.Socket]:
        """What the owner's poller waits on."""
        return self.vsub, self.asub

    @property
    def last_seq(self) -> int | None:
        """The newest seq admitted into the chain (None before the first frame)."""
        return self.chain.last_seq

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # ---- in ----
    def drain(self) -> int:
        """Reads everything waiting (audio first, so a frame finds the audio sent before it);
        returns how many frames were admitted."""
        max_bytes = self.env.endpoints.max_bytes
        while self.asub.poll(0):
            _, pkt = recv_packet(self.asub, self.counters, max_bytes=max_bytes, kinds=("audio", "eos"))
            if pkt is None:
                continue
            if pkt.kind == "eos":
                if eos_ok(pkt.header, self.env.endpoints.token):
                    self.eos_promised = self.eos_promised or pkt.header
                else:
                    self._count("forged_eos")
                continue
            samples, bad = finite(pkt.arrays["samples"], -1.0, 1.0)  # parts checked by protocol.validate; NaN must not reach the model
            if bad:
                self._count("nonfinite_audio_samples", bad)
            self.ring.write(pkt.header["first_sample"], samples)
            self.audio_seen = True
        n = 0
        while self.vsub.poll(0):
            _, pkt = recv_packet(self.vsub, self.counters, max_bytes=max_bytes, kinds=("frame", "eos"))
            self.liveness.heard()
            if pkt is None:
                continue
            if pkt.kind == "eos":
                if eos_ok(pkt.header, self.env.endpoints.token):
                    self.eos_header = self.eos_header or pkt.header
                    self.counters["eos_from_source"] = True
                else:
                    self._count("forged_eos")
                continue
            if not shm_attach(self.shm, pkt, self.counters):
                continue  # lapped slot (shm_stale), parts that fail protocol.validate, or a slot on a link without shared memory
            if self.only_stream is not None and pkt.header.get("stream") != self.only_stream:
                self._count("malformed")  # a frame of another stream on this stream's link is refused
                continue
            if not self.chain.admit(pkt.seq, pkt.header["pts_ns"], self.counters):
                continue  # refused jump, duplicate or late (stream.wire.order.SeqChain)
            n += 1
            self.quiet_since = None  # a frame came: the quiet clock of end_if_quiet starts again
            self.counters["received"] += 1
            if self.latest is not None:
                self.counters["superseded"] += 1  # newest frame wins
            stamps(pkt.header)["ctx_recv"] = stamp()
            self.latest = pkt
        return n

    def audio_ready(self, now: int) -> bool:
        """The newest frame may go: its audio is in (it comes on its own socket), the stream has
        sent no audio at all, or the frame has waited ``audio_wait_ns`` for it."""
        if self.latest is None:
            return False
        hdr = self.latest.header
        return not self.audio_seen or self.ring.end >= self.ring.sample_at(hdr["pts_ns"]) or now - hdr["t"]["ctx_recv"] >= self.audio_wait_ns

    # ---- out ----
    def take(self, audio_samples: int) -> TakenFrame | None:
        """The newest frame with its audio window and header, stamped ``ctx_send``; it stays the
        newest until ``dispatched``. None (counted superseded) if newer frames overwrote its slot."""
        pkt = self.latest
        if self.shm is not None and not self.shm.materialize(pkt, self.forwarded, self.counters):
            self.latest = None
            self.counters["superseded"] += 1
            return None
        pts = pkt.header["pts_ns"]
        end = self.ring.sample_at(pts)
        if self.audio_seen and self.ring.end < end:
            self.counters["audio_underruns"] += 1  # waited audio_wait_ns; the window's missing end is silence
        pkt.header["t"]["ctx_send"] = stamp()
        prev = self.last_dispatched
        head = {"stream": pkt.header["stream"], "seq": pkt.seq, "capture_ns": pkt.header["capture_ns"], "pts_ns": pts,
                "prev_seq": prev, "dropped_before": pkt.seq - prev - 1}
        return TakenFrame(pkt, head, self.ring.window(end, audio_samples))

    def dispatched(self, seq: int) -> None:
        """The taken frame went on (to a worker, or into a batch)."""
        self.last_dispatched = seq
        self.counters["dispatched"] += 1
        self.latest = None

    def still_valid(self, pkt: Packet) -> bool:
        """After the model read the frame: its shared-memory slot was not reused meanwhile."""
        return self.shm is None or self.shm.still_valid(pkt, self.counters)

    def drop_latest(self) -> None:
        """The newest frame will never go (its stream's results have nowhere to go)."""
        if self.latest is not None:
            self.latest = None
            self.counters["superseded"] += 1

    # ---- end of stream ----
    def end_if_quiet(self, now: int, quiet_ns: int, *, stopped: bool) -> None:
        """Ends the stream when no EOS came on the video link. The source's EOS on the audio link
        names its last frame: once that frame (or a newer one) was admitted and nothing is pending,
        the stream is over at once. Otherwise, after a stop (``stopped``: the source is gone) or such
        an EOS, once nothing has arrived or been pending for ``quiet_ns`` (what is still in flight
        gets that long), it ends too: with the source's header when it came (the missing tail is
        counted lost) or with none (the source died without one)."""
        if self.eos_header is not None or self.latest is not None:
            self.quiet_since = None  # a frame is pending: not quiet
            return
        promised = self.eos_promised
        last = -1 if self.last_seq is None else self.last_seq
        if promised is None or last < promised.get("last_seq", -1):  # frames the source named are still missing
            if promised is None and not stopped:
                return
            self.quiet_since = self.quiet_since or now
            if now - self.quiet_since <= quiet_ns:
                return
        self.eos_header = promised or {}
        if promised is not None:
            self.counters["eos_from_source"] = True

    def eos_head(self) -> dict[str, Any]:
        """The end-of-stream header sent on (to each worker, or to the sink): what the source says
        it sent, what reached us and what was dispatched. Sets the ``tail_lost`` counter."""
        src = self.eos_header or {}
        own_last = self.last_seq if self.last_seq is not None else -1
        last_seq = src.get("last_seq", own_last)
        tail = max(last_seq - max(self.last_dispatched, own_last), 0)
        self.counters["tail_lost"] = tail  # sent after the last frame that reached us: lost on the way
        return {"stream": self.env.stream_id, "seq": max(last_seq + 1, 0), "capture_ns": stamp(),
                "frames_sent": src.get("frames_sent", last_seq + 1), "last_seq": last_seq,
                "last_dispatched": self.last_dispatched, "dispatched": self.counters["dispatched"], "tail_lost": tail,
                "token": self.env.endpoints.token, "context": {k: v for k, v in self.counters.items() if isinstance(v, int)}}

    def close(self, abort: Any) -> None:
        for s in (self.vsub, self.asub):
            close_socket(s, abort)
        if self.shm is not None:
            self.shm.close()
