"""The GPU run's script works before a GPU is there: its dry run runs every step on the CPU at tiny
size and writes one JSON record per step (scripts/gpu.sh --dry-run, the same runner)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_all

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_plan_fits_and_never_installs_torch():
    plan = gpu_all.steps(False)
    assert sum(s.budget_s for s in plan) <= gpu_all.TOTAL_BUDGET_S
    assert {s.name for s in gpu_all.steps(True)} <= {s.name for s in plan}
    names = [s.name for s in gpu_all.steps(False)]
    assert names == ["env", "pytest_gpu", "parity", "latency", "aoti", "aoti_check", "gpu_check", "pipeline", "streams"]
    script = (ROOT / "scripts" / "gpu.sh").read_text()
    assert "--no-deps" in script and "bench.gpu_all" in script
    wheels = (ROOT / "Makefile").read_text().split("GPU_WHEELS :=")[1].splitlines()[0].split()
    assert wheels and not any(w.split("=")[0].startswith("torch") for w in wheels)  # the machine's own torch stays


def test_a_failed_or_slow_step_does_not_stop_the_next(tmp_path):
    steps = [gpu_all.Step("boom", ("{py}", "-c", "raise SystemExit(3)"), 30),
             gpu_all.Step("slow", ("{py}", "-c", "import time; print('started', flush=True); time.sleep(60)"), 2),
             gpu_all.Step("fine", ("{py}", "-c", "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'x': 1}))", "{out}/r.json"), 30,
                          "r.json")]
    records = [gpu_all.run_step(s, tmp_path) for s in steps]
    assert [r["status"] for r in records] == ["failed", "timeout", "ok"]
    assert records[0]["rc"] == 3 and "started" in records[1]["tail"]
    assert json.loads((tmp_path / "fine.json").read_text())["result"] == {"x": 1}


@pytest.mark.slow
def test_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu.sh"), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "OUT": str(out), "PYTHON": sys.executable}, timeout=1500)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert set(summary["steps"]) == {s.name for s in gpu_all.steps(True)}
    bad = {k: v for k, v in summary["steps"].items() if v["status"] != "ok"}
    assert not bad, (bad, proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    for name in summary["steps"]:
        record = json.loads((out / f"{name}.json").read_text())
        assert record["step"] == name and record["command"]
    assert json.loads((out / "parity.json").read_text())["result"]["passed"] is True
