"""ICF network configuration: one frozen dataclass, every field commented.

The resolved config travels inside every checkpoint and export sidecar (``to_dict`` /
``from_dict``), so a weight file always says what network it belongs to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# VGGish constants (torchvggish vggish_params.py): 16 kHz, 25 ms window, 10 ms hop, 64 mel
# bands in 125-7500 Hz, log(mel + 0.01), 96 frames per example.
SAMPLE_RATE = 16_000
STFT_WINDOW = 400
STFT_HOP = 160
LOGMEL_FRAMES = 96
LOGMEL_BANDS = 64
# 96 STFT frames need 400 + 95 * 160 = 15,600 samples (0.975 s). VGGish's "0.96 s example" is the
# hop between examples (15,360 samples); each example actually reads 240 samples further. We take
# the exact VGGish window so the in-graph front end equals the reference definition.
AUDIO_SAMPLES = STFT_WINDOW + (LOGMEL_FRAMES - 1) * STFT_HOP


@dataclass(frozen=True)
class ICFConfig:
    """Everything needed to rebuild an ICF network. Shapes below use B batch, T frames."""

    name: str = "icf-tiny"  # registry name of the variant this config came from
    # --- visual encoder ---
    backbone: str = "tiny"  # one of model.backbones.BACKBONES: tiny, efficientnet_lite0, resnet18, resnet50
    pretrained: bool = False  # efficientnet_lite0: load the ImageNet weights shipped in its package
    backbone_weights: str = ""  # resnet18/50: path of a local torchvision-format checkpoint ("" = random)
    image_size: tuple[int, int] = (224, 224)  # (H, W) the graph takes; static for export
    width: int = 32  # D: width of every projected feature level, token and text vector
    # --- audio encoder ---
    audio_channels: tuple[int, ...] = (8, 16, 32, 32, 64, 64)  # VGGish conv widths (full: 64,128,256,256,512,512)
    audio_fc: tuple[int, ...] = (128, 128)  # VGGish fc widths before the 128-d embedding (full: 4096, 4096)
    audio_weights: str = ""  # path of a torchvggish-format state dict (full widths only; "" = train)
    # --- text bank (modality-shared space) ---
    bank: str = "synthavs"  # committed bank name in model/banks or a path to a bank .safetensors
    concepts: tuple[str, ...] = ()  # concept prompts, resolved from the bank by the builder (K of them)
    text_dim: int = 384  # width of the sentence-encoder embeddings (all-MiniLM-L6-v2)
    learned_prompts: int = 4  # M learnable CoOp-style prompt vectors appended to the bank
    text_temperature: float = 0.1  # softmax temperature of the mixture over the bank
    # --- multi-granularity implicit text (MIT); each switchable for ablations ---
    frame_text: bool = True  # tau_f from pooled visual level 4 + audio
    segment_text: bool = True  # tau_s: attention pooling over the current segment's frame texts
    video_text: bool = True  # tau_v: attention pooling over the last segment texts
    text_bridge: bool = True  # audio token attends to the texts (a'); off: a' = a
    frame_ring: int = 30  # earlier frame texts kept for tau_s (a 30 fps segment)
    segment_ring: int = 4  # earlier segment texts kept for tau_v (with the current: 5 segments)
    # --- fusion and decoder ---
    heads: int = 4  # attention heads in the coarse-level cross-attention
    semantic: bool = False  # head: False -> 1 binary mask channel; True -> K + 1 classes (AVSS)
    separable: bool = True  # depthwise-separable 3x3 convs in the FPN (cheap on CPU and GPU)

    @property
    def num_concepts(self) -> int:
        return len(self.concepts)

    @property
    def mask_channels(self) -> int:
        return self.num_concepts + 1 if self.semantic else 1

    @property
    def audio_samples(self) -> int:
        return AUDIO_SAMPLES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ICFConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ICF config field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        for f in dataclasses.fields(cls):  # JSON turns tuples into lists; restore them
            if f.name in values and isinstance(values[f.name], list):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def replace(self, **overrides: Any) -> ICFConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ICF config override(s) {unknown}; known fields: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


def config_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ICFConfig)]


__all__ = ["ICFConfig", "AUDIO_SAMPLES", "SAMPLE_RATE", "LOGMEL_FRAMES", "LOGMEL_BANDS"]
