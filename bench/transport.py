"""`icf-bench transport`: ZeroMQ one-way latency and throughput for video frames.

inproc / ipc / tcp (127.0.0.1 only; ipc sockets in a temp dir), RGB uint8 frames of 0.3 to 2.8 MB,
copy vs zero-copy. Messages use the stream's own wire format (stream.wire.protocol: JSON header +
raw payload) and sockets made by the stream's own opener (stream.wire.transport.open_socket: its HWM,
kernel buffers, LINGER), so the numbers are the pipeline's, not a toy's.

Latency: a sender thread stamps perf_counter_ns, encodes and sends ONE frame; the receiver
decodes it and stamps when the array is usable; only then is the next frame sent, so no queueing
inflates the number. Both ends are threads of one process (pyzmq releases the GIL in send/recv)
and read the same clock. Throughput: N frames back-to-back, first send to last receive. Every
loop is bounded in count, and every receive has a timeout.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .env import envelope
from .report import command_line, header_md, md_table, targets_md, write_report
from .stats import rounded_samples, summarize, target_check

FRAMES = {"416x240": (240, 416, 3), "640x480": (480, 640, 3), "1280x720": (720, 1280, 3)}  # 0.30 / 0.92 / 2.76 MB
TIMEOUT_MS = 5000
IPC_TARGET_MS = 0.5  # issue: ipc, 640x480, one-way p50


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transports", nargs="+", choices=("inproc", "ipc", "tcp"), default=["inproc", "ipc", "tcp"])
    p.add_argument("--frames", nargs="+", choices=list(FRAMES), default=list(FRAMES), help="frame sizes (WxH RGB uint8)")
    p.add_argument("--copy-modes", nargs="+", choices=("copy", "zero-copy"), default=["copy", "zero-copy"])
    p.add_argument("--runs", type=int, default=None, help="paced frames per latency row (default 300; smoke 10)")
    p.add_argument("--burst", type=int, default=None, help="back-to-back frames per throughput row (default 100; smoke 5)")
    p.add_argument("--smoke", action="store_true", help="small counts: checks the command end to end in seconds")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default out/bench)")


class Wire:
    """The stream's encode/decode/socket opener (the fallback keeps the same shape: JSON + raw)."""

    def __init__(self) -> None:
        import zmq

        self.zmq = zmq
        from stream.wire import protocol, transport

        self.protocol, self.transport, self.source = protocol, transport, "stream.wire.protocol + stream.wire.transport"

    def socket(self, ctx, kind: int, address: str, *, bind: bool):
        eps = self.transport.Endpoints(addresses={"video": address})
        return self.transport.open_socket(ctx, kind, eps, "video", bind=bind, address=address)

    def encode(self, seq: int, t_ns: int, frame: np.ndarray) -> list:
        return self.protocol.encode("frame", {"stream": "bench", "seq": seq, "capture_ns": t_ns, "pts_ns": seq}, {"image": frame})

    def decode(self, parts: list) -> tuple[int, np.ndarray]:
        pkt = self.protocol.decode(parts, kinds=("frame",))
        return pkt.header["capture_ns"], pkt.arrays["image"]


def _address(transport: str, tmp: str, tag: str) -> str:
    if transport == "inproc":
        return f"inproc://bench-{tag}"
    if transport == "ipc":
        return f"ipc://{tmp}/{tag}.sock"  # short path: sockaddr_un holds ~107 bytes
    from stream.wire.transport import free_tcp_port

    return f"tcp://127.0.0.1:{free_tcp_port('127.0.0.1')}"


