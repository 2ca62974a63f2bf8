"""Works from anywhere, installs as a package: a wheel built from the repository, installed into a fresh
venv, runs `icf-stream demo` from another directory (slow: ~50 s with the ONNX export of the shipped
weights). The fast check that the shipped weights resolve outside the repository is in tests/stream/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_is_declared():
    """The files the installed package needs at run time are in pyproject's package data."""
    text = (ROOT / "pyproject.toml").read_text()
    assert '"weights*"' in text and 'weights = ["*.safetensors", "*.json"]' in text and '"icfcli*"' in text
    assert (ROOT / "weights" / "__init__.py").is_file()


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo(tmp_path):
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT), "-w", str(tmp_path / "whl")],
                   check=True, cwd=tmp_path)
    wheel = next((tmp_path / "whl").glob("icf_avs-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    # reuse this environment's torch & co. (a .pth line adds the directory; its own .pth files, such as an
    # editable install of this repository, are not processed), so only the wheel is new
    fresh_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*pip, "--python", str(py), "install", "-q", "--force-reinstall", "--no-deps", "--no-index", str(wheel)], check=True)
    Path(fresh_site, "_reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after: pip must not see ours there
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(work / "cache")
    where = subprocess.run([str(py), "-c", "import stream, weights; print(stream.__file__); print(weights.SHIPPED)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where  # the installed copy, not the checkout
    proc = subprocess.run([str(venv / "bin" / "icf-stream"), "demo", "--seconds", "2", "--transport", "inproc", "--out", "o"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "o" / "report.json").read_text())
    assert report["ok"] and report["frames"]["processed"] > 0
    assert sorted(p.name for p in work.iterdir()) == ["cache", "o"]  # --out and the user cache: nothing else written


def test_readme_install_names_only_extras_that_exist():
    """The README's pip commands name the CPU torch build and extras pyproject declares (`[text]` for training)."""
    import re

    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, re.M))
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"icf-avs\[([\w-]+)\]", readme)) | {e for group in re.findall(r"'\.\[([\w,-]+)\]'", readme)
                                                              for e in group.split(",")}
    assert "text" in named and named <= extras, named - extras
    assert "pip install 'icf-avs[text]'" in readme
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "torch==2.13.0" in readme
