"""Runs the README's shell commands as written, on the CPU, one line per command: ok / FAILED / skip.

    python scripts/readme_commands.py               # every runnable command, in README order; exit 1 if one fails
    python scripts/readme_commands.py --list        # each command and whether it runs, is shortened or skipped (why)
    python scripts/readme_commands.py --only engine --keep out/readme    # those containing "engine"; keep the folder

Every command of README.md's ```bash blocks is run by bash in one scratch folder that is not a checkout
(the README says an installed icf-avs "works from any directory"), in README order, so later commands use
what earlier ones wrote (out/engine/icf-lite.onnx, out/train/.../best.safetensors). HOME (and with it
~/.cache/icf-avs/engines, the engine cache the README names) and TMPDIR (the inductor cache) are inside the
scratch folder, so a run starts cold and writes nothing elsewhere; this checkout is first on PYTHONPATH and
its .venv/bin first on PATH. The files the README names as the reader's own (clip.mp4, photo.jpg,
bark.wav, a.mp4, b.mp4) are made there first: real photo cut-outs with their real recordings when Debian's
tuxpaint-stamps-default and opencv-doc are installed (as in .ci/run), else SynthAVS scenes.

A command fails on a non-zero exit, a traceback in its output, or its time limit. Commands that cannot
run here are in SKIP with the reason; commands the README itself says how to shorten are in SHORTER,
with the README's words. tests/test_readme_commands.py checks that both name only commands the README
shows. The Python API block runs verbatim in tests/stream/test_api.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT))  # make_inputs uses this checkout's synthavs

# README command -> why it does not run here. Keys are the commands exactly as extract() returns them.
SKIP: dict[str, str] = {
    "make demo": "the Makefile's demo target is `make install` + `icf-stream demo`: the install is .ci/run's `make test`, "
                 "and `icf-stream demo` runs below (tests/test_readme_commands.py checks the recipe)",
    "make test": ".ci/run's first step, on the bare machine",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu":
        "installs torch into the running environment (network); `make test` installs the same build",
    "pip install torch==2.13.0": "the CUDA build of torch (network, GPU machines)",
    "pip install icf_avs-0.1.0-py3-none-any.whl":
        "changes the running environment; tests/test_packaging.py builds the wheel, installs it into a fresh venv and runs the demo",
    "pip install 'icf-avs[text]'": "installs from the registry into the running environment; `make test` installs the [text] extra",
    "icf-stream live --camera 0 --mic default":
        "needs a webcam at /dev/video0 and a microphone, and runs until Ctrl-C; `make test-live` runs `live` on a PulseAudio "
        "virtual microphone and an ffmpeg network camera (tests/stream/test_live_devices.py)",
    "icf-stream live --camera rtsp://HOST/PATH --mic none --out out/cam":
        "HOST/PATH stand for the reader's camera, and it runs until Ctrl-C; `make test-live` opens an ffmpeg network camera "
        "with `live --camera URL` (tests/stream/test_live_devices.py)",
    "icf-train fit --config s4 --train_data=avsbench-s4:/data/AVSBench/Single-source "
    "--val_data=avsbench-s4:/data/AVSBench/Single-source,split=val":
        "needs the AVSBench dataset (not redistributable) and a GPU; its overrides parse in tests/test_readme_commands.py",
}

# README command -> (arguments added, the README's own words that say so). Only what the README tells a reader to do.
SHORTER: dict[str, tuple[str, str]] = {
    "icf-train fit --config stamps-cpu": ("--max_minutes=1", "add `--max_minutes=1` for a first try"),
    "icf-train fit --config synthavs-cpu": ("--max_minutes=1", "add `--max_minutes=1` for a first try"),
    "icf-train eval --data stamps:single,split=test,objects=heldout --weights out/train/icf-stamps-cpu/best.safetensors":
        ("--clips 2", "`eval` and the benchmark take `--clips 2` for a quick look"),
    "python -m bench.realmedia --weights out/train/icf-stamps-cpu/best.safetensors":
        ("--clips 2", "`eval` and the benchmark take `--clips 2` for a quick look"),
}

LIMIT_S = 600  # per command: the slowest (the AOTInductor build, the training try) take ~2 min on 2 free cores
TAIL = 15  # output lines shown for a failed command


def _strip_comment(line: str) -> str:
    """``cmd --x 'a # b'   # why`` -> ``cmd --x 'a # b'``: a ``#`` after whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def extract(text: str) -> list[str]:
    """Every shell command in the ```bash / ```sh / ```shell blocks of a Markdown text, in order:
    continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell)[ \t]*\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"[ \t]*\\\n\s*", " ", block)
        commands += [c for c in (_strip_comment(line).strip() for line in joined.splitlines()) if c]
    return commands


def readme_commands() -> list[str]:
    return extract(README.read_text())


def plan(commands: list[str]) -> list[tuple[str, str, str]]:
    """(command, what runs or '', note): '' with the skip reason, or the line run and how it was shortened."""
    rows = []
    for c in commands:
        if c in SKIP:
            rows.append((c, "", SKIP[c]))
        elif c in SHORTER:
            extra, words = SHORTER[c]
            rows.append((c, f"{c} {extra}", f"with {extra}: the README says {words}"))
        else:
            rows.append((c, c, ""))
    return rows


def make_inputs(folder: Path) -> str:
    """The reader's own files the README's commands name; returns what they are made of."""
    import av
    import numpy as np
    from PIL import Image

    from synthavs.config import SceneConfig
    from synthavs.scene import SceneGenerator
    from synthavs.stamps import STAMPS_DIR, decode_audio, stamps_available
    from synthavs.writers import write_mp4, write_wav

    media = "stamps" if stamps_available() else "synth"
    gen = SceneGenerator(SceneConfig(media=media, mode="single", seed=0, width=320, height=240, fps=30))
    made = write_mp4(gen, folder / "scenes", count=3, seconds=3)
    for i, name in enumerate(("clip.mp4", "a.mp4", "b.mp4")):
        shutil.move(next(made.glob(f"*_{i:06d}.mp4")), folder / name)
    shutil.rmtree(made)
    with av.open(str(folder / "clip.mp4")) as video:
        Image.fromarray(next(video.decode(video=0)).to_ndarray(format="rgb24")).save(folder / "photo.jpg", quality=90)
    if media == "stamps":
        bark = decode_audio(STAMPS_DIR / "animals" / "mammals" / "dogs" / "dog.ogg")
        write_wav(folder / "bark.wav", bark.astype(np.float32))
        return "real photos and recordings (tuxpaint stamps on opencv-doc photos); bark.wav is tuxpaint's dog"
    write_wav(folder / "bark.wav", gen.clip(3, seconds=2).audio.astype(np.float32))
    return "SynthAVS scenes (tuxpaint-stamps-default / opencv-doc not installed); bark.wav is a SynthAVS sound"


def environment(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ICF_CACHE", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR")}
    bin_dir = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "python").exists() else Path(sys.executable).parent
    for d in ("home", "tmp"):
        (scratch / d).mkdir(exist_ok=True)
    env.update(HOME=str(scratch / "home"), TMPDIR=str(scratch / "tmp"), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p), PYTHONUNBUFFERED="1")
    return env


def _children_cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_one(line: str, cwd: Path, env: dict[str, str], log: Path, limit_s: float) -> tuple[str, float, float]:
    """Runs ``line`` with bash in its own process group (the group is ended on time-out); output -> ``log``.
    Returns (problem or '', wall seconds, CPU seconds of the processes it waited for)."""
    t0, cpu0 = time.monotonic(), _children_cpu_s()
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return f"timed out after {limit_s:g} s", time.monotonic() - t0, _children_cpu_s() - cpu0
    seconds, cpu = time.monotonic() - t0, _children_cpu_s() - cpu0
    if rc != 0:
        return f"exit {rc}", seconds, cpu
    if "Traceback (most recent call last)" in log.read_text(errors="replace"):
        return "exit 0 but printed a traceback", seconds, cpu
    return "", seconds, cpu


def _tail(log: Path, n: int = TAIL) -> list[str]:
    lines = log.read_text(errors="replace").replace("\r", "\n").splitlines()
    return [ln for ln in lines if ln.strip()][-n:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the commands and what happens to each; run nothing")
    ap.add_argument("--only", metavar="TEXT", help="run only the commands containing TEXT (the inputs are still made)")
    ap.add_argument("--limit", type=float, default=LIMIT_S, metavar="S", help=f"time limit per command (default {LIMIT_S} s)")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR (must not exist) and keep it (default: a temporary folder, "
                                                 "kept only when a command fails)")
    ap.add_argument("--json", metavar="FILE", help="also write each command's outcome and times here (docs/results/readme_commands.json)")
    args = ap.parse_args(argv)
    rows = plan(readme_commands())
    if args.list:
        for command, line, note in rows:
            print(f"{'run' if line == command else 'shorter' if line else 'skip':8s}{command}" + (f"\n        ({note})" if note else ""))
        return 0
    if args.keep and Path(args.keep).exists():
        print(f"readme_commands: --keep {args.keep} exists; name a new folder", file=sys.stderr)
        return 2
    scratch = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="icf-readme-"))
    scratch.mkdir(parents=True, exist_ok=True)
    env, work, logs = environment(scratch), scratch / "work", scratch / "logs"
    work.mkdir()
    logs.mkdir()
    t0 = time.monotonic()
    made = make_inputs(work)
    inputs_s = time.monotonic() - t0
    print(f"readme_commands: README.md's commands in {work}; inputs: {made} ({inputs_s:.0f} s)", flush=True)
    failed = ran = skipped = 0
    records = []
    for i, (command, line, note) in enumerate(rows, 1):
        if args.only and args.only not in command:
            continue
        if not line:
            skipped += 1
            records.append({"command": command, "outcome": "skipped", "why": note})
            print(f"skip    {command}\n        ({note})", flush=True)
            continue
        log = logs / f"{i:02d}.log"
        problem, seconds, cpu = run_one(line, work, env, log, args.limit)
        ran += 1
        shown = f"{command}   ({note})" if note else command
        records.append({"command": command, "ran": line, "outcome": problem or "ok", "wall_s": round(seconds, 1), "cpu_s": round(cpu, 1)})
        if problem:
            failed += 1
            print(f"FAILED  {seconds:6.1f} s (CPU {cpu:5.1f} s)  {shown}: {problem}; the last lines of {log}:", flush=True)
            print("\n".join(f"        | {ln}" for ln in _tail(log)), flush=True)
        else:
            print(f"ok      {seconds:6.1f} s (CPU {cpu:5.1f} s)  {shown}", flush=True)
    cache = scratch / "home" / ".cache" / "icf-avs" / "engines"
    print(f"readme_commands: {ran - failed} of {ran} ran ok, {failed} failed, {skipped} skipped (reasons above), "
          f"{time.monotonic() - t0:.0f} s in all; engine cache {'in' if cache.is_dir() else 'NOT in'} ~/.cache/icf-avs/engines")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()], "command": "python scripts/readme_commands.py",
            "inputs_s": round(inputs_s, 1), "total_s": round(time.monotonic() - t0, 1), "commands": records}, indent=1) + "\n")
    if failed or args.keep:
        print(f"readme_commands: outputs and logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
