"""How long ``engine.runtime.load`` of a cached artifact takes beyond ONNX Runtime's session creation.

Each sample is a fresh process (nothing memoised yet): it times ``runtime.load(weights)`` (resolve
through the cache, sidecar, hashes, session) and, alone, the same session creation on the resolved
ONNX; the difference is what the runtime itself costs. The two are timed in alternating order.

    python -m bench.load_time --weights weights/icf-lite-synthavs.safetensors --runs 5 --out docs/results/cpu_load_time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CHILD = """
import sys, time
order, weights = sys.argv[1], sys.argv[2]
import onnxruntime as ort
from engine import cache, runtime
onnx = str(cache.resolve(weights, "onnx"))  # not timed: just where the file is (the cache entry exists)
from engine import spec
spec._SHA256.clear(); spec._SIDECARS.clear(); spec._GRAPH_IO_OK.clear()  # as in a fresh process
def session():
    so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    t, c = time.perf_counter(), time.process_time()
    s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
    return time.perf_counter() - t, time.process_time() - c
def load():
    t, c = time.perf_counter(), time.process_time()
    b = runtime.load(weights, threads=1)
    dt = time.perf_counter() - t, time.process_time() - c
    b.close()
    return dt
if order == "s":
    s = session(); l = load()
else:
    l = load(); s = session()
print(l[0] * 1e3, s[0] * 1e3, l[1] * 1e3, s[1] * 1e3)
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights/icf-lite-synthavs.safetensors")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", CHILD, "s", args.weights], env=env, check=True, capture_output=True)  # makes the cache entry
    loads, sessions, load_cpu, session_cpu = [], [], [], []
    for i in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, "sl"[i % 2], args.weights], env=env, check=True, capture_output=True, text=True)
        load_ms, session_ms, load_cpu_ms, session_cpu_ms = (float(v) for v in out.stdout.split())
        loads.append(load_ms)
        sessions.append(session_ms)
        load_cpu.append(load_cpu_ms)
        session_cpu.append(session_cpu_ms)
    beyond = np.asarray(loads) - np.asarray(sessions)
    beyond_cpu = np.asarray(load_cpu) - np.asarray(session_cpu)
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
           "load_avg_1m": round(os.getloadavg()[0], 2), "command": "python -m bench.load_time " + " ".join(sys.argv[1:] if argv is None else argv),
           "weights": args.weights, "runs": args.runs, "load_ms": [round(v, 1) for v in loads], "session_ms": [round(v, 1) for v in sessions],
           "beyond_session_ms_median": round(float(np.median(beyond)), 1), "beyond_session_ms": [round(float(v), 1) for v in beyond],
           "beyond_session_cpu_ms_median": round(float(np.median(beyond_cpu)), 1), "beyond_session_cpu_ms": [round(float(v), 1) for v in beyond_cpu]}
    print(json.dumps(doc, indent=1))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(
            f"# runtime.load of a cached artifact, beyond session creation ({doc['date']})\n\n"
            f"Machine: {doc['machine']}, 1-min load {doc['load_avg_1m']}. Command: `{doc['command']}`\n\n"
            f"Each run a fresh process; `runtime.load({args.weights})` (cache resolve, sidecar, sha256 of checkpoint and ONNX, "
            f"session) minus ONNX Runtime's session creation on the same file alone.\n\n"
            f"| | median ms | runs |\n|---|---|---|\n| runtime.load | {np.median(loads):.1f} | {doc['load_ms']} |\n"
            f"| session alone | {np.median(sessions):.1f} | {doc['session_ms']} |\n"
            f"| **beyond session** | **{doc['beyond_session_ms_median']}** | {doc['beyond_session_ms']} |\n"
            f"| beyond session, CPU ms of the process (less sensitive to the machine's load) | {doc['beyond_session_cpu_ms_median']} | "
            f"{doc['beyond_session_cpu_ms']} |\n")


if __name__ == "__main__":
    main()