def one_row(wire: Wire, ctx, transport: str, frame_name: str, copy_mode: str, runs: int, burst: int, tmp: str) -> dict:
    zmq = wire.zmq
    zero = copy_mode == "zero-copy"
    frame = np.random.default_rng(0).integers(0, 255, FRAMES[frame_name], dtype=np.uint8)
    addr = _address(transport, tmp, f"{frame_name}-{copy_mode}")
    pull = wire.socket(ctx, zmq.PULL, addr, bind=True)
    push = wire.socket(ctx, zmq.PUSH, addr, bind=False)
    pull.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    push.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    go, stop = threading.Event(), threading.Event()
    errors: list[str] = []
    total = 2 + runs + burst  # 2 warm-up frames, paced frames, then the burst

    def sender() -> None:
        try:
            for seq in range(total):
                if seq < 2 + runs:  # paced: wait until the receiver has the previous frame
                    while not go.wait(0.1):
                        if stop.is_set():
                            return
                    go.clear()
                push.send_multipart(wire.encode(seq, time.perf_counter_ns(), frame), copy=not zero)
        except Exception as exc:  # report, do not hang the receiver
            errors.append(f"sender: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    lat: list[float] = []
    checksum = 0
    try:
        for seq in range(2 + runs):
            go.set()
            parts = pull.recv_multipart(copy=not zero)
            sent_ns, arr = wire.decode(parts)
            checksum += int(arr[seq % arr.shape[0], 0, 0])  # touch the payload: it must be usable
            got = time.perf_counter_ns()
            if seq >= 2:
                lat.append((got - sent_ns) / 1e6)
        t0 = time.perf_counter()
        for _ in range(burst):
            parts = pull.recv_multipart(copy=not zero)
            wire.decode(parts)
        burst_s = time.perf_counter() - t0
    except zmq.Again:
        errors.append(f"receive timed out after {TIMEOUT_MS} ms")
        burst_s = float("nan")
    finally:
        stop.set()
        thread.join(timeout=2 * TIMEOUT_MS / 1000)
        push.close(0)
        pull.close(0)
    row = {"transport": transport, "frame": frame_name, "frame_MB": frame.nbytes / 1e6, "copy_mode": copy_mode, "wire": wire.source}
    if errors:
        return {**row, "status": "error", "error": "; ".join(errors)}
    # the burst is timed from the first receive call, so it measures the sustained rate
    mbps = frame.nbytes * burst / burst_s / 1e6 if burst and burst_s > 0 else float("nan")
    return {**row, "status": "ok", **summarize(lat), "samples_ms": rounded_samples(lat), "burst_frames": burst,
            "throughput_MBps": mbps, "throughput_fps": burst / burst_s if burst and burst_s > 0 else float("nan"), "checksum": checksum}


def memcpy_ms(frame_name: str, n: int = 20) -> float:
    """One in-memory copy of the frame: the floor any transport that copies once pays."""
    src = np.random.default_rng(1).integers(0, 255, FRAMES[frame_name], dtype=np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def run(args: argparse.Namespace) -> dict:
    import zmq

    runs = args.runs or (10 if args.smoke else 300)
    burst = args.burst if args.burst is not None else (5 if args.smoke else 100)
    wire = Wire()
    ctx = zmq.Context()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="icfb-") as tmp:
            for transport in args.transports:
                for frame_name in args.frames:
                    for mode in args.copy_modes:
                        row = one_row(wire, ctx, transport, frame_name, mode, runs, burst, tmp)
                        rows.append(row)
                        if row["status"] == "ok":
                            print(f"{transport:6} {frame_name:9} {mode:9} p50 {row['p50_ms']:.3f} ms p95 {row['p95_ms']:.3f} "
                                  f"p99 {row['p99_ms']:.3f}  {row['throughput_MBps']:.0f} MB/s", flush=True)
                        else:
                            print(f"{transport:6} {frame_name:9} {mode:9} {row['status']}: {row.get('error')}", flush=True)
    finally:
        ctx.term()
    doc = envelope("transport", vars(args))
    doc["command_line"] = command_line()
    doc["libraries"]["libzmq"] = zmq.zmq_version()
    doc["memcpy_ms"] = {f: memcpy_ms(f) for f in args.frames}
    doc["rows"] = rows
    ipc = [r for r in rows if r["status"] == "ok" and r["transport"] == "ipc" and r["frame"] == "640x480"]
    doc["targets"] = [target_check(f"ipc 640x480 {r['copy_mode']} one-way p50", r["p50_ms"], IPC_TARGET_MS) for r in ipc]
    table = md_table(
        ["transport", "frame", "MB", "mode", "p50 ms", "p95 ms", "p99 ms", "MB/s", "frames/s", "status"],
        [[r["transport"], r["frame"], r["frame_MB"], r["copy_mode"], r.get("p50_ms"), r.get("p95_ms"), r.get("p99_ms"),
          r.get("throughput_MBps"), r.get("throughput_fps"),
          r["status"] if r["status"] == "ok" else f"error: {r.get('error', '')[:80]}"] for r in rows],
    )
    memcpy = md_table(["frame", "one memcpy (ms, median)"], [[f, v] for f, v in doc["memcpy_ms"].items()])
    md = "\n\n".join(x for x in [header_md(doc, "ZeroMQ transport: one-way latency and throughput"), table, memcpy, targets_md(doc["targets"])] if x)
    doc["written"] = write_report(doc, args.out, "transport", md, plots=not args.no_plots)
    print(md, flush=True)
    return doc
