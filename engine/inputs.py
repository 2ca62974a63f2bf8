"""Test, parity and calibration inputs for ``step``, in NumPy (no torch, no model/).

Three sources, all returning dicts name -> float32 array with the artifact's static shapes:
- ``random_inputs``: uniform image, noisy audio, random rings and validity (stress values);
- ``synthetic_sequence``: frames that look like a scene (smooth background, moving coloured
  shapes, tones with silent gaps) whose rings are rolled by a ``step`` function with the same
  rule the stream's text-context keeper uses, so ring contents are real model texts;
- ``calibration_inputs(spec)``: what INT8 calibration reads (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .spec import SAMPLE_RATE, Specs, zeros
from .state import advance

StepFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def random_inputs(specs: Specs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniform image in [0, 1], audio in [-1, 1], N(0, 1) rings with random validity."""
    out = {}
    for name, (shape, dtype) in specs.items():
        if name == "image":
            x = rng.random(shape)
        elif name == "audio":
            x = rng.uniform(-1.0, 1.0, shape)
        elif name.endswith("_valid"):
            x = (rng.random(shape) < 0.6).astype(np.float64)
        else:
            x = rng.standard_normal(shape)
        out[name] = np.ascontiguousarray(x, dtype=dtype)
    return out


def synthetic_frame(shape: tuple[int, ...], t: int, rng: np.random.Generator, objects: list[dict]) -> np.ndarray:
    """One RGB frame [1, 3, H, W] in [0, 1]: vertical-gradient background + textured moving ellipses."""
    _, _, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = objects[0]["sky"], objects[0]["ground"]
    frac = (yy / max(h - 1, 1))[None]
    img = top[:, None, None] * (1 - frac) + bottom[:, None, None] * frac
    for obj in objects:
        cy = obj["y"] + obj["vy"] * t
        cx = obj["x"] + obj["vx"] * t
        inside = ((yy - cy * h) / (obj["ry"] * h)) ** 2 + ((xx - cx * w) / (obj["rx"] * w)) ** 2 <= 1.0
        stripes = 0.08 * np.sin(xx * obj["freq"] + t * 0.3)
        img = np.where(inside[None], obj["colour"][:, None, None] + stripes[None], img)
    img = img + rng.normal(0.0, 0.02, img.shape)  # sensor noise
    return np.clip(img, 0.0, 1.0)[None].astype(np.float32)


def synthetic_audio(samples: int, t: int, rng: np.random.Generator, tone_hz: float, silent: bool) -> np.ndarray:
    """[1, samples] in [-1, 1]: a harmonic tone with an envelope plus noise, or near-silence."""
    if silent:
        return rng.normal(0.0, 1e-3, (1, samples)).astype(np.float32)
    n = np.arange(samples) / SAMPLE_RATE + t * 0.1
    tone = sum(np.sin(2 * np.pi * tone_hz * k * n) / k for k in (1, 2, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * n)
    x = 0.3 * tone * envelope + rng.normal(0.0, 0.02, samples)
    return np.clip(x, -1.0, 1.0)[None].astype(np.float32)


def _scene(rng: np.random.Generator) -> list[dict]:
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        objects.append(
            {
                "y": rng.uniform(0.3, 0.7), "x": rng.uniform(0.2, 0.8), "vy": rng.uniform(-0.01, 0.01),
                "vx": rng.uniform(-0.02, 0.02), "ry": rng.uniform(0.08, 0.25), "rx": rng.uniform(0.08, 0.25),
                "colour": rng.uniform(0.1, 0.95, 3), "freq": rng.uniform(0.1, 0.6),
                "sky": rng.uniform(0.4, 0.9, 3), "ground": rng.uniform(0.05, 0.5, 3),
            }
        )
    return objects


def synthetic_sequence(
    specs: Specs, n: int, rng: np.random.Generator, *, step: StepFn | None = None, frames_per_segment: int = 5
) -> Iterator[dict[str, np.ndarray]]:
    """n consecutive step inputs of one synthetic scene.

    With ``step`` the rings follow the keeper rule (ICF.md, "Streaming form"): after each frame its
    frame_text is pushed into the frame ring; every ``frames_per_segment`` frames the segment_text is
    pushed into the segment ring and the frame ring is cleared. Without ``step`` the rings stay
    empty (the state at stream start). Each yielded dict is a fresh copy, safe to keep.
    """
    objects = _scene(rng)
    tone = float(rng.uniform(110.0, 880.0))
    state = {k: v for k, v in zeros(specs).items() if k not in ("image", "audio")}
    samples = specs["audio"][0][1]
    for t in range(n):
        inputs = {
            "image": synthetic_frame(specs["image"][0], t, rng, objects),
            "audio": synthetic_audio(samples, t, rng, tone, silent=(t % 7 == 6)),  # silent gaps matter
            **{k: v.copy() for k, v in state.items()},
        }
        yield inputs
        if step is not None:
            out = step(inputs)
            state = advance(state, out["frame_text"], out["segment_text"], close_segment=(t + 1) % frames_per_segment == 0)


def calibration_inputs(spec: str, specs: Specs, n: int, *, seed: int = 0, step: StepFn | None = None) -> Iterator[dict[str, np.ndarray]]:
    """n input dicts for INT8 calibration or parity checks, from SPEC:

    - ``synthetic`` (or ``auto``, the default): built-in synthetic scenes, rings rolled with ``step`` when given;
    - ``random``: ``random_inputs``;
    - a ``.npz`` file or a folder of them: arrays named like the inputs, with a leading frame
      axis (e.g. recorded from the stream); cycled to n frames.
    """
    rng = np.random.default_rng(seed)
    if spec in ("auto", "synthetic"):
        return _synthetic_many(specs, n, rng, step)
    if spec == "random":
        return (random_inputs(specs, rng) for _ in range(n))
    path = Path(spec)
    if path.suffix == ".npz" or path.is_dir():
        return _take(_npz_frames(path, specs), n, specs)
    raise ValueError(f"unknown calibration data '{spec}'; use auto, synthetic, random, FILE.npz or a folder of .npz")


def _synthetic_many(specs: Specs, n: int, rng: np.random.Generator, step: StepFn | None) -> Iterator[dict[str, np.ndarray]]:
    # Several short scenes rather than one long one: calibration wants varied content.
    done = 0
    while done < n:
        length = min(n - done, 10)
        yield from synthetic_sequence(specs, length, rng, step=step, frames_per_segment=5)
        done += length


def _npz_frames(path: Path, specs: Specs) -> Iterator[dict[str, np.ndarray]]:
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"calibration folder {path} holds no .npz files")
    for file in files:
        with np.load(file) as data:
            missing = [k for k in specs if k not in data.files]
            if missing:
                raise ValueError(f"calibration file {file} lacks arrays {missing} (it has {data.files})")
            arrays = {k: data[k] for k in specs}
        frames = arrays["image"].shape[0]
        for i in range(frames):
            yield {k: v[i].reshape(specs[k][0]).astype(specs[k][1]) for k, v in arrays.items()}


def _take(source: Iterable[dict[str, np.ndarray]], n: int, specs: Specs) -> Iterator[dict[str, np.ndarray]]:
    """n frames from a recorded source, cycled when it holds fewer."""
    items = list(source)
    if not items:
        raise ValueError("calibration source holds no frames")
    for i in range(n):
        item = items[i % len(items)]
        yield {k: np.ascontiguousarray(np.asarray(item[k]).reshape(specs[k][0]), dtype=specs[k][1]) for k in specs}
