"""SynthAVS: a synthetic audio-visual segmentation benchmark with a bias knob.

Scenes of textured shapes (one look per class) that move, scale and occlude, each class with its
own sound; which object sounds changes per 1 s segment. Modes mimic AVSBench S4 (single), MS3
(multi) and AVSS (semantic), plus silence / off-screen sounds (empty masks) and a
bias-conflicting split where the salient object is silent and a less salient one sounds.

Imports only numpy and OpenCV (PyAV lazily, for MP4 writing): the stream uses it live.

    from synthavs import SceneConfig, SceneGenerator, CLASS_NAMES
    gen = SceneGenerator(SceneConfig(width=640, height=480, mode="single", seed=0))
    clip = gen.clip(0, seconds=5)          # frames, audio, masks, semantic, sounding
    for frame in gen.stream(seconds=None): # endless live frames; audio via gen.audio_between
        ...
"""

from .config import CLASS_NAMES, MODES, SAMPLE_RATE, SceneConfig
from .scene import Clip, Frame, SceneGenerator, ScenePlan, audio_window

__all__ = [
    "CLASS_NAMES",
    "MODES",
    "SAMPLE_RATE",
    "SceneConfig",
    "SceneGenerator",
    "ScenePlan",
    "Clip",
    "Frame",
    "audio_window",
]
