"""The real-media benchmark: weights scored on real photos with their real recordings (synthavs.stamps).

    python -m bench.realmedia --clips 60 --out docs/results/realmedia      # the shipped real-media weights

Splits (test seeds; the training split never shows a held-out object or a held-out background):
  a          seen objects on held-out background photos and new compositions: single, multi, prior-conflict,
             silence, off-screen, and single at 30 dB and 10 dB SNR (noise robustness);
  b          held-out objects (~20% of the stamps, photo and recording never trained on): single, multi,
             silence, off-screen;
  synthavs   the synthetic benchmark, for continuity with the earlier weights.
Every scored row stands beside the rules that never listen (salient-only, all-objects: painted from
ground truth whatever the audio). Listening metrics (training.listening): follow = the audio-swap test
(each visible object's own recording alone: does the mask follow it), prior capture (prior-conflict:
the silent usually-sounding object painted), empty rate (silence / off-screen frames left empty).

Targets (issue 20; checked and printed, never tuned): (a) single mIoU >= 80, follow >= 90%, prior capture
<= 10%; (b) single mIoU >= the best never-listening rule + 10; (a) single at 10 dB costs <= 5 mIoU vs 30 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

SPLITS: dict[str, list[tuple[str, str, str]]] = {  # split -> (row, spec, listening)
    "a": [
        ("single", "stamps:single,split=test", "full"),
        ("multi", "stamps:multi,split=test", "basic"),
        ("prior-conflict", "stamps:prior-conflict,split=test", "full"),
        ("silence", "stamps:silence,split=test", "basic"),
        ("offscreen", "stamps:offscreen,split=test", "basic"),
        ("single 30 dB", "stamps:single,split=test,snr=30", "basic"),
        ("single 10 dB", "stamps:single,split=test,snr=10", "basic"),
    ],
    "b": [
        ("single", "stamps:single,split=test,objects=heldout", "full"),
        ("multi", "stamps:multi,split=test,objects=heldout", "basic"),
        ("silence", "stamps:silence,split=test,objects=heldout", "basic"),
        ("offscreen", "stamps:offscreen,split=test,objects=heldout", "basic"),
    ],
    "synthavs": [
        ("single", "synthavs:single,split=test", "basic"),
        ("prior-conflict", "synthavs:prior-conflict,split=test", "full"),
    ],
}


def _row(result: dict) -> dict:
    lis = result.get("listening", {})
    model = lis.get("model", {})
    refs = {k: (lis.get(k) or {}).get("mIoU") for k in ("salient-only", "all-objects")}
    return {
        "mIoU": result.get("mIoU"),
        "F": result.get("F"),
        "empty_rate": model.get("empty_rate", result.get("empty_rate")),
        "follow": model.get("follow"),
        "prior_capture": model.get("prior_capture"),
        "salient_only_mIoU": refs["salient-only"],
        "all_objects_mIoU": refs["all-objects"],
        "clips": result.get("clips"),
    }


def targets(rows: dict) -> list[dict]:
    """Issue 20's targets against the measured rows: what, measured, goal, met."""
    out = []
    a, b = rows.get("a", {}), rows.get("b", {})

    def add(what, value, goal, ok):
        out.append({"target": what, "measured": value, "goal": goal, "met": None if value is None else bool(ok(value))})

    single = a.get("single", {})
    add("(a) single mIoU", single.get("mIoU"), ">= 0.80", lambda v: v >= 0.80)
    add("(a) follow rate", single.get("follow"), ">= 0.90", lambda v: v >= 0.90)
    add("(a) prior-conflict capture", a.get("prior-conflict", {}).get("prior_capture"), "<= 0.10", lambda v: v <= 0.10)
    bs = b.get("single", {})
    never = max(v for v in (bs.get("salient_only_mIoU"), bs.get("all_objects_mIoU"), 0.0) if v is not None)
    add("(b) single mIoU - best never-listening rule", None if bs.get("mIoU") is None else bs["mIoU"] - never, ">= 0.10",
        lambda v: v >= 0.10)
    hi, lo = a.get("single 30 dB", {}).get("mIoU"), a.get("single 10 dB", {}).get("mIoU")
    add("(a) mIoU cost of 10 dB vs 30 dB SNR", None if hi is None or lo is None else hi - lo, "<= 0.05", lambda v: v <= 0.05)
    return out


def to_markdown(doc: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [f"# Real-media benchmark: {doc['weights']}", "",
             f"Measured {doc['date']} on {doc['machine']}, {doc['clips']} test clips x 5 frames per row, command: `{doc['command']}`", "",
             "| split | row | mIoU | F | follow | prior capture | empty rate | salient-only mIoU | all-objects mIoU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for split, rows in doc["rows"].items():
        for name, r in rows.items():
            lines.append(f"| {split} | {name} | {pct(r['mIoU'])} | {pct(r['F'])} | {pct(r['follow'])} | {pct(r['prior_capture'])} "
                         f"| {pct(r['empty_rate'])} | {pct(r['salient_only_mIoU'])} | {pct(r['all_objects_mIoU'])} |")
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in doc["targets"]:
        v = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        lines.append(f"| {t['target']} | {v} | {t['goal']} | {'-' if t['met'] is None else 'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from training.evaluate import evaluate_spec
    from weights import STAMPS

    ap = argparse.ArgumentParser(prog="python -m bench.realmedia", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(STAMPS), help="checkpoint (default: the shipped real-media weights)")
    ap.add_argument("--clips", type=int, default=60, help="test clips per row (5 frames each)")
    ap.add_argument("--splits", default="a,b,synthavs", help="comma-separated: a, b, synthavs")
    ap.add_argument("--out", default="out/bench/realmedia", help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    wanted = [s for s in args.splits.split(",") if s]
    bad = sorted(set(wanted) - set(SPLITS))
    if bad:
        raise SystemExit(f"bench.realmedia: unknown split(s) {bad}; choose from {sorted(SPLITS)}")
    from synthavs.stamps import check_installed

    check_installed()
    torch.set_num_threads(2)
    rows: dict[str, dict] = {}
    t0 = time.time()
    for split in wanted:
        rows[split] = {}
        for name, spec, listening in SPLITS[split]:
            res = evaluate_spec(args.weights, spec, device=torch.device("cpu"), listening=listening, clips=args.clips, workers=0)
            rows[split][name] = {**_row(res), "spec": spec}
            r = rows[split][name]
            print(f"{split:9s} {name:15s} mIoU {r['mIoU'] if r['mIoU'] is None else round(100 * r['mIoU'], 1)}  "
                  f"follow {r['follow']}  capture {r['prior_capture']}  empty {r['empty_rate']}  ({time.time() - t0:.0f} s)", flush=True)
    doc = {
        "weights": args.weights,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}",
        "command": "python -m bench.realmedia " + " ".join(argv if argv is not None else sys.argv[1:]),
        "clips": args.clips,
        "rows": rows,
    }
    doc["targets"] = targets(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
