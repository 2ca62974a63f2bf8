"""Issue 21's decisive experiment: two arms x N paired seeds, resumable, then the seed-level comparison.

    python scripts/experiments_seeds.py --out /work/icf21 --seeds 0-11            # train + evaluate what is missing
    python scripts/experiments_seeds.py --out /work/icf21 --seeds 0-11 --report   # compare what has finished
    python scripts/experiments_seeds.py --out /work/icf21 --seeds 0-3 --arms full-div,full   # exploratory: MIT's mend

Design (pre-registered in docs/results/icf_decisive.md): arm "full" = full ICF + concept loss, arm "base" =
baseline + concept loss, icf-tiny 64x64, 1500 steps on the shortcut stream; each network evaluated on the
same 100 prior-conflict test clips with 2-frame segments. Every run lives in OUT/<arm>-s<seed>/; a run with
``done.json`` is skipped, a run with a ``last.safetensors`` resumes from it (``fit --resume``), so a killed
session loses at most ``ckpt_every`` steps. ``--jobs 2`` trains the two arms of a seed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE = ["--config", "synthavs-v2-baseline", "--steps=1500", "--max_minutes=0", "--frames=6",
        "--train_data=synthavs:biased,segment_frames=2", "--w_concept=0.2", "--ckpt_every=250", "--quiet"]
ARMS = {
    "full": ["--frame_text=true", "--segment_text=true", "--video_text=true", "--text_bridge=true", "--sc=true", "--cdcl=true",
             "--text_every=8"],
    "base": [],
}
# exploratory, NOT pre-registered (run after the decisive arms): full ICF + concept with MIT's diversity mend
# (mean cos^2 of l_v across clips, weight 1), to see whether the mend un-collapses l_v at training scale
EXPLORATORY = {"full-div": ARMS["full"] + ["--w_text_diversity=1.0"]}
ALL_ARMS = {**ARMS, **EXPLORATORY}
EVAL_SPEC = "synthavs:prior-conflict,split=test,segment_frames=2"
EVAL_CLIPS = 100


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _fit(run_dir: Path, arm: str, seed: int, steps: int | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "training", "fit", *BASE, *ALL_ARMS[arm], f"--seed={seed}", f"--out_dir={run_dir}"]
    if steps:
        args.append(f"--steps={steps}")
    if (run_dir / "last.safetensors").is_file():
        args.append("--resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "fit.log", "a")
    return subprocess.Popen(["nice", "-n", "19", *args], cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)


def _evaluate(run_dir: Path, clips: int) -> None:
    """The per-clip conflict mIoU of a finished run (kept, so --report never re-evaluates); the same
    function ``icf-train eval --compare`` calls."""
    code = (
        "import json, sys, torch; from training.evaluate import evaluate_spec, write_json; "
        "r = evaluate_spec(sys.argv[1], sys.argv[2], device=torch.device('cpu'), clips=int(sys.argv[3]), listening='off', "
        "per_clip=True, workers=0); write_json(sys.argv[4], r)"
    )
    args = [sys.executable, "-c", code, str(run_dir / "last.safetensors"), EVAL_SPEC, str(clips), str(run_dir / "eval_conflict.json")]
    subprocess.run(["nice", "-n", "19", *args], cwd=REPO, env=_env(), check=True)


def _finished(run_dir: Path) -> bool:
    return (run_dir / "done.json").is_file()


def train_missing(out: Path, seeds: list[int], arms: list[str], jobs: int, steps: int | None, clips: int, deadline: float) -> None:
    todo = [(s, arm) for s in seeds for arm in arms if not _finished(out / f"{arm}-s{s}")]
    running: list[tuple[Path, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < jobs and time.time() < deadline:
            seed, arm = todo.pop(0)
            run_dir = out / f"{arm}-s{seed}"
            running.append((run_dir, _fit(run_dir, arm, seed, steps), time.time()))
            print(f"[{time.strftime('%H:%M:%S')}] start {run_dir.name}", flush=True)
        if not running:
            break
        time.sleep(5)
        for item in list(running):
            run_dir, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                print(f"[{time.strftime('%H:%M:%S')}] {run_dir.name} failed (rc {proc.returncode}); see {run_dir}/fit.log", flush=True)
                continue
            _evaluate(run_dir, clips)
            (run_dir / "done.json").write_text(json.dumps({"train_eval_s": round(time.time() - t0, 1)}) + "\n")
            print(f"[{time.strftime('%H:%M:%S')}] done {run_dir.name} ({time.time() - t0:.0f} s)", flush=True)


def report(out: Path, seeds: list[int], arms: tuple[str, str] = ("full", "base")) -> dict:
    """Seed-paired comparison of the finished pairs of ``arms`` (A - B; training.stats.seed_paired)."""
    sys.path.insert(0, str(REPO))
    from training.stats import decide, seed_paired

    pairs = {}
    for s in seeds:
        runs = [out / f"{arm}-s{s}" for arm in arms]
        if all(_finished(r) for r in runs):
            a, b = (json.loads((r / "eval_conflict.json").read_text()) for r in runs)
            pairs[s] = {arms[0]: a["mIoU"], arms[1]: b["mIoU"], "clips": a["clips"]}
    diffs = [100 * (p[arms[0]] - p[arms[1]]) for p in pairs.values()]
    stats = seed_paired(diffs) if diffs else {}
    verdict = decide(stats, margin=3.0) if len(diffs) >= 2 else "undecided"
    return {"arms": list(arms), "seeds": sorted(pairs), "pairs": pairs, "diff_points": diffs, "stats": stats, "verdict": verdict}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seeds", default="0-11", help="e.g. 0-11 or 0,1,5")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--steps", type=int, default=0, help="override the 1500 steps (smoke checks only)")
    p.add_argument("--clips", type=int, default=EVAL_CLIPS)
    p.add_argument("--stop-starting-at", default="", help="HH:MM UTC: start no new run after this time")
    p.add_argument("--report", action="store_true", help="only compare the finished pairs")
    p.add_argument("--arms", default="full,base", help=f"arms to train (of {', '.join(ALL_ARMS)}); the first two are compared")
    a = p.parse_args()
    seeds = _seeds(a.seeds)
    arms = a.arms.split(",")
    if len(arms) < 2 or any(x not in ALL_ARMS for x in arms):
        p.error(f"--arms {a.arms}: name two or more of {', '.join(ALL_ARMS)}")
    if not a.report:
        deadline = float("inf")
        if a.stop_starting_at:
            h, m = (int(x) for x in a.stop_starting_at.split(":"))
            now = time.gmtime()
            deadline = time.time() + ((h * 60 + m) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
        train_missing(a.out, seeds, arms, a.jobs, a.steps or None, a.clips, deadline)
    print(json.dumps(report(a.out, seeds, (arms[0], arms[1])), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
