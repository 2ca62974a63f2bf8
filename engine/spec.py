"""The artifact contract: tensor names, sidecar schema, integrity checks.

Everything a runtime needs to use an exported artifact lives in its sidecar JSON (same stem,
``.json``), so loading an ``.onnx``, ``.plan`` or ``.pt2`` (AOTInductor) needs neither ``model/`` nor ``training/``.
This module imports only the standard library and NumPy (``onnx`` lazily, for graph checks).

Tensor contract of ``step`` (B = 1, static shapes):
  inputs  image [1, 3, H, W] f32 RGB in [0, 1] | audio [1, 15600] f32 16 kHz |
          frame_ring [1, Nf, D] | frame_valid [1, Nf] | segment_ring [1, Ns, D] | segment_valid [1, Ns]
  outputs mask_logits [1, C, H, W] (C = 1 binary, K + 1 semantic) | frame_text [1, D] |
          segment_text [1, D] | concept_logits [1, K]
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAMES = ("image", "audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid")
OUTPUT_NAMES = ("mask_logits", "frame_text", "segment_text", "concept_logits")
LOGIT_NAMES = ("mask_logits", "concept_logits")
SIDECAR_FORMAT = "icf-engine/1"
# One VGGish window (400 + 95 * 160 samples at 16 kHz); equals model.AUDIO_SAMPLES (a test pins it)
# but is repeated here so that reading an artifact never imports torch or model/.
AUDIO_SAMPLES = 15_600
SAMPLE_RATE = 16_000
PIXEL_DESCRIPTION = "RGB float32 in [0,1], NCHW, mean/std applied inside the graph"

REQUIRED_KEYS = ("format", "kind", "model", "concepts", "inputs", "outputs", "pixel_normalisation", "tools")
KIND_KEYS = {"onnx": ("onnx",), "tensorrt-plan": ("tensorrt",), "torch-tensorrt": ("torch_tensorrt",), "checkpoint": (),
             "aotinductor": ("aotinductor", "checkpoint")}

Specs = dict[str, tuple[tuple[int, ...], np.dtype]]


class ArtifactError(ValueError):
    """An artifact or its sidecar is missing, tampered with, or does not fit this runtime."""


class DeviceUnavailable(RuntimeError, ValueError):
    """The device asked for is not here (e.g. cuda on a CPU-only torch): a user error, reported
    without a traceback (a RuntimeError for callers that already catch that)."""


DIGEST_KEY = "sidecar_sha256"  # sha256 of the canonical sidecar without this key (see sidecar_digest)
DTYPE_NAMES = ("float32", "float16", "int64", "int32", "uint8", "bool")


def sidecar_digest(doc: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of a sidecar (sorted keys, no spaces, ASCII), without its own
    digest: concept names, pixel normalisation, I/O and tool versions are all covered, so an
    edited sidecar is refused like an edited artifact."""
    body = json.loads(json.dumps({k: v for k, v in doc.items() if k != DIGEST_KEY}))
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def _identity(path: str | Path) -> tuple:
    """What changes whenever a file's bytes do: inode, size, mtime and ctime (ctime cannot be set back
    by a user, so a rewrite that restores the mtime still counts as a new version)."""
    st = os.stat(path)
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_SHA256: dict[tuple, str] = {}  # file version -> sha256: a resolved artifact is hashed once per process
_SIDECARS: dict[tuple, dict[str, Any]] = {}  # sidecar file version -> checked document


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per process per file version (see _identity)."""
    key = _identity(path)
    if key not in _SHA256:
        if len(_SHA256) > 256:
            _SHA256.clear()
        _SHA256[key] = _hash_file(path)
    return _SHA256[key]


def _hash_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tool_versions(*extra: str) -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (missing ones are left out)."""
    out = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "tensorrt", "torch_tensorrt", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def io_from_config(config: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The static step I/O for a resolved ICF config dict (``ICFConfig.to_dict()``)."""
    h, w = (int(v) for v in config["image_size"])
    d, nf, ns = int(config["width"]), int(config["frame_ring"]), int(config["segment_ring"])
    k = len(config["concepts"])
    c = k + 1 if config.get("semantic") else 1
    shapes_in = [(1, 3, h, w), (1, AUDIO_SAMPLES), (1, nf, d), (1, nf), (1, ns, d), (1, ns)]
    shapes_out = [(1, c, h, w), (1, d), (1, d), (1, k)]
    inputs = [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in zip(INPUT_NAMES, shapes_in)]
    outputs = [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in zip(OUTPUT_NAMES, shapes_out)]
    return inputs, outputs


def with_batch(sidecar: dict[str, Any], batch: int) -> dict[str, Any]:
    """A copy of ``sidecar`` whose step I/O has first dim ``batch`` (every row an independent stream;
    static shapes, one artifact or capture per batch size: engine/batching.py)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, not {batch!r}")
    doc = copy.deepcopy(sidecar)
    for entry in (*doc["inputs"], *doc["outputs"]):
        entry["shape"][0] = batch
    if batch != 1:
        doc["batch"] = batch
    else:
        doc.pop("batch", None)
    return doc


def specs_from(entries: list[dict]) -> Specs:
    return {e["name"]: (tuple(int(v) for v in e["shape"]), np.dtype(e["dtype"])) for e in entries}


def input_specs(config: dict[str, Any]) -> Specs:
    """{name: (shape, dtype)} of the step inputs for a resolved config dict (``ICFConfig.to_dict()``)."""
    return specs_from(io_from_config(config)[0])


def zeros(specs: Specs) -> dict[str, np.ndarray]:
    """Zeros of every spec: for inputs, the state at stream start (empty rings, nothing valid)."""
    return {name: np.zeros(shape, dtype) for name, (shape, dtype) in specs.items()}


def pixel_normalisation(mean: list[float], std: list[float]) -> dict[str, Any]:
    return {
        "description": PIXEL_DESCRIPTION,
        "colour": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "range": [0.0, 1.0],
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "applied": "inside the graph: (image - mean) / std",
    }


def base_sidecar(kind: str, config: dict[str, Any], mean: list[float], std: list[float]) -> dict[str, Any]:
    """The part of every sidecar that describes the network (kind-specific keys are added by callers)."""
    inputs, outputs = io_from_config(config)
    return {
        "format": SIDECAR_FORMAT,
        "kind": kind,
        "model": {"name": config["name"], "config": config},
        "concepts": list(config["concepts"]),
        "inputs": inputs,
        "outputs": outputs,
        "pixel_normalisation": pixel_normalisation(mean, std),
        "audio": {"sample_rate": SAMPLE_RATE, "samples": AUDIO_SAMPLES, "range": [-1.0, 1.0]},
        "state": {"frame_ring": int(config["frame_ring"]), "segment_ring": int(config["segment_ring"]), "width": int(config["width"]),
                  "frame_ring_rate": int(config.get("frame_ring_rate", 1))},
        "tools": tool_versions(),
    }


def frame_ring_rate(sidecar: dict[str, Any]) -> int:
    """Frame-ring entries per second of stream the model was trained with (the stream's ring clock,
    see model/context.py): the sidecar's state, else its model config; artifacts written before
    the field existed mean 1 (their models were trained one frame per segment)."""
    state = sidecar.get("state") if isinstance(sidecar.get("state"), dict) else {}
    model = sidecar.get("model") if isinstance(sidecar.get("model"), dict) else {}
    config = model.get("config") if isinstance(model.get("config"), dict) else {}
    rate = state.get("frame_ring_rate", config.get("frame_ring_rate", 1))
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 1000:
        raise ArtifactError(f"sidecar frame_ring_rate {rate!r} must be a whole number of frame-ring entries per second "
                            f"in 1..1000; re-export the artifact")
    return rate


def write_sidecar(artifact: str | Path, doc: dict[str, Any]) -> Path:
    path = sidecar_path(artifact)
    doc = dict(doc)
    doc[DIGEST_KEY] = sidecar_digest(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def read_sidecar(artifact: str | Path) -> dict[str, Any]:
    """Reads and checks the sidecar's structure (not yet the artifact's hash; see verify_*); once per
    process per sidecar version, each caller getting its own copy."""
    path = sidecar_path(artifact)
    key = _identity(path) if path.is_file() else None
    if key not in _SIDECARS:
        doc = _read_sidecar(artifact, path)
        if len(_SIDECARS) > 256:
            _SIDECARS.clear()
        _SIDECARS[key] = doc
    return copy.deepcopy(_SIDECARS[key])


def _read_sidecar(artifact: str | Path, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(
            f"{artifact} has no sidecar {path.name}; artifacts are only usable with the JSON written beside them. "
            f"Re-create it with `icf-engine export` (ONNX) or `icf-engine build` (TensorRT)."
        )
    doc = _load_bounded_json(path)
    if not isinstance(doc, dict):
        raise ArtifactError(f"sidecar {path} holds a JSON {type(doc).__name__}, not an object; re-export the artifact")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    kind = doc.get("kind")
    if kind not in KIND_KEYS:
        raise ArtifactError(f"sidecar {path} has unknown kind {kind!r}; expected one of {sorted(KIND_KEYS)}")
    missing += [k for k in KIND_KEYS[kind] if k not in doc]
    if missing:
        raise ArtifactError(f"sidecar {path} is missing required key(s) {missing}; it is incomplete or from another tool; re-export")
    if not isinstance(doc[KIND_KEYS[kind][0]] if KIND_KEYS[kind] else {}, dict):
        raise ArtifactError(f"sidecar {path}: '{KIND_KEYS[kind][0]}' is not an object; re-export")
    if doc["format"] != SIDECAR_FORMAT:
        raise ArtifactError(f"sidecar {path} has format {doc['format']!r}, this runtime reads {SIDECAR_FORMAT!r}; re-export")
    for side in ("inputs", "outputs"):
        _check_entries(path, side, doc[side])
    if not isinstance(doc["concepts"], list) or not all(isinstance(c, str) for c in doc["concepts"]):
        raise ArtifactError(f"sidecar {path}: 'concepts' must be a list of names; re-export")
    names_in = [e.get("name") for e in doc["inputs"]]
    names_out = [e.get("name") for e in doc["outputs"]]
    if tuple(names_in) != INPUT_NAMES or tuple(names_out) != OUTPUT_NAMES:
        raise ArtifactError(
            f"sidecar {path} declares inputs {names_in} / outputs {names_out}; the step contract is "
            f"{list(INPUT_NAMES)} -> {list(OUTPUT_NAMES)}"
        )
    recorded = doc.get(DIGEST_KEY)
    if recorded is not None and recorded != sidecar_digest(doc):
        raise ArtifactError(
            f"sidecar {path} was edited after export: its content digest does not match the one recorded in it "
            f"(concept names, pixel normalisation or I/O may have been changed). Re-export the artifact."
        )
    return doc


MAX_SIDECAR_BYTES = 1 << 20  # a real sidecar is a few kB; a 300 MB one cost 1.2-1.8 GB of RSS to read
MAX_SIDECAR_DEPTH = 32  # a real one nests 4 deep; 200,000 deep ended in a RecursionError traceback
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def _load_bounded_json(path: Path) -> Any:
    """The sidecar's JSON, its text checked before parsing: at most MAX_SIDECAR_BYTES read, brackets
    nested at most MAX_SIDECAR_DEPTH deep (so json, deepcopy and the digest never recurse far),
    valid UTF-8 JSON. Every failure is an ArtifactError naming the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"cannot read sidecar {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_SIDECAR_BYTES:
        raise ArtifactError(f"sidecar {path} is {os.path.getsize(path) / 2**20:.1f} MiB, over the {MAX_SIDECAR_BYTES >> 20} MiB "
                            f"limit for a sidecar (a real one is a few kB); it is not a sidecar: re-export the artifact")
    depth = 0
    for token in _JSON_TOKENS.finditer(raw):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > MAX_SIDECAR_DEPTH:
                raise ArtifactError(f"sidecar {path} is nested deeper than {MAX_SIDECAR_DEPTH} levels; it is not a sidecar: "
                                    "re-export the artifact")
        elif char in (b"]", b"}"):
            depth -= 1
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"sidecar {path} is not valid JSON ({str(exc)[:200]}); re-export the artifact") from exc


def _check_entries(path: Path, side: str, entries: Any) -> None:
    """Every I/O entry is {"name": str, "shape": [positive ints], "dtype": known}: a bad one is
    named with its file, never a bare int() error."""
    if not isinstance(entries, list):
        raise ArtifactError(f"sidecar {path}: '{side}' must be a list of tensor entries; re-export")
    for e in entries:
        ok = isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("shape"), list) \
            and all(type(d) is int and d > 0 for d in e["shape"]) and e.get("dtype") in DTYPE_NAMES
        if not ok:
            raise ArtifactError(f"sidecar {path}: {side} entry {json.dumps(e)[:120]} needs a name, a shape of positive "
                                f"integers and a dtype in {list(DTYPE_NAMES)}; re-export")


def verify_sha(artifact: str | Path, expected: str, what: str) -> str:
    actual = file_sha256(artifact)
    if actual != expected:
        raise ArtifactError(
            f"{what} {artifact} does not match its sidecar: sha256 {actual[:16]}... but the sidecar records "
            f"{expected[:16]}...; the file was modified or the sidecar belongs to another export. Re-export it."
        )
    return actual


def onnx_graph_io(path: str | Path) -> tuple[Specs, Specs]:
    """Input / output (shape, dtype) from the ONNX graph itself (weights are not needed for this)."""
    import onnx
    from onnx import helper

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: a file that is not ONNX
        raise onnx_unreadable(path, exc) from exc
    inits = {i.name for i in graph.initializer}

    def one(v) -> tuple[tuple[int, ...], np.dtype]:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return dims, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))

    ins = {v.name: one(v) for v in graph.input if v.name not in inits}
    outs = {v.name: one(v) for v in graph.output}
    return ins, outs


def onnx_unreadable(path: str | Path, exc: BaseException) -> ArtifactError:
    """The one message for an ONNX file whose bytes match its sidecar yet do not parse (the sidecar
    was recomputed for a corrupt or foreign file): the first line of the parser's complaint."""
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ArtifactError(f"ONNX file {path} cannot be read as ONNX ({why}); its sidecar was recomputed for a damaged or "
                         f"foreign file: re-export it with `icf-engine export`")


def verify_onnx(path: str | Path, doc: dict[str, Any]) -> None:
    """Refuses an ONNX file whose bytes or I/O disagree with its sidecar (the graph is parsed once per
    process per file version and declared I/O)."""
    verify_sha(path, doc["onnx"]["sha256"], "ONNX file")
    key = (_identity(path), json.dumps([doc["inputs"], doc["outputs"]], sort_keys=True))
    if key in _GRAPH_IO_OK:
        return
    _check_graph_io(path, doc)
    _GRAPH_IO_OK.add(key)


_GRAPH_IO_OK: set[tuple] = set()


def _check_graph_io(path: str | Path, doc: dict[str, Any]) -> None:
    check_graph_io(path, *onnx_graph_io(path), doc)


def check_graph_io(path: str | Path, ins: Specs, outs: Specs, doc: dict[str, Any]) -> None:
    """The graph's I/O (from the ONNX file, or from an ONNX Runtime session that already parsed it)
    against its sidecar's."""
    for side, graph, declared in (("input", ins, doc["inputs"]), ("output", outs, doc["outputs"])):
        want = specs_from(declared)
        if list(graph) != list(want):
            raise ArtifactError(f"ONNX {path} has {side}s {list(graph)}, its sidecar declares {list(want)}; re-export")
        for name, (shape, dtype) in want.items():
            if graph[name] != (shape, dtype):
                raise ArtifactError(
                    f"ONNX {path}: {side} '{name}' is {list(graph[name][0])} {graph[name][1]} in the graph but "
                    f"{list(shape)} {dtype} in the sidecar; the sidecar does not belong to this graph. Re-export."
                )


# kind -> (sidecar section, its sha256 key, what the file is called in messages, how to make one)
ARTIFACT_KINDS = {
    "onnx": ("onnx", "sha256", "ONNX file", "`icf-engine export`"),
    "tensorrt-plan": ("tensorrt", "plan_sha256", "TensorRT plan", "`icf-engine build`"),
    "torch-tensorrt": ("torch_tensorrt", "program_sha256", "torch-tensorrt program", "`icf-engine build --via torch-tensorrt`"),
    "aotinductor": ("aotinductor", "sha256", "AOTInductor package", "`icf-engine build --via aotinductor`"),
}


def open_artifact(artifact: str | Path, kind: str, backend: str, *, verify: bool = True, graph_io: bool = True) -> dict[str, Any]:
    """The preamble every backend runs, in one place: the sidecar (read and checked), the kind this
    backend runs, the artifact's bytes against the recorded sha256 (an .onnx also its graph I/O).
    Reading and hashing happen once per process per file version, so an artifact that
    engine.cache.resolve already verified is handed to the backend without a second pass.
    ``graph_io=False``: the caller checks an .onnx graph's I/O itself (ONNX Runtime's session has
    parsed the graph anyway; parsing it again here would also import onnx, ~0.3-2 s)."""
    doc = read_sidecar(artifact)
    section, sha_key, what, how = ARTIFACT_KINDS[kind]
    if doc["kind"] != kind:
        raise ArtifactError(f"{artifact} is a {doc['kind']} artifact; the {backend} backend runs {what}s made by {how}")
    if verify:
        if kind == "onnx" and graph_io:
            verify_onnx(artifact, doc)
        else:
            verify_sha(artifact, doc[section][sha_key], what)
    return doc


def verify_artifact(path: str | Path, doc: dict[str, Any]) -> None:
    """Refuses an artifact whose bytes (and, for ONNX, I/O) disagree with its sidecar ``doc``."""
    if doc["kind"] == "onnx":
        verify_onnx(path, doc)
    else:
        section, key, what, _ = ARTIFACT_KINDS[doc["kind"]]
        verify_sha(path, doc[section][key], what)


def resolve_checkpoint(doc: dict[str, Any], artifact: str | Path) -> Path | None:
    """The checkpoint an artifact was exported from, verified by sha256; None if none was recorded.

    The path relative to the sidecar is tried first so a moved export folder keeps working.
    """
    ckpt = doc.get("checkpoint")
    if not ckpt:
        return None
    base = sidecar_path(artifact).parent
    candidates = [base / ckpt["relative_path"]] if ckpt.get("relative_path") else []
    candidates.append(Path(ckpt["path"]))
    for cand in candidates:
        if cand.is_file():
            verify_sha(cand, ckpt["sha256"], "checkpoint")
            return cand
    raise ArtifactError(
        f"{artifact} was exported from checkpoint {ckpt['path']}, which is not there any more "
        f"(tried {[str(c) for c in candidates]}); pass the checkpoint explicitly (--weights) or re-export"
    )
