"""Fixtures for the stream tests: small generated media files and an icf-tiny ONNX export."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FPS = 30


def write_mp4(path: Path, seconds: float = 2.0, size=(320, 240), audio: bool = True, fps: int = FPS) -> Path:
    """A moving bright square on a dark background, with a 440 Hz tone while it moves right."""
    import av

    w, h = size
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast"}
        a = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        t = np.arange(int(seconds * 16000)) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(n):
            img = np.full((h, w, 3), 30, np.uint8)
            x = int((w - 60) * (i / max(n - 1, 1)))
            img[h // 2 - 30 : h // 2 + 30, x : x + 60] = (250, 200, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(v.encode(frame))
        out.mux(v.encode())
        if a is not None:
            for pos in range(0, tone.size, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, pos : pos + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, pos
                out.mux(a.encode(af))
            out.mux(a.encode())
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    return {
        "av": write_mp4(d / "av.mp4", seconds=2.0),
        "long": write_mp4(d / "long.mp4", seconds=4.0),
        "silent": write_mp4(d / "silent.mp4", seconds=1.0, audio=False),
        "corrupt": corrupt,
    }


@pytest.fixture(scope="session")
def tiny_onnx() -> str:
    """icf-tiny exported through the engine once and kept under out/test-engine (any valid
    icf-tiny works for these tests; a stale or broken one is re-exported)."""
    runtime = pytest.importorskip("engine.runtime")
    from engine import cache as engine_cache

    root = ROOT / "out" / "test-engine"
    try:
        path = engine_cache.onnx_for_model("icf-tiny", root=root)
        runtime.load(path, backend="onnxruntime").close()
    except Exception:  # noqa: BLE001 - stale export (engine format changed): make a fresh one
        shutil.rmtree(root / "onnx" / "registry-icf-tiny-seed0", ignore_errors=True)
        path = engine_cache.onnx_for_model("icf-tiny", root=root)
    return str(path)


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc; zombies excluded)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry.name))
    return kids


def node_process(node: str, alive, timeout_s: float = 120.0):
    """The live child process that runs graph node ``node`` (stream.graph.supervise spawns it as
    ``icf-<node>``): a real process handle, found among this process's children."""
    import multiprocessing as mp
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        for p in mp.active_children():
            if p.name == f"icf-{node}":
                return p
        assert time.monotonic() < deadline and alive(), f"no process icf-{node} within {timeout_s:g} s"
        time.sleep(0.02)  # polls the children table; readiness is the caller's output check


def lines_in(path: Path) -> int:
    """Complete lines in a (line-buffered) output that is still being written; 0 before it exists."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_lines(path: Path, n: int, alive, timeout_s: float = 120.0) -> None:
    """Waits until a metrics log being written holds ``n`` lines: the stream it logs is running."""
    import time

    deadline = time.monotonic() + timeout_s
    while lines_in(path) < n:
        assert time.monotonic() < deadline and alive(), f"{path} has {lines_in(path)} of {n} lines"
        time.sleep(0.02)


@pytest.fixture
def harness(tmp_path):
    """``harness(stage)`` -> a started-on-demand stage_harness.Harness, closed after the test."""
    from .stage_harness import Harness

    made = []

    def make(stage):
        made.append(Harness(tmp_path, stage))
        return made[-1]

    yield make
    for h in made:
        h.close()
