"""INT8 for the CPU: ONNX Runtime static QDQ quantisation of an fp32 export, kept only if it passes.

    icf-engine build --via onnxruntime --precision int8 --weights CKPT            # into the engine cache
    icf-engine build --via onnxruntime --precision int8 --onnx FILE --out DIR

Calibration: step inputs from a SynthAVS stream (frames and the audio window that ends at each
frame, the data the shipped weights were trained on) with the text rings rolled by the fp32 model
itself (engine.state's rule, the stream's clock), so activations are ranged on what the model meets
live. Per-channel int8 weights, uint8 activations, MinMax ranges.
The result is kept only if it passes the parity rule against the fp32 export on held-out frames
(another SynthAVS seed): pooled mask IoU >= INT8_IOU_MIN. The parts that break it stay fp32: the
search tries SCOPES in order (whole graph but the audio front end, then smaller parts) and keeps the
first that passes; the sidecar records the rule, the IoU, the frames and what stayed fp32, and
engine.runtime's ``auto`` runs the int8 file on the CPU only when it records a pass.
Measured on icf-lite (docs/results/cpu_int8.md): the log-mel front end (a Conv on raw audio) and the
attention / matcher blocks (masked softmax inputs) break it outright (mask IoU 0).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import spec, state
from .tolerance import IoU

log = logging.getLogger("icf.engine")

INT8_IOU_MIN = 0.98  # pooled mask IoU vs the fp32 export on held-out frames (issue 25: stricter than check's 0.95)
CALIB_SEED, HELDOUT_SEED = 101, 202  # SynthAVS stream seeds: calibration and held-out frames never overlap
SECTION = "int8"
# (name, node-name prefixes quantised; empty = every node, minus ``skip``): the search order, largest first.
SCOPES = (
    ("all but the audio front end", (), ("/logmel/",)),
    ("all but the audio path", (), ("/logmel/", "/audio_encoder/")),
    ("image backbone, projections and decoder", ("/backbone/", "/project", "/decoder/"), ()),
    ("image backbone", ("/backbone/",), ()),
)


def step_sequence(run_fp32, specs: spec.Specs, n: int, seed: int, ring_rate: int = 1, every: int = 3,
                  masks: list | None = None) -> Iterator[dict[str, np.ndarray]]:
    """``n`` step inputs from a SynthAVS stream: every ``every``-th frame of a stream that is stepped
    frame by frame through ``run_fp32`` (inputs -> outputs) so the rings hold what the model wrote.
    ``masks``: a list that gets each yielded frame's ground-truth mask (for accuracy, not parity)."""
    from synthavs import SceneConfig, SceneGenerator

    _, _, h, w = specs["image"][0]
    gen = SceneGenerator(SceneConfig(width=w, height=h, mode="mixed", seed=seed))
    fps = gen.config.fps
    rings = state.initial(1, specs["frame_ring"][0][2], specs["frame_ring"][0][1], specs["segment_ring"][0][1])
    samples = specs["audio"][0][1]
    kept = 0
    for frame in gen.stream(seconds=None):
        audio = gen.audio_between(frame.time_s - samples / spec.SAMPLE_RATE, frame.time_s)[-samples:]
        image = np.empty(specs["image"][0], np.float32)
        np.multiply(frame.image.transpose(2, 0, 1), np.float32(1 / 255), out=image[0])
        inputs = {"image": image, "audio": np.ascontiguousarray(audio.reshape(specs["audio"][0]), np.float32),
                  **{k: np.ascontiguousarray(v) for k, v in rings.items()}}
        out = run_fp32(inputs)
        if frame.index % every == 0:
            if masks is not None:
                masks.append(frame.mask)
            yield inputs
            kept += 1
            if kept == n:
                return
        # the stream's clock: a frame that ends its 1/ring_rate s slot pushes; one that ends its second closes a segment
        i = frame.index
        push = (i + 1) * ring_rate // fps > i * ring_rate // fps
        close = (i + 1) // fps > i // fps
        rings = state.advance(rings, out["frame_text"], out["segment_text"], close_segment=close, push_frame=push)


def _session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _runner(session):
    return lambda inputs: dict(zip(spec.OUTPUT_NAMES, session.run(list(spec.OUTPUT_NAMES), inputs)))


