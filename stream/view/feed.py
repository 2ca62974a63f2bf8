"""The sink's side of the live view: a PUB socket that offers each delivered result to the view
server and never waits for it.

Why a socket and not a call: the view is one more consumer of the pipeline's results, like the
recorder or the mask PUB, but a browser is the slowest consumer there is. PUB with a send HWM of
2 and non-blocking sends drops what the view cannot take (newest wins at the server, which keeps
only the latest frame per stream), so a slow, closed or absent browser costs the sink one
non-blocking send per frame and never delays or loses a result for the other outputs.

Wire (this module owns it; stream/view/server.py reads it): ``[header JSON, image, mask]`` for a
frame (image [H, W, 3] uint8 RGB, mask [H, W] uint8, shapes in the header) or ``[header JSON]``
alone for a state update (``{"state": "running" | "ended" | ..., "stream": id, ...}``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import zmq

FEED_HWM = 2  # messages queued for the view: the newest frame and one more, never a backlog
STATE_EVERY_NS = 1_000_000_000  # a state update at least this often, so the page sees a stall
MAX_VIEW_PIXELS = 1280 * 720  # larger frames are halved before they go: the page shows them small anyway


class ViewFeed:
    """Connects a PUB to the view server's SUB address (the server binds; any number of sinks connect)."""

    def __init__(self, ctx: zmq.Context, address: str, stream_id: str) -> None:
        self.stream = stream_id
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, FEED_HWM)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(address)
        self.sent = self.dropped = 0
        self.last_state_ns = 0

    def _send(self, parts: list) -> None:
        try:
            self.pub.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:  # PUB drops silently at its HWM; Again only while the socket cannot queue at all
            self.dropped += 1

    def frame(self, info: dict[str, Any], image: np.ndarray, mask: np.ndarray) -> None:
        """One delivered result: ``info`` carries seq, pts_ns, hears, concepts, fps, latency_ms, drops."""
        while image.shape[0] * image.shape[1] > MAX_VIEW_PIXELS:
            image, mask = image[::2, ::2], mask[::2, ::2]
        image, mask = np.ascontiguousarray(image, np.uint8), np.ascontiguousarray(mask, np.uint8)
        head = dict(info, stream=self.stream, state="running", shape=list(image.shape[:2]))
        self._send([json.dumps(head).encode(), image, mask])
        self.last_state_ns = time.monotonic_ns()

    def state(self, state: str, info: dict[str, Any] | None = None, *, force: bool = True) -> None:
        """A state update (``force=False``: only if nothing was sent for STATE_EVERY_NS)."""
        now = time.monotonic_ns()
        if not force and now - self.last_state_ns < STATE_EVERY_NS:
            return
        self.last_state_ns = now
        self._send([json.dumps(dict(info or {}, stream=self.stream, state=state)).encode()])

    def close(self) -> None:
        self.pub.close(linger=200)  # the final "ended" state gets a moment to leave
