"""The live view without a browser: a real pipeline feeds a real aiohttp server; a WebSocket client
(aiohttp's own) gets JPEG frames and stats; the feed never waits for a slow or absent view; the
token rule; --view parsing. The page in a real browser: tests/stream/test_view_browser.py."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import zmq

pytest.importorskip("aiohttp", reason="the live view needs aiohttp (a dependency in pyproject.toml)")

from stream import PipelineConfig, run_pipeline  # noqa: E402
from stream.view.feed import FEED_HWM, ViewFeed  # noqa: E402
from stream.view.server import ViewServer, parse_view  # noqa: E402


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


async def _frames(url: str, want: int) -> tuple[list[dict], list[np.ndarray], dict]:
    import aiohttp

    heads, images, stats = [], [], {}
    async with aiohttp.ClientSession() as s, s.ws_connect(url.replace("http", "ws", 1).rstrip("/") + "/ws") as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                n = struct.unpack(">I", msg.data[:4])[0]
                heads.append(json.loads(msg.data[4:4 + n]))
                images.append(cv2.imdecode(np.frombuffer(msg.data[4 + n:], np.uint8), cv2.IMREAD_COLOR))
            elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "stats":
                stats = json.loads(msg.data)["streams"]
            if len(heads) >= want and stats:
                return heads, images, stats
    return heads, images, stats


def test_pipeline_feeds_the_view_and_a_page_socket_gets_frames_and_stats(tmp_path):
    with ViewServer(port=18080) as view:
        assert view.url.startswith("http://127.0.0.1:") and view.token is None
        status, page = _get(view.url)
        assert status == 200 and b"live view" in page
        cfg = PipelineConfig(source={"kind": "synthetic", "width": 160, "height": 120, "seconds": 2.0},
                             backend={"kind": "null"}, transport="ipc", sink={"view": view.feed_address},
                             masks=str(tmp_path / "m.npz"))
        report = run_pipeline(cfg)
        assert report["ok"], report["errors"]
        # the run is over: the page still gets the last frame and the final state
        heads, images, stats = asyncio.run(_frames(view.url, 1))
        assert heads[0]["stream"] == "cam0" and images[0].shape == (120, 160, 3)
        s = stats["cam0"]
        assert s["state"] == "ended" and s["delivered"] == report["frames"]["processed"]
        assert s["version"] == report["frames"]["processed"]  # every result reached the view (nothing was slow)
        assert len(s["history"]) == min(s["version"], 120) and s["p50_ms"] > 0
        assert json.loads(_get(view.url + "stats.json")[1])["cam0"]["state"] == "ended"


def test_feed_never_waits_for_an_absent_or_slow_view():
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    feed = ViewFeed(ctx, f"tcp://127.0.0.1:{port}", "cam0")  # a view that never reads
    image, mask = np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640), np.uint8)
    for i in range(300):
        feed.frame({"seq": i}, image, mask)  # non-blocking: a full queue drops, never waits
    assert feed.sent + feed.dropped == 300  # every send returned at once
    queued = 0
    while sub.poll(200):  # what reached the view that never read: the HWMs and socket buffers, not the 300
        sub.recv_multipart()
        queued += 1
    assert queued < 100, queued
    nobody = ViewFeed(ctx, "ipc:///tmp/icf-view-nobody-here.sock", "cam1")  # no view at all
    for i in range(50):
        nobody.frame({"seq": i}, image, mask)
    assert nobody.sent + nobody.dropped == 50 and FEED_HWM <= 2
    feed.close(), nobody.close(), sub.close()


def test_other_address_needs_the_token():
    with ViewServer("0.0.0.0", 18090) as view:
        assert view.token and f"?token={view.token}" in view.url
        local = f"http://127.0.0.1:{view.port}/"
        assert _get(local)[0] == 403 and _get(local + "stats.json")[0] == 403
        assert _get(local + f"?token={view.token}")[0] == 200
        assert _get(local + "?token=wrong")[0] == 403


def test_busy_port_moves_to_the_next_one():
    with ViewServer(port=18100) as a, ViewServer(port=a.port) as b:
        assert b.port != a.port and _get(b.url)[0] == 200


@pytest.mark.parametrize("value, want", [("off", None), ("8081", ("127.0.0.1", 8081)), ("0.0.0.0:9000", ("0.0.0.0", 9000)),
                                         ("[::1]:8080", ("::1", 8080))])
def test_view_option(value, want):
    assert parse_view(value) == want


@pytest.mark.parametrize("value", ["web", "99999", "host:", ":x"])
def test_bad_view_option_names_the_fix(value):
    with pytest.raises(ValueError, match="give off, a port"):
        parse_view(value)


def test_serve_feeds_every_stream_into_one_view():
    from stream.graph.multistream_serve import ServeConfig, run_serve

    with ViewServer(port=18110) as view:
        report = run_serve(ServeConfig(sources=[{"kind": "synthetic", "seconds": 1.5, "width": 160, "height": 120, "seed": i}
                                                for i in range(2)], backend={"kind": "null"}, sink={"view": view.feed_address}))
        assert report["ok"], report["errors"]
        heads, images, stats = asyncio.run(_frames(view.url, 2))
        assert {h["stream"] for h in heads} == {"cam0", "cam1"} and all(i.shape == (120, 160, 3) for i in images)
        for sid, s in report["streams"].items():
            assert stats[sid]["state"] == "ended" and stats[sid]["version"] == s["processed"]


def test_stop_closes_the_open_pages():
    import aiohttp

    async def main(view: ViewServer) -> aiohttp.WSMsgType:
        async with aiohttp.ClientSession() as s, s.ws_connect(view.url.replace("http", "ws", 1) + "ws") as ws:
            assert (await ws.receive_json())["type"] == "hello"
            await asyncio.get_running_loop().run_in_executor(None, view.stop)
            while (msg := await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                pass
            return msg.type

    view = ViewServer(port=18130).start()
    assert asyncio.run(main(view)) in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert not view.thread.is_alive()  # the server thread ended instead of waiting on the page


def test_other_sites_cannot_read_the_camera():
    """A rebound host name, or a WebSocket opened from another site's page, gets nothing."""
    import aiohttp

    async def socket_status(url: str, origin: str) -> int:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(url, headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    with ViewServer(port=18140) as view:
        ws = view.url.replace("http", "ws", 1) + "ws"
        assert asyncio.run(socket_status(ws, "http://evil.example")) == 403
        assert asyncio.run(socket_status(ws, f"http://127.0.0.1:{view.port}")) == 101
        rebound = urllib.request.Request(view.url, headers={"Host": f"evil.example:{view.port}"})
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(rebound, timeout=10)
        assert _get(f"http://localhost:{view.port}/")[0] == 200