def parity(fp32: Path, int8: Path, frames: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Pooled mask IoU of the int8 graph against the fp32 one on ``frames`` (same inputs both sides)."""
    ref, got = _runner(_session(fp32)), _runner(_session(int8))
    iou = IoU()
    worst_concept = 0.0
    for x in frames:
        a, b = ref(x), got(x)
        iou.add(a["mask_logits"], b["mask_logits"])
        worst_concept = max(worst_concept, float(np.abs(a["concept_logits"] - b["concept_logits"]).max()))
    return {"pooled_mask_iou": round(iou.pooled(), 5), "worst_frame_iou": round(min(iou.frames), 5),
            "max_abs_concept_logit_diff": round(worst_concept, 4), "frames": len(frames)}


def _quantize(fp32: Path, out: Path, calib: list[dict[str, np.ndarray]], scope: tuple[str, tuple[str, ...], tuple[str, ...]]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib)

        def get_next(self):
            return next(self.items, None)

    _, only, skip = scope
    names = [node.name for node in onnx.load(str(fp32), load_external_data=False).graph.node]
    kept = [n for n in names if (not only or n.startswith(only)) and not n.startswith(skip or ("\0",))]
    # calibration writes an augmented model into the working folder: run it in a private one
    with tempfile.TemporaryDirectory() as tmp, _cwd(tmp):
        quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=kept,
                        calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibTensorRangeSymmetric": False},
                        calibration_providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _cwd(folder: str) -> Iterator[None]:
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def build_int8(fp32: str | Path, out_dir: str | Path, *, calib_frames: int = 48, heldout_frames: int = 48,
               scopes: tuple = SCOPES) -> tuple[Path, dict[str, Any]]:
    """Quantises ``fp32`` (an .onnx with sidecar) into ``out_dir/<stem>-int8.onnx`` (+ sidecar), trying
    ``scopes`` in order. Returns (path, int8 record). A result that fails the rule is not written:
    Int8Failed says so with every attempt's numbers (``.attempts``)."""
    fp32 = Path(fp32)
    doc = spec.open_artifact(fp32, "onnx", "onnxruntime")
    if doc["onnx"].get("precision", "fp32") != "fp32" or doc["inputs"][0]["shape"][0] != 1:
        raise spec.ArtifactError(f"{fp32.name}: int8 is made from a batch-1 fp32 export")
    specs = spec.specs_from(doc["inputs"])
    run = _runner(_session(fp32))
    rate = spec.frame_ring_rate(doc)
    calib = list(step_sequence(run, specs, calib_frames, CALIB_SEED, rate))
    held = list(step_sequence(run, specs, heldout_frames, HELDOUT_SEED, rate))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{fp32.stem}-int8.onnx"
    attempts = []
    for scope in scopes:
        tmp = (out_dir / f".{fp32.stem}-int8-{os.getpid()}.onnx").resolve()
        try:
            _quantize(fp32, tmp, calib, scope)
            result = parity(fp32, tmp, held)
            attempts.append({"scope": scope[0], "quantised_prefixes": list(scope[1]), "kept_fp32_prefixes": list(scope[2]), **result})
            log.info("int8 of %s: pooled mask IoU %.4f", scope[0], result["pooled_mask_iou"])
            if result["pooled_mask_iou"] >= INT8_IOU_MIN:
                record = {"precision": "int8", "method": "ONNX Runtime static QDQ, per-channel int8 weights, uint8 activations, MinMax",
                          "calibration": {"data": "SynthAVS mixed stream + its audio, rings rolled by the fp32 model", "seed": CALIB_SEED,
                                          "frames": len(calib)},
                          "parity": {"rule": f"pooled mask IoU >= {INT8_IOU_MIN} vs the fp32 export", "heldout_seed": HELDOUT_SEED,
                                     "passed": True, **result},
                          "scope": scope[0], "attempts": attempts, "fp32_sha256": doc["onnx"]["sha256"]}
                sidecar = {**doc, "onnx": {**doc["onnx"], "sha256": spec.file_sha256(tmp), "precision": "int8", "fp32": fp32.name},
                           SECTION: record}
                sidecar.pop(spec.DIGEST_KEY, None)
                os.replace(tmp, final)
                spec.write_sidecar(final, sidecar)
                return final, record
        finally:
            tmp.unlink(missing_ok=True)
    tried = ", ".join(f"{a['scope']}: {a['pooled_mask_iou']}" for a in attempts)
    raise Int8Failed(f"int8 quantisation of {fp32.name} fails the parity rule (pooled mask IoU >= {INT8_IOU_MIN} on "
                     f"{len(held)} held-out SynthAVS frames) in every scope tried "
                     f"({tried}); the fp32 export stays the CPU artifact",
                     attempts)


class Int8Failed(spec.ArtifactError):
    """No int8 graph passed the parity rule; ``attempts`` holds the numbers of each scope tried."""

    def __init__(self, message: str, attempts: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.attempts = attempts


def passed_int8(path: str | Path) -> bool:
    """True if ``path`` is an int8 export whose sidecar records a passed parity check (and its bytes verify)."""
    try:
        doc = spec.open_artifact(path, "onnx", "onnxruntime", graph_io=False)
    except (spec.ArtifactError, OSError, KeyError):
        return False
    return bool((doc.get(SECTION) or {}).get("parity", {}).get("passed")) and doc["onnx"].get("precision") == "int8"
