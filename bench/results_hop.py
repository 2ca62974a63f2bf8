"""The segmenter -> sink hop alone: results as ZeroMQ payload vs through the shared-memory ring.

``python -m bench.results_hop [WxH ...] [--n N] [--rounds R]``: a producer process sends results
(mask + ground truth at the frame size, as the segmenter does without a recording) with the
stream's own ResultSender over ipc; the receiver takes them as the sink does (recv_packet, then
ResultTaker: copy out of the slot and hand it back). Per variant: latency from the send stamp to
arrays usable in the receiver (p50 / p99), and CPU time per result on each side (process CPU time,
ZeroMQ's I/O threads included), which a busy machine disturbs far less than the latency.
Variants run interleaved (payload, ring, payload, ring, ...) so a load change hits both alike.
"""

from __future__ import annotations

import json
import tempfile


def _producer(addr: str, ring: bool, width: int, height: int, n: int, period_s: float, out) -> None:
    import threading
    import time
    from types import SimpleNamespace

    import numpy as np
    import zmq

    from stream.stages.stage import StageEnv
    from stream.stages.worker import ResultSender
    from stream.wire.protocol import Packet
    from stream.wire.transport import Endpoints, stamp

    ep = Endpoints({"results": addr}, extra={"shm": {"result_slots": 8}} if ring else {})
    env = StageEnv(ep, threading.Event(), threading.Event(), threading.Event())
    ctx = zmq.Context()
    sender = ResultSender(ctx, env, {}, send_image=False)
    core = SimpleNamespace(model_id="null:null", name="worker0")
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 2, (height, width), np.uint8) for _ in range(4)]
    time.sleep(0.5)
    cpu = 0.0
    for i in range(n):
        mask = (gts[(i + 1) % 4] > 0).view(np.uint8)  # a fresh array per result, as the upsample makes one
        pkt = Packet(header={}, arrays={"gt_mask": gts[i % 4]}, frames={"gt_mask": gts[i % 4]})
        pkt.header["parts"] = [{"name": "gt_mask", "shape": [height, width], "dtype": "uint8", "encoding": "raw"}]
        head = {"stream": "hop", "seq": i, "capture_ns": stamp(), "pts_ns": i, "prev_seq": i - 1, "dropped_before": 0}
        c0 = time.process_time()
        sender.result(core, head, pkt, {}, ({}, mask, None))
        cpu += time.process_time() - c0
        time.sleep(period_s)
    c0 = time.process_time()
    time.sleep(0.5)  # the I/O thread's share of the last sends
    out.put(cpu + time.process_time() - c0)
    sender.close()
    ctx.term()


def hop(width: int = 640, height: int = 480, n: int = 300, period_s: float = 1 / 60, rounds: int = 2) -> dict:
    import multiprocessing as mp
    import time

    import numpy as np
    import zmq

    from stream.wire.shm_link import ResultTaker
    from stream.wire.transport import recv_packet, stamp

    samples: dict[str, dict[str, list[float]]] = {v: {"lat": [], "cpu_send": [], "cpu_recv": []} for v in ("payload", "ring")}
    spawn = mp.get_context("spawn")
    for _ in range(rounds):
        for variant in ("payload", "ring"):
            folder = tempfile.mkdtemp(prefix="icf-rhop-")
            addr = f"ipc://{folder}/results.sock"
            ctx = zmq.Context()
            pull = ctx.socket(zmq.PULL)
            pull.setsockopt(zmq.RCVHWM, 4)
            pull.bind(addr)
            q = spawn.Queue()
            proc = spawn.Process(target=_producer, args=(addr, variant == "ring", width, height, n, period_s, q))
            proc.start()
            taker, got, cpu = ResultTaker(), 0, 0.0
            while got < n and pull.poll(5000):
                c0 = time.process_time()
                _, pkt = recv_packet(pull, {}, max_bytes=1 << 26)
                ok = pkt is not None and taker.take(pkt, {}) and "mask" in pkt.arrays
                cpu += time.process_time() - c0
                if ok:
                    int(pkt.arrays["mask"][0, 0])  # touch it
                    got += 1
                    if got > 10:  # skip warm-up
                        samples[variant]["lat"].append((stamp() - pkt.header["capture_ns"]) / 1e6)
            samples[variant]["cpu_recv"].append(cpu * 1e3 / max(got, 1))
            samples[variant]["cpu_send"].append(q.get(timeout=30) * 1e3 / n)
            proc.join(10)
            taker.close()
            pull.close(0)
            ctx.term()
    out = {}
    for variant, s in samples.items():
        lat = np.asarray(s["lat"])
        out[variant] = {"n": int(lat.size), "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
                        "cpu_send_ms": round(float(np.mean(s["cpu_send"])), 3), "cpu_recv_ms": round(float(np.mean(s["cpu_recv"])), 3)}
    return out


if __name__ == "__main__":
    import os

    from icfcli import Parser, size_wh

    ap = Parser(prog="python -m bench.results_hop", description="the segmenter -> sink hop alone: results as payload vs the shared-memory ring")
    ap.add_argument("sizes", nargs="*", type=size_wh, default=[(640, 480)], metavar="WxH", help="frame sizes (default 640x480)")
    ap.add_argument("--n", type=int, default=300, help="results per run (default 300, sent at 60 per second)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved runs per variant (default 2)")
    args = ap.parse_args()
    for w, h in args.sizes:
        print(json.dumps({"size": f"{w}x{h}", "load": os.getloadavg(), **hop(w, h, args.n, rounds=args.rounds)}), flush=True)
