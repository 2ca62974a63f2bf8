"""The demo's latency, two checkouts compared: paired, interleaved runs of ``icf-stream demo``.

Each pair runs checkout A and checkout B once each, back to back, in the order AB, BA, BA, AB
(repeated), so a drift of the machine over the session falls on both arms alike. The endpoint is
a run's capture-to-mask p99 (``report.json``); the statistic is the paired difference B - A with
a 95% t interval over pairs; the rule (pre-registered in docs/results/one_lane_segmenter.md):
"no p99 cost" if the upper end is below ``--margin`` ms, "a p99 cost" if the lower end is above 0,
otherwise "undecided". Every run is kept; ``--report`` re-reads a finished folder.

  python -m lab.demo_ab --a $RUNS/pre --b . --pairs 16 --out $RUNS/demo_ab
  python -m lab.demo_ab --out $RUNS/demo_ab --report --json docs/results/one_lane_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from training.stats import seed_paired

ORDERS = ("AB", "BA", "BA", "AB")


def load_average() -> float:
    return os.getloadavg()[0]


def _child(checkout: Path) -> dict:
    """How a run of ``checkout`` is started: in that folder, since ``python -m`` puts the working folder
    ahead of PYTHONPATH (run from another checkout, both arms would import that one's code)."""
    return {"cwd": checkout, "env": dict(os.environ, PYTHONPATH=str(checkout))}


def check_arm(checkout: Path) -> str:
    """The checkout's commit, after making sure a run started there imports its own ``stream``."""
    got = subprocess.run([sys.executable, "-c", "import stream; print(stream.__file__)"], capture_output=True, text=True,
                         **_child(checkout))
    where = Path(got.stdout.strip()).resolve() if got.returncode == 0 else None
    if where is None or checkout not in where.parents:
        raise SystemExit(f"a run in {checkout} imports stream from {where or got.stderr.strip()[-200:]}, not from that checkout")
    rev = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return rev.stdout.strip() or "?"


def run_one(checkout: Path, out: Path, seconds: int) -> dict:
    """One demo run of ``checkout`` (started in it); the numbers its report gives."""
    t0, load0 = time.time(), load_average()
    with open(out.with_suffix(".log"), "w") as log:
        rc = subprocess.call([sys.executable, "-m", "stream", "demo", "--seconds", str(seconds), "--out", str(out), "--view", "off"],
                             stdout=log, stderr=subprocess.STDOUT, **_child(checkout))
    row = {"rc": rc, "started": time.strftime("%H:%M:%S", time.gmtime(t0)), "load_before": round(load0, 2),
           "load_after": round(load_average(), 2)}
    return {**row, **summarise(out)} if rc == 0 else row


def summarise(out: Path) -> dict:
    rep = json.loads((out / "report.json").read_text())
    lat, frames = rep["latency_ms"], rep["frames"]
    return {"p99_ms": lat["capture_to_mask"]["p99_ms"], "p50_ms": lat["capture_to_mask"]["p50_ms"],
            "to_context_p99_ms": lat["to_context"]["p99_ms"], "sent": frames["sent"], "processed": frames["processed"],
            "accounted": frames["accounted"], "miou": rep.get("miou")}


def verdict(diffs: list[float], margin: float) -> dict:
    """The registered rule on the paired t interval of training.stats.seed_paired (the unit here is a pair
    of runs, not a seed; the interval is the same paired t)."""
    st = seed_paired(diffs)
    lo, hi = st["t_lo"], st["t_hi"]
    rule = "no p99 cost" if hi < margin else "a p99 cost" if lo > 0 else "undecided"
    return {"pairs": st["n"], "mean_ms": round(st["mean"], 2), "sd_ms": round(st["sd"], 2), "ci95_ms": [round(lo, 2), round(hi, 2)],
            "bootstrap95_ms": [round(st["boot_lo"], 2), round(st["boot_hi"], 2)], "b_higher_in": sum(d > 0 for d in diffs),
            "margin_ms": margin, "verdict": rule}


def report(out: Path, margin: float) -> dict:
    pairs = json.loads((out / "pairs.json").read_text())
    done = [p for p in pairs if p["A"].get("rc") == 0 and p["B"].get("rc") == 0]
    med = {arm: {k: statistics.median(p[arm][k] for p in done) for k in ("p50_ms", "p99_ms", "to_context_p99_ms", "processed")}
           for arm in "AB"}
    return {"pairs": pairs, "failed_pairs": len(pairs) - len(done), "medians": med,
            "p99_b_minus_a": verdict([p["B"]["p99_ms"] - p["A"]["p99_ms"] for p in done], margin)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.demo_ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=Path, help="checkout A (the reference)")
    p.add_argument("--b", type=Path, help="checkout B (the change)")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--seconds", type=int, default=10, help="demo length per run")
    p.add_argument("--margin", type=float, default=5.0, help="the largest p99 cost (ms) that counts as none")
    p.add_argument("--out", type=Path, required=True, help="a folder for every run and pairs.json")
    p.add_argument("--report", action="store_true", help="only summarise the runs in --out")
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    if not args.report:
        if not (args.a and args.b):
            p.error("--a and --b are needed to run pairs")
        args.out = args.out.resolve()
        args.out.mkdir(parents=True, exist_ok=True)
        arms = {"A": args.a.resolve(), "B": args.b.resolve()}
        commits = {arm: check_arm(path) for arm, path in arms.items()}
        print(f"A = {commits['A']}, B = {commits['B']}; one unscored run each first (model export, caches)", flush=True)
        for arm, path in arms.items():
            run_one(path, args.out / f"warmup-{arm}", args.seconds)
        pairs = []
        for i in range(1, args.pairs + 1):
            order = ORDERS[(i - 1) % len(ORDERS)]
            pair = {"pair": i, "order": order}
            for arm in order:
                pair[arm] = dict(run_one(arms[arm], args.out / f"{arm}-{i}", args.seconds), commit=commits[arm])
                print(f"pair {i} {arm}: {json.dumps(pair[arm])}", flush=True)
            pairs.append(pair)
            (args.out / "pairs.json").write_text(json.dumps(pairs, indent=1))
    summary = report(args.out, args.margin)
    summary["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    print(json.dumps({k: summary[k] for k in ("medians", "p99_b_minus_a", "failed_pairs")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
