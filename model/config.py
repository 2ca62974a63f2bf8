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

# One line for a stored config of the retired legacy-MIT network (the abstract-era bank mixture); commit
# af48884 is the last that builds it.
LEGACY_MIT_REFUSAL = (
    "this is the retired legacy-MIT network (its stored config has no mit_mode 'paper'), which this version no longer builds: "
    "retrain it (icf-train fit --config stamps-cpu or synthavs-cpu), or run it with icf-avs commit af48884, the last that reads legacy MIT"
)


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
    # "vggish": the VGGish-shaped encoder below (trained here, or torchvggish weights) on the VGGish log-mel.
    # "aisfx": aisfx 0.1.2's pretrained sound-effects CNN (512-d, model/audio_pretrained.py) on aisfx's
    # log-mel evaluated from the same 16 kHz window (model/aisfx_logmel.py); audio_channels / audio_fc unused.
    audio_encoder: str = "vggish"
    audio_pretrained: bool = False  # aisfx: load its converted weights from the user cache at build (load_checkpoint: off)
    audio_frozen: bool = False  # aisfx: keep the CNN as published (no gradient, BatchNorm eval); only its projection learns
    # aisfx: 0 feeds the window's raw level; f > 0 peak-normalises each window in-graph (gain <= 1 / f) as aisfx
    # normalises each file (probe: a -20 dB microphone keeps 79% instead of 46%; docs/results/audio_arms.md)
    audio_peak_floor: float = 0.0
    audio_channels: tuple[int, ...] = (8, 16, 32, 32, 64, 64)  # VGGish conv widths (full: 64,128,256,256,512,512)
    audio_fc: tuple[int, ...] = (128, 128)  # VGGish fc widths before the 128-d embedding (full: 4096, 4096)
    audio_weights: str = ""  # path of a torchvggish-format state dict (full widths only; "" = train)
    # --- text bank (modality-shared space) ---
    bank: str = "synthavs"  # committed bank name in model/banks or a path to a bank .safetensors
    concepts: tuple[str, ...] = ()  # concept prompts, resolved from the bank by the builder (K of them)
    text_dim: int = 384  # width of the sentence-encoder embeddings (all-MiniLM-L6-v2)
    text_temperature: float = 0.1  # temperature of text matching (cosine / t) and the concept readout
    # --- multi-granularity implicit text (MIT); each switchable for ablations ---
    # "paper" (the only one): channel-wise correlation + textual inversion + weight query + gates -> z
    # (ICF Sec. 3.1). Stored configs carry it so the retired legacy network (no mit_mode) is told apart.
    mit_mode: str = "paper"
    visual_texts: int = 8  # n_v implicit visual texts ("a video of [ ]"), shared by the granularities
    audio_texts: int = 8  # n_a implicit audio texts ("an audio of [ ]")
    text_tokens: int = 4  # k_t learnable token embeddings per implicit text
    text_topk: int = 3  # best-matching texts kept per granularity (and for the audio)
    frame_text: bool = True  # frame granularity: channel correlation over one frame's tokens
    segment_text: bool = True  # segment granularity: over the current segment's frames (frame ring)
    video_text: bool = True  # video granularity: over the last segments (segment ring), rolling
    text_bridge: bool = True  # audio token attends to the texts (a'); off: a' = a
    frame_ring: int = 30  # earlier frame descriptors kept for the segment level (a 30 fps segment)
    segment_ring: int = 4  # earlier segment descriptors kept for the video level (with the current: 5)
    # Frame-ring entries per second of stream: a frame pushes its descriptor into the frame ring only
    # when it closes its 1/frame_ring_rate s slot, so a 30 fps camera fills the ring as a clip at this
    # many fps does. Training records its data's frames per second here (segment_frames=k -> k;
    # AVSBench and plain specs 1); configs stored before the field existed mean 1.
    frame_ring_rate: int = 1
    # --- fusion and decoder ---
    heads: int = 4  # attention heads in the coarse-level cross-attention
    semantic: bool = False  # head: False -> 1 binary mask channel; True -> K + 1 classes (AVSS)
    separable: bool = True  # depthwise-separable 3x3 convs in the FPN (cheap on CPU and GPU)

    def __post_init__(self) -> None:
        if isinstance(self.frame_ring_rate, bool) or not isinstance(self.frame_ring_rate, int) or self.frame_ring_rate < 1:
            raise ValueError(f"frame_ring_rate {self.frame_ring_rate!r} must be a whole number of frame-ring entries per second >= 1")
        if self.audio_encoder not in ("vggish", "aisfx"):
            raise ValueError(f"audio_encoder '{self.audio_encoder}' must be 'vggish' or 'aisfx'")
        if self.audio_encoder != "aisfx" and (self.audio_pretrained or self.audio_frozen or self.audio_peak_floor):
            raise ValueError("audio_pretrained / audio_frozen / audio_peak_floor belong to audio_encoder 'aisfx' (vggish weights: audio_weights)")
        if not 0.0 <= self.audio_peak_floor <= 1.0:
            raise ValueError(f"audio_peak_floor {self.audio_peak_floor} must be in [0, 1] (0: raw level)")
        if self.mit_mode != "paper":
            raise ValueError(f"mit_mode '{self.mit_mode}' must be 'paper' (legacy MIT was removed)")

    @property
    def mit(self) -> bool:
        """Any MIT granularity on (off = the baseline's plain audio conditioning)."""
        return self.frame_text or self.segment_text or self.video_text

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
        unknown = sorted(set(data) - known - {"learned_prompts"})
        if unknown:
            raise ValueError(f"unknown ICF config field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        # the legacy network's configs have no mit_mode (saved before it) or mit_mode "legacy", with bank prompts
        if values.get("mit_mode") != "paper" or values.get("learned_prompts", 0):
            raise ValueError(LEGACY_MIT_REFUSAL)
        values.pop("learned_prompts", None)  # a retired field: paper-MIT configs stored 0 (e.g. the shipped weights)
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
