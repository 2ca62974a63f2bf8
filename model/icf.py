"""The ICF network: one set of weights, two entry points.

- ``step(image, audio, frame_ring, frame_valid, segment_ring, segment_valid)``: one frame, state
  tensors in and out. This is what engines export and the stream runs (``forward`` is ``step``).
- ``clip(images, audio, frames_per_segment)``: B x T frames, causal, used in training. It runs the
  heavy per-frame parts batched over B*T and the cheap temporal part frame by frame with the
  same ring updates the stream's text-context keeper makes, so it equals T calls of ``step``.

Shapes: B batch, T frames, H x W image, S = 15,600 audio samples (one VGGish window ending at the
frame), D width, K named concepts, Nf / Ns ring lengths, C mask channels (1, or K + 1 semantic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .audio_encoder import VGGishEncoder
from .backbones import build_backbone
from .config import ICFConfig
from .context import ContextState, advance, initial_state
from .decoder import FPNDecoder, MaskHead
from .fusion import ConditionedAttention, FiLM, TextBridge
from .logmel import LogMel
from .mit import FrameText, TemporalText
from .text_bank import TextBank

# TF-Lite EfficientNet expects (x - 127) / 128; torchvision-style nets expect ImageNet statistics.
PIXEL_STATS = {
    "efficientnet_lite0": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
    "default": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class FrameFeatures:
    """Per-frame encodings: levels [N, D, H/s, W/s] (s = 4, 8, 16, 32), audio [N, D], pooled [N, D]."""

    levels: list[torch.Tensor]
    audio: torch.Tensor
    pooled: torch.Tensor


@dataclass
class ClipOutput:
    """Everything training needs from a clip (N = B * T, frame-major within each sample)."""

    mask_logits: torch.Tensor  # [B, T, C, H, W]
    concept_logits: torch.Tensor  # [B, T, K]
    audio: torch.Tensor  # [N, D] audio token a
    audio_bridged: torch.Tensor  # [N, D] a' (text-bridged audio)
    frame_text: torch.Tensor  # [N, D]
    segment_text: torch.Tensor  # [N, D]
    video_text: torch.Tensor  # [N, D]
    levels: list[torch.Tensor]  # projected visual levels [N, D, h, w] (before conditioning)
    pixels: torch.Tensor  # pixel embedding [N, D, H/4, W/4]


class ICFNet(nn.Module):
    def __init__(self, *, config: ICFConfig) -> None:
        super().__init__()
        cfg = self.config = config
        if cfg.num_concepts == 0:
            raise ValueError("ICF config has no concepts; build it with model.build_model so the bank is resolved")
        mean, std = PIXEL_STATS.get(cfg.backbone, PIXEL_STATS["default"])
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        d = cfg.width
        self.backbone = build_backbone(cfg)
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
            for c in self.backbone.channels
        )
        self.logmel = LogMel()
        self.audio_encoder = VGGishEncoder(
            channels=cfg.audio_channels, fc=cfg.audio_fc, width=d, weights=cfg.audio_weights
        )
        self.text_bank = TextBank(
            num_concepts=cfg.num_concepts, text_dim=cfg.text_dim, learned_prompts=cfg.learned_prompts, width=d
        )
        self.frame_text = FrameText(width=d, temperature=cfg.text_temperature)
        self.temporal_text = TemporalText(width=d)
        self.bridge = TextBridge(width=d, heads=cfg.heads)
        self.coarse = nn.ModuleList([ConditionedAttention(width=d, heads=cfg.heads) for _ in range(2)])
        self.fine = nn.ModuleList([FiLM(width=d) for _ in range(2)])
        self.decoder = FPNDecoder(width=d, separable=cfg.separable)
        self.head = MaskHead(width=d, semantic=cfg.semantic)

    # ---- per-frame parts (batched over any N) ----
    def encode(self, image: torch.Tensor, audio: torch.Tensor) -> FrameFeatures:
        """image [N, 3, H, W] RGB in [0, 1]; audio [N, S] 16 kHz samples in [-1, 1]."""
        x = (image - self.pixel_mean) / self.pixel_std
        levels = [proj(f) for proj, f in zip(self.project, self.backbone(x))]
        token = self.audio_encoder(self.logmel(audio))
        return FrameFeatures(levels=levels, audio=token, pooled=levels[3].mean(dim=(2, 3)))

    def texts_for(self, tau_f: torch.Tensor, tau_s: torch.Tensor, tau_v: torch.Tensor) -> list[torch.Tensor]:
        cfg = self.config
        picked = [(cfg.frame_text, tau_f), (cfg.segment_text, tau_s), (cfg.video_text, tau_v)]
        return [t for on, t in picked if on]

    def bridge_audio(self, audio: torch.Tensor, texts: list[torch.Tensor]) -> torch.Tensor:
        if self.config.text_bridge and texts:
            return self.bridge(audio, torch.stack(texts, dim=1))
        return audio

    def decode(
        self, levels: list[torch.Tensor], audio_bridged: torch.Tensor, texts: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition the visual levels on C = [a', texts] and decode.

        Returns mask logits [N, C, H, W] at input size and the pixel embedding [N, D, H/4, W/4].
        Training calls this again with counterfactual a' on the SAME levels (SC).
        """
        condition = torch.stack([audio_bridged, *texts], dim=1)  # [N, Nc, D]
        fine = [film(level, audio_bridged) for film, level in zip(self.fine, levels[:2])]
        coarse = [block(level, condition) for block, level in zip(self.coarse, levels[2:])]
        pixels = self.decoder(fine + coarse)
        head_query = audio_bridged + texts[0] if self.config.frame_text else audio_bridged
        named = self.text_bank.entries()[: self.config.num_concepts]
        logits = self.head(pixels, head_query, named)
        logits = F.interpolate(logits, size=tuple(self.config.image_size), mode="bilinear", align_corners=False)
        return logits, pixels

    # ---- streaming entry point ----
    def step(
        self,
        image: torch.Tensor,
        audio: torch.Tensor,
        frame_ring: torch.Tensor,
        frame_valid: torch.Tensor,
        segment_ring: torch.Tensor,
        segment_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One frame. image [B, 3, H, W] in [0, 1]; audio [B, S]; rings [B, Nf, D] / [B, Ns, D] with
        validity [B, Nf] / [B, Ns] (1.0 = filled).

        Returns mask_logits [B, C, H, W], frame_text [B, D], segment_text [B, D], concept_logits [B, K].
        """
        feats = self.encode(image, audio)
        bank = self.text_bank.entries()
        tau_f, mix_logits = self.frame_text(feats.pooled, feats.audio, bank)
        tau_s, tau_v = self.temporal_text(tau_f, feats.audio, frame_ring, frame_valid, segment_ring, segment_valid)
        texts = self.texts_for(tau_f, tau_s, tau_v)
        logits, _ = self.decode(feats.levels, self.bridge_audio(feats.audio, texts), texts)
        return logits, tau_f, tau_s, mix_logits[:, : self.config.num_concepts]

    forward = step

    def initial_state(self, batch: int, device: torch.device | None = None) -> ContextState:
        return initial_state(batch, self.config, device=device)

    # ---- training entry point ----
    def clip(
        self, images: torch.Tensor, audio: torch.Tensor, *, frames_per_segment: int = 1, state: ContextState | None = None
    ) -> ClipOutput:
        """images [B, T, 3, H, W], audio [B, T, S]; frames_per_segment: a segment closes after every
        that many frames (1 for AVSBench clips, fps for a stream). Causal: frame t sees only <= t."""
        b, t = images.shape[:2]
        feats = self.encode(images.flatten(0, 1), audio.flatten(0, 1))
        bank = self.text_bank.entries()
        tau_f, mix_logits = self.frame_text(feats.pooled, feats.audio, bank)
        tau_f_bt = tau_f.view(b, t, -1)
        audio_bt = feats.audio.view(b, t, -1)
        state = state if state is not None else initial_state(b, self.config, device=images.device, dtype=tau_f.dtype)
        seg, vid = [], []
        for i in range(t):  # the only sequential part: a few small attention pools per frame
            s = state
            tau_s, tau_v = self.temporal_text(
                tau_f_bt[:, i], audio_bt[:, i], s.frame_ring, s.frame_valid, s.segment_ring, s.segment_valid
            )
            seg.append(tau_s)
            vid.append(tau_v)
            state = advance(state, tau_f_bt[:, i], tau_s, close_segment=(i + 1) % frames_per_segment == 0)
        tau_s = torch.stack(seg, dim=1).flatten(0, 1)
        tau_v = torch.stack(vid, dim=1).flatten(0, 1)
        texts = self.texts_for(tau_f, tau_s, tau_v)
        bridged = self.bridge_audio(feats.audio, texts)
        logits, pixels = self.decode(feats.levels, bridged, texts)
        return ClipOutput(
            mask_logits=logits.view(b, t, *logits.shape[1:]),
            concept_logits=mix_logits[:, : self.config.num_concepts].reshape(b, t, -1),
            audio=feats.audio,
            audio_bridged=bridged,
            frame_text=tau_f,
            segment_text=tau_s,
            video_text=tau_v,
            levels=feats.levels,
            pixels=pixels,
        )
