"""The live view's server: one page showing every stream (overlay video, what it hears and its
verdict, fps, capture-to-mask latency and a chart of it, drops, state), fed by the sinks.

Built on aiohttp (a maintained asyncio HTTP + WebSocket server and client, one dependency with
no framework around it): the server must hold many slow clients without threads and push frames
as they come, which is exactly an asyncio WebSocket server. Frames go as JPEG over one WebSocket
per page, with the stats as JSON on the same socket: unlike MJPEG (one HTTP response per stream,
browsers cap them at six per host) one socket carries any number of streams plus their text,
and the page knows which frame each stats line belongs to.

Newest frame wins at every step: the feed keeps the latest frame per stream (stream/view/feed.py
drops what the server cannot take); each page gets, whenever it is free to take one, the newest
frame of each stream it has not seen yet, so a slow browser sees fewer frames and never a delayed
one, and never slows another page, the sinks or the pipeline. A frame is drawn and JPEG-encoded
once, in a worker thread, whatever the number of pages.

Access: binds loopback (127.0.0.1) unless told otherwise; any other address requires a random
token (printed in the URL at start; the page passes it to its socket). A camera feed must not leak
to other web sites the user has open: on loopback the Host header must name the loopback (a DNS
rebinding page cannot pass), and a WebSocket's Origin must be the page's own (browsers let any
site open a WebSocket to 127.0.0.1; CORS does not cover them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import shutil
import struct
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
PORT_TRIES = 10  # a busy port: the next ones are tried (a second run on the same machine still gets a view)
HISTORY = 120  # latency points per stream on the page's chart
JPEG_QUALITY = 80
STATS_EVERY_S = 0.5  # a page with no new frame still gets the stats this often (state changes, ended streams)

log = logging.getLogger("icf.view")


class ViewError(RuntimeError):
    """The view cannot start (no aiohttp, no free port, a bad address): the message says which and what to do."""


def parse_view(value: str) -> tuple[str, int] | None:
    """``--view``: off | PORT | HOST:PORT -> (host, port) or None. Raises ValueError naming the problem."""
    v = value.strip()
    if v.lower() in ("off", "no", "none", "0"):
        return None
    host, _, port = v.rpartition(":") if ":" in v else (DEFAULT_HOST, "", v)
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--view {value!r}: give off, a port (8080) or HOST:PORT (0.0.0.0:8080)")
    return host, int(port)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _hostname(host_header: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class StreamView:
    """What the page shows of one stream: the newest frame and its stats."""

    stream: str
    info: dict[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    version: int = 0  # frames received; a page sends a frame when this moved
    jpeg: tuple[int, bytes] | None = None  # (version, JPEG) drawn once per frame
    state: str = "starting"
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # capture -> mask ms
    last_ns: int = 0

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.history)
        pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: None)
        return {**{k: self.info.get(k) for k in ("seq", "pts_ns", "hears", "concepts", "fps", "latency_ms", "mask_area",
                                                  "delivered", "dropped", "reason", "events")},
                "state": self.state, "version": self.version, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "history": list(self.history)}


class ViewServer:
    """``start()`` binds the page (HTTP + WebSocket) and the feed (a ZeroMQ SUB every sink's
    ViewFeed connects to) and serves from a thread of its own; ``stop()`` ends both."""

    def __init__(self, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, *, token: str | None = None, title: str = "icf-stream") -> None:
        self.host, self.port, self.title = host, port, title
        self.token = token if token is not None else (None if is_loopback(host) else secrets.token_urlsafe(16))
        self.streams: dict[str, StreamView] = {}
        self.feed_dir = tempfile.mkdtemp(prefix="icf-view-")
        self.feed_address = f"ipc://{self.feed_dir}/feed.sock"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.frames_in = self.bad_messages = 0
        self.sockets: set = set()  # open page sockets, closed at stop (a handler never holds the shutdown)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # ---- lifecycle ----
    def start(self) -> ViewServer:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise ViewError("no live view: aiohttp is not installed (pip install aiohttp, or pass --view off)") from None
        self.thread = threading.Thread(target=self._thread, name="icf-view", daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.failed is not None:
            self.thread.join()
            shutil.rmtree(self.feed_dir, ignore_errors=True)
            raise self.failed
        return self

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
            self.thread.join(timeout=5)
        shutil.rmtree(self.feed_dir, ignore_errors=True)

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it in the caller
            self.failed = self.failed or exc
        finally:
            self.ready.set()
            self.loop.close()

    async def _main(self) -> None:
        import zmq
        import zmq.asyncio
        from aiohttp import web

        self._stopping = asyncio.Event()
        self.changed = asyncio.Condition()
        app = web.Application()
        app.add_routes([web.get("/", self._page), web.get("/ws", self._socket), web.get("/stats.json", self._stats)])
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 4)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.bind(self.feed_address)
        try:
            if self.port is not None:  # None: the feed only (the terminal status line reads it, no page)
                await self._bind(runner, web)
            self.ready.set()
            feed = asyncio.ensure_future(self._feed(sub))
            await self._stopping.wait()
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        finally:
            await runner.cleanup()
            sub.close()
            ctx.term()

    async def _bind(self, runner, web) -> None:
        last: OSError | None = None
        for port in range(self.port, self.port + PORT_TRIES):
            site = web.TCPSite(runner, self.host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:  # busy (or not an address of this machine)
                last = exc
                continue
            if port != self.port:
                log.warning("view: port %d is busy; serving on %d", self.port, port)
            self.port = port
            return
        self.failed = ViewError(f"no live view: cannot listen on {self.host}:{self.port}..{self.port + PORT_TRIES - 1} ({last}); "
                                "pass --view PORT with a free port, or --view off")
        raise self.failed

    # ---- the feed from the sinks ----
    async def _feed(self, sub) -> None:
        while True:
            parts = await sub.recv_multipart(copy=True)
            try:
                self._take(parts)
            except (ValueError, KeyError, TypeError) as exc:  # a malformed message costs itself only
                self.bad_messages += 1
                log.debug("view: bad feed message (%s)", exc)
                continue
            async with self.changed:
                self.changed.notify_all()

    def _take(self, parts: list[bytes]) -> None:
        head = json.loads(parts[0])
        sid = str(head["stream"])[:64]
        view = self.streams.get(sid) or self.streams.setdefault(sid, StreamView(sid))
        view.state = str(head.get("state", "running"))[:32]
        view.last_ns = time.monotonic_ns()
        if len(parts) == 3:
            h, w = (int(v) for v in head["shape"])
            if len(parts[1]) != h * w * 3 or len(parts[2]) != h * w:
                raise ValueError(f"frame parts do not match the shape {h}x{w}")
            view.image = np.frombuffer(parts[1], np.uint8).reshape(h, w, 3)
            view.mask = np.frombuffer(parts[2], np.uint8).reshape(h, w)
            view.version += 1
            self.frames_in += 1
            if head.get("latency_ms") is not None:
                view.history.append(float(head["latency_ms"]))
        view.info.update({k: v for k, v in head.items() if k not in ("stream", "state", "shape")})

    # ---- the page ----
    def _allowed(self, request, socket: bool = False) -> bool:
        host = request.host or ""
        if is_loopback(self.host) and _hostname(host) not in LOOPBACK_NAMES:
            return False  # a rebound name pointing at 127.0.0.1: another site's page
        origin = request.headers.get("Origin")
        if socket and origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return False  # a WebSocket opened by another site's page
        return self.token is None or secrets.compare_digest(request.query.get("token", ""), self.token)

    async def _page(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return web.Response(status=403, text="this view needs its token: open the URL icf-stream printed at start\n")
        html = resources.files("stream.view").joinpath("page.html").read_text().replace("{{TITLE}}", self.title)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _stats(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return web.Response(status=403, text="token required\n")
        return web.json_response({sid: v.stats() for sid, v in sorted(self.streams.items())})

    def _jpeg(self, view: StreamView) -> tuple[int, bytes] | None:
        import cv2

        from stream.stages.outputs import render_overlay

        version, image, mask = view.version, view.image, view.mask
        if image is None:
            return None
        if view.jpeg is None or view.jpeg[0] != version:
            overlay = render_overlay(image, mask, [])
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                view.jpeg = (version, buf.tobytes())
        return view.jpeg

    async def _close_sockets(self, app) -> None:
        from aiohttp import WSCloseCode

        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"icf-stream stopped")

    async def _socket(self, request):
        from aiohttp import WSMsgType, web

        if not self._allowed(request, socket=True):
            return web.Response(status=403, text="token required, from this view's own page\n")
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)

        async def read() -> None:  # the page sends nothing we need; reading notices its close
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break

        reader = asyncio.ensure_future(read())
        self.sockets.add(ws)
        seen: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        try:
            await ws.send_json({"type": "hello", "title": self.title})
            while not ws.closed and not reader.done():
                for sid, view in list(self.streams.items()):
                    if view.version == seen.get(sid, 0):
                        continue
                    got = await loop.run_in_executor(None, self._jpeg, view)
                    if got is None:
                        continue
                    version, jpeg = got
                    seen[sid] = version
                    head = json.dumps({"stream": sid, "version": version, "seq": view.info.get("seq"),
                                       "pts_ns": view.info.get("pts_ns")}).encode()
                    await ws.send_bytes(struct.pack(">I", len(head)) + head + jpeg)
                await ws.send_json({"type": "stats", "streams": {sid: v.stats() for sid, v in sorted(self.streams.items())}})
                async with self.changed:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.changed.wait(), STATS_EVERY_S)
        except (ConnectionError, RuntimeError):  # the page went away mid-send
            pass
        finally:
            reader.cancel()
            self.sockets.discard(ws)
            await ws.close()
        return ws
