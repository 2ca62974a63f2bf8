"""The layering as a checked contract (read from the source with ast, lazy imports included):

- model/ imports nothing of ours; training/ never imports engine/, stream/ or bench/;
- stream/ never imports training/, model/ or bench/; engine/ never imports training/, stream/ or bench/;
- synthavs/ (the scene generators: numpy, OpenCV, PyAV) imports nothing of ours;
- icfcli/ (the shared command-line language) and weights/ (package data) import nothing of ours, and
  icfcli/ only the standard library, so every package's CLI may use it;
- no package's modules import each other in a cycle, nor borrow each other's private names;
- the ONNX Runtime path (engine.runtime + an .onnx) runs with torch, model/ and training/ blocked.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("model", "training", "engine", "stream", "bench", "synthavs", "icfcli", "weights")
FORBIDDEN = {
    "icfcli": set(OURS) - {"icfcli"},
    "weights": set(OURS) - {"weights"},
    "model": {"training", "engine", "stream", "bench", "synthavs"},
    "training": {"engine", "stream", "bench"},
    "stream": {"training", "model", "bench"},
    "engine": {"training", "stream", "bench"},
    "synthavs": {"model", "training", "engine", "stream", "bench"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved), at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import cache`
    return found


def our_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def violations(package: str, forbidden: set[str]) -> list[str]:
    bad = []
    for path in our_files(package):
        for imported in sorted(imports_of(path)):
            if imported.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_may(package):
    assert our_files(package), f"no sources found for {package}"
    assert violations(package, FORBIDDEN[package]) == []


def test_icfcli_needs_only_the_standard_library():
    outside = sorted({m for path in our_files("icfcli") for m in imports_of(path)
                      if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "icfcli"})
    assert outside == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def module_graph(package: str) -> dict[str, set[str]]:
    """Modules of ``package`` -> the modules of the same package they import (packages' own
    __init__ re-exports left out: importing ``pkg.mod`` always runs ``pkg/__init__`` first)."""
    modules = {module_name(p): p for p in our_files(package)}
    graph = {}
    for name, path in modules.items():
        targets = {m for m in imports_of(path) if m in modules and m != name and not path.name == "__init__.py"}
        graph[name] = {m for m in targets if modules[m].name != "__init__.py"}
    return graph


@pytest.mark.parametrize("package", ["engine", "stream", "bench", "training", "model", "synthavs"])
def test_no_import_cycles(package):
    assert find_cycle(module_graph(package)) is None


def private_imports(package: str) -> list[str]:
    """``from x import _name`` across modules: a private name is the business of its own module."""
    bad = []
    for path in our_files(package):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [f"{path.relative_to(ROOT)} imports {a.name} from {node.module}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


@pytest.mark.parametrize("package", ["engine", "stream", "bench", "training", "model", "synthavs"])
def test_no_module_borrows_private_names(package):
    assert private_imports(package) == []


def test_the_checks_can_fail(tmp_path):
    """The rules above are not vacuous: a known violation and a known cycle are found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    probe = ROOT / "stream" / "_layering_probe.py"
    probe.write_text("def f():\n    from model import build_model\n    from ..training import trainer\n    from .pipeline import _x\n")
    try:
        assert violations("stream", FORBIDDEN["stream"]) == [
            "stream/_layering_probe.py imports model", "stream/_layering_probe.py imports model.build_model",
            "stream/_layering_probe.py imports training", "stream/_layering_probe.py imports training.trainer",
        ]
        assert private_imports("stream") == ["stream/_layering_probe.py imports _x from pipeline"]
    finally:
        probe.unlink()


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "model", "training"):
            raise ImportError(f"{name} is blocked: the ONNX Runtime path must not need it")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def tiny_onnx() -> Path:
    """icf-tiny exported once through the engine cache (shared with the stream tests)."""
    from engine import cache

    return cache.onnx_for_model("icf-tiny", root=ROOT / "out" / "test-engine")


def test_onnx_runtime_path_runs_without_torch(tiny_onnx):
    code = BLOCKER + (
        "from engine import runtime\n"
        "from engine.state import advance\n"
        f"b = runtime.load({str(tiny_onnx)!r}, backend='onnxruntime')\n"
        "x = b.blank_inputs()\n"
        "out = b.infer(x)\n"
        "state = advance({k: x[k] for k in ('frame_ring', 'frame_valid', 'segment_ring', 'segment_valid')},\n"
        "                out['frame_text'], out['segment_text'], close_segment=True)\n"
        "b.infer({**x, **state})\n"
        "assert 'torch' not in sys.modules\n"
        "print(b.info()['backend'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "onnxruntime"


def test_blocker_blocks_torch():
    out = subprocess.run([sys.executable, "-c", BLOCKER + "import torch\n"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "torch is blocked" in out.stderr


# stream/'s rooms (docs/ARCHITECTURE.md): the wire knows no stage, stages know no graph, the graph knows no CLI.
# stream.log (leaf helpers) sits below them all. The live view's feed (stream/view/feed.py: the sink's never-waiting
# PUB, owner of that wire format) is part of the wire; the view's server is a consumer beside the graph.
STREAM_MAY_NOT = {
    "log": {"wire", "stages", "view", "graph", "cli", "api"},
    "wire": {"stages", "view", "graph", "cli", "api"},
    "stages": {"view", "graph", "cli", "api"},
    "view": {"graph", "cli", "api"},
    "graph": {"view", "cli", "api"},
    "cli": {"api"},
}


def stream_room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "stream" or len(parts) < 2:
        return None
    if parts[1] == "view" and len(parts) > 2 and parts[2] == "feed":
        return "wire"
    return parts[1] if parts[1] in STREAM_MAY_NOT else None


def test_stream_rooms_import_only_downwards():
    rooms = {p.name for p in (ROOT / "stream").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms == {"wire", "view", "stages", "graph", "cli"}
    assert room_violations() == []


def test_the_room_check_can_fail():
    probe = ROOT / "stream" / "wire" / "_room_probe.py"
    probe.write_text("def f():\n    from stream.stages import sink\n    from ..graph.pipeline import run_pipeline\n")
    try:
        assert room_violations() == ["stream/wire/_room_probe.py (wire) imports stream.graph.pipeline",
                                     "stream/wire/_room_probe.py (wire) imports stream.graph.pipeline.run_pipeline",
                                     "stream/wire/_room_probe.py (wire) imports stream.stages",
                                     "stream/wire/_room_probe.py (wire) imports stream.stages.sink"]
    finally:
        probe.unlink()


def room_violations() -> list[str]:
    bad = []
    for path in our_files("stream"):
        room = stream_room(module_name(path))
        if room is None:
            continue
        for imported in sorted(imports_of(path)):
            if stream_room(imported) in STREAM_MAY_NOT[room]:
                bad.append(f"{path.relative_to(ROOT)} ({room}) imports {imported}")
    return bad
