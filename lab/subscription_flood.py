"""Issue 26.6: RSS of a publisher flooded with subscriptions, before and after SubscriptionGate.

A child process connects an XSUB over tcp and sends N subscriptions of SIZE random bytes (an XSUB
sends them again after every reconnect, as a flooding zmq client would). The publisher (this
process) publishes a frame every ~10 ms for SECONDS while a normal SUB receives them; it reports
its RSS growth (end and peak), the gate's counters and frames received of frames sent.

  before: an XPUB with XPUB_VERBOSE and the old 4 KiB MAXMSGSIZE, nothing reading subscriptions after start
          (the source as it was); after: stream.wire.transport.open_socket (512 B cap) + stream.wire.subscriptions.SubscriptionGate.

  PYTHONPATH=. python -m lab.subscription_flood --out docs/results/subscription_flood.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import zmq

FLOOD = """
import os, sys, time, zmq
s = zmq.Context().socket(zmq.XSUB)
s.connect(sys.argv[1])
for _ in range(int(sys.argv[2])):
    s.send(b"\\x01" + os.urandom(int(sys.argv[3])))
time.sleep(600)
"""


OLD_CAP = 4096  # the publisher's message cap before issue 26.6's second round (now 512 B)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def one(mode: str, n: int, size: int, seconds: float) -> dict:
    from stream.wire.subscriptions import SubscriptionGate
    from stream.wire.transport import Endpoints, make_endpoints, open_socket

    ctx = zmq.Context()
    ep = Endpoints(make_endpoints("tcp"))
    if mode == "before":
        pub, gate = ctx.socket(zmq.XPUB), None
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.MAXMSGSIZE, OLD_CAP)
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        pub.bind(ep["video"])
    else:
        pub = open_socket(ctx, zmq.XPUB, ep, "video", bind=True)
        gate = SubscriptionGate(pub)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.connect(ep["video"])
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    r0 = rss_mb()
    peak = 0.0
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, ep["video"], str(n), str(size)])
    sent = got = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if gate is not None:
                gate.drain()
            pub.send(b"frame")
            sent += 1
            while sub.poll(0):
                sub.recv()
                got += 1
            peak = max(peak, rss_mb() - r0)
            time.sleep(0.01)
        end = rss_mb() - r0
    finally:
        flood.kill()
        flood.wait()
        ctx.destroy(linger=0)
    return {"mode": mode, "subscriptions_sent": n, "subscription_bytes": size, "seconds": seconds,
            "rss_growth_end_mb": round(end, 1), "rss_growth_peak_mb": round(peak, 1),
            "frames_sent": sent, "frames_received": got, "gate": gate.counters if gate else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--one", nargs=3, metavar=("MODE", "N", "SIZE"), help=argparse.SUPPRESS)  # one row, in a fresh process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), int(args.one[2]), args.seconds)))
        return
    # each row in its own process: memory freed by an earlier row would hide a later row's growth
    cases = (("before", 2000, 4000), ("after", 2000, 4000), ("after", 2000, 500), ("before", 20000, 500), ("after", 20000, 500))
    rows = [json.loads(subprocess.run([sys.executable, "-m", "lab.subscription_flood", "--seconds", str(args.seconds), "--one", mode, str(n),
                                       str(size)], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            for mode, n, size in cases]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        doc = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": f"{platform.machine()}, 2-core shared CPU",
               "libzmq": zmq.zmq_version(), "pyzmq": zmq.__version__,
               "command": "PYTHONPATH=. python -m lab.subscription_flood --out docs/results/subscription_flood.json", "rows": rows}
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
