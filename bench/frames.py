"""Input sets for `step` (and the baseline): the same frames for every backend in a run.

Each set is a dict name -> float32 NumPy array with the step contract's names and static shapes
(engine/spec.py), batch 1. Sources:
- ``synthavs``: rendered scenes and their audio (numpy + OpenCV), so inputs look like a stream;
- ``random``: uniform image, noisy audio (NumPy only: what bench/gpu.py uses, no OpenCV there);
- ``auto``: synthavs when importable, else random.
Rings are filled with small random texts and partly valid, so sets differ everywhere.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from engine import spec


def shapes(config) -> dict[str, tuple[int, ...]]:
    """Static step input shapes for a resolved ICFConfig (the contract is engine.spec's)."""
    return {name: shape for name, (shape, _) in spec.input_specs(config.to_dict()).items()}


def _rings(rng: np.random.Generator, shp: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    out = {}
    for ring, valid in (("frame_ring", "frame_valid"), ("segment_ring", "segment_valid")):
        n = shp[valid][1]
        filled = int(rng.integers(0, n + 1))
        v = np.zeros(shp[valid], np.float32)
        if filled:
            v[:, n - filled :] = 1.0  # rings are ordered oldest -> newest: the newest slots fill first
        out[ring] = (0.1 * rng.standard_normal(shp[ring])).astype(np.float32)
        out[valid] = v
    return out


def random_sets(config, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shp = shapes(config)
    return [
        {
            "image": rng.random(shp["image"], dtype=np.float32),
            "audio": np.clip(0.3 * rng.standard_normal(shp["audio"]), -1, 1).astype(np.float32),
            **_rings(rng, shp),
        }
        for _ in range(n)
    ]


def synthavs_sets(config, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    from synthavs import SceneConfig, SceneGenerator

    h, w = config.image_size
    gen = SceneGenerator(SceneConfig(width=w, height=h, mode="mixed", seed=seed))
    rng = np.random.default_rng(seed)
    shp = shapes(config)
    sets = []
    for frame in gen.stream(seconds=None):  # endless: stops once n frames are kept
        # every 7th frame, so consecutive sets differ visibly (and cross clip boundaries)
        if frame.index % 7:
            continue
        end = frame.time_s
        audio = gen.audio_between(end - spec.AUDIO_SAMPLES / spec.SAMPLE_RATE, end)[-spec.AUDIO_SAMPLES:]
        sets.append(
            {
                "image": np.ascontiguousarray(frame.image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0,
                "audio": audio.reshape(shp["audio"]).astype(np.float32),
                **_rings(rng, shp),
            }
        )
        if len(sets) == n:
            return sets
    return sets


def input_sets(config, n: int, *, source: str = "auto", seed: int = 0) -> tuple[list[dict[str, np.ndarray]], str]:
    """(n input sets, the source actually used)."""
    if source == "auto":
        source = "synthavs" if importlib.util.find_spec("synthavs") and importlib.util.find_spec("cv2") else "random"
    if source == "synthavs":
        return synthavs_sets(config, n, seed), source
    if source == "random":
        return random_sets(config, n, seed), source
    raise ValueError(f"unknown input source '{source}'; use auto, synthavs or random")
