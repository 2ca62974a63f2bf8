"""The ICF network: one set of weights, two entry points.

- ``step(image, audio, frame_ring, frame_valid, segment_ring, segment_valid)``: one frame, state
  tensors in and out. This is what engines export and the stream runs (``forward`` is ``step``).
- ``clip(images, audio, frames_per_segment | closes [, pushes])``: B x T frames, causal, used in
  training. It runs the heavy per-frame parts batched over B*T and the cheap temporal part frame by frame with
  the same ring updates the stream's text-context keeper makes, so it equals T calls of ``step``.

MIT (paper MIT, model/implicit_text.py) puts each frame's channel-correlated visual descriptor in the
frame ring (output ``frame_text``) and each segment's descriptor in the segment ring (output
``segment_text``); the implicit texts are constants inside the network.

Shapes: B batch, T frames, H x W image, S = 15,600 audio samples (one VGGish window ending at the
frame), D width, K named concepts, Nf / Ns ring lengths, C mask channels (1, or K + 1 semantic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .aisfx_logmel import AisfxLogMel
from .audio_encoder import VGGishEncoder
from .audio_pretrained import AisfxEncoder
from .backbones import build_backbone
from .config import ICFConfig
from .context import ContextState, advance, initial_state
from .decoder import FPNDecoder, MaskHead
from .fusion import ConditionedAttention, FiLM, TextBridge
from .implicit_text import ChannelCorrelation, ImplicitTexts, TextMatcher, TextOutput
from .logmel import LogMel
from .text_bank import TextBank

# TF-Lite EfficientNet expects (x - 127) / 128; torchvision-style nets expect ImageNet statistics.
PIXEL_STATS = {
    "efficientnet_lite0": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
    "default": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class FrameFeatures:
    """Per-frame encodings: levels [N, D, H/s, W/s] (s = 4, 8, 16, 32), audio [N, D]."""

    levels: list[torch.Tensor]
    audio: torch.Tensor


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
    texts: TextOutput | None = None  # l_v, l_a, z [N, D], audio_match [N, n_a] (None: MIT off)


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
        if cfg.audio_encoder == "aisfx":
            self.logmel = AisfxLogMel(peak_floor=cfg.audio_peak_floor)
            self.audio_encoder = AisfxEncoder(width=d, pretrained=cfg.audio_pretrained, frozen=cfg.audio_frozen)
        else:
            self.logmel = LogMel()
            self.audio_encoder = VGGishEncoder(
                channels=cfg.audio_channels, fc=cfg.audio_fc, width=d, weights=cfg.audio_weights
            )
        self.text_bank = TextBank(num_concepts=cfg.num_concepts, text_dim=cfg.text_dim, width=d)
        self.frame_corr = ChannelCorrelation(width=d)
        self.segment_corr = ChannelCorrelation(width=d)
        self.video_corr = ChannelCorrelation(width=d)
        self.implicit = ImplicitTexts(visual=cfg.visual_texts, audio=cfg.audio_texts, tokens=cfg.text_tokens, text_dim=cfg.text_dim)
        granularities = sum((cfg.frame_text, cfg.segment_text, cfg.video_text))
        self.matcher = TextMatcher(
            width=d, text_dim=cfg.text_dim, granularities=granularities, topk=cfg.text_topk, temperature=cfg.text_temperature
        )
        self.concept_query = nn.Linear(d, d)
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
        return FrameFeatures(levels=levels, audio=token)

    def bridge_audio(self, audio: torch.Tensor, texts: list[torch.Tensor]) -> torch.Tensor:
        if self.config.text_bridge and texts:
            return self.bridge(audio, torch.stack(texts, dim=1))
        return audio

    def decode(
        self, levels: list[torch.Tensor], audio_bridged: torch.Tensor, texts: list[torch.Tensor], head_text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition the visual levels on C = [a', texts] and decode; the mask query is a' (+ head_text).

        Returns mask logits [N, C, H, W] at input size and the pixel embedding [N, D, H/4, W/4].
        """
        condition = torch.stack([audio_bridged, *texts], dim=1)  # [N, Nc, D]
        fine = [film(level, audio_bridged) for film, level in zip(self.fine, levels[:2])]
        coarse = [block(level, condition) for block, level in zip(self.coarse, levels[2:])]
        pixels = self.decoder(fine + coarse)
        head_query = audio_bridged if head_text is None else audio_bridged + head_text
        named = self.text_bank.entries()[: self.config.num_concepts]
        logits = self.head(pixels, head_query, named)
        logits = F.interpolate(logits, size=tuple(self.config.image_size), mode="bilinear", align_corners=False)
        return logits, pixels

    # ---- MIT parts ----
    def frame_descriptor(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Frame granularity: channel correlation over the coarsest level's tokens -> [N, D]."""
        tokens = levels[3].flatten(2).transpose(1, 2)  # [N, hw, D]
        return self.frame_corr(tokens, torch.ones_like(tokens[..., 0]))

    def temporal_descriptors(
        self, g_f: torch.Tensor, frame_ring: torch.Tensor, frame_valid: torch.Tensor, segment_ring: torch.Tensor, segment_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment level over [frame ring, this frame]; video level over [segment ring, this segment].
        The current item is always valid, so no set is empty. -> g_s [B, D], g_v [B, D]."""
        one = torch.ones_like(frame_valid[:, :1])
        g_s = self.segment_corr(torch.cat([frame_ring, g_f[:, None]], dim=1), torch.cat([frame_valid, one], dim=1))
        g_v = self.video_corr(torch.cat([segment_ring, g_s[:, None]], dim=1), torch.cat([segment_valid, one], dim=1))
        return g_s, g_v

    def implicit_texts(
        self, g_f: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor, audio: torch.Tensor,
        text_vectors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> TextOutput | None:
        """l_v, l_a, z for the on granularities (None when MIT is off). text_vectors (visual [n_v, E],
        audio [n_a, E]) come from the encoder while training; otherwise the stored constants."""
        cfg = self.config
        if not cfg.mit:
            return None
        descriptors = [g for on, g in ((cfg.frame_text, g_f), (cfg.segment_text, g_s), (cfg.video_text, g_v)) if on]
        visual, aud = text_vectors if text_vectors is not None else self.implicit.constants()
        return self.matcher(descriptors, audio, visual, aud)

    def _decode_with_texts(self, levels: list[torch.Tensor], audio: torch.Tensor, texts: TextOutput | None):
        cond = [] if texts is None else [texts.z, texts.l_v, texts.l_a]
        bridged = self.bridge_audio(audio, cond)
        logits, pixels = self.decode(levels, bridged, cond, None if texts is None else texts.z)
        named = self.text_bank.entries()[: self.config.num_concepts]
        q = F.normalize(self.concept_query(bridged), dim=-1)
        concepts = q @ F.normalize(named, dim=-1).t() / self.config.text_temperature
        return logits, pixels, bridged, concepts

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

        Returns mask_logits [B, C, H, W], frame_text [B, D], segment_text [B, D], concept_logits [B, K]
        (frame_text / segment_text are this frame's and this segment's descriptors, the items the
        caller pushes into the rings).
        """
        feats = self.encode(image, audio)
        g_f = self.frame_descriptor(feats.levels)
        g_s, g_v = self.temporal_descriptors(g_f, frame_ring, frame_valid, segment_ring, segment_valid)
        texts = self.implicit_texts(g_f, g_s, g_v, feats.audio)
        logits, _, _, concepts = self._decode_with_texts(feats.levels, feats.audio, texts)
        return logits, g_f, g_s, concepts

    forward = step

    def initial_state(self, batch: int, device: torch.device | None = None) -> ContextState:
        return initial_state(batch, self.config, device=device)

    # ---- training entry point ----
    def clip(
        self,
        images: torch.Tensor,
        audio: torch.Tensor,
        *,
        frames_per_segment: int = 1,
        closes: Sequence[bool] | None = None,
        pushes: Sequence[bool] | None = None,
        state: ContextState | None = None,
        text_vectors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ClipOutput:
        """images [B, T, 3, H, W], audio [B, T, S]. A segment closes after frame i when closes[i]
        (model.context.segment_closes gives them from frame times, the stream's rule), else after
        every frames_per_segment frames. Frame i pushes its frame text into the frame ring when
        pushes[i] (model.context.ring_pushes / clip_pushes give them from frame times and
        config.frame_ring_rate, the stream's rule); None: every frame pushes (the clip's frames are
        the ring's samples, as in training at frame_ring_rate fps). Causal: frame t sees only <= t.
        text_vectors: see ``implicit_texts`` (training passes the encoder's output so the tokens learn)."""
        b, t = images.shape[:2]
        if closes is None:
            closes = [(i + 1) % frames_per_segment == 0 for i in range(t)]
        pushes = pushes if pushes is not None else [True] * t
        if len(closes) != t or len(pushes) != t:
            raise ValueError(f"closes / pushes have {len(closes)} / {len(pushes)} flags for a clip of {t} frames")
        feats = self.encode(images.flatten(0, 1), audio.flatten(0, 1))
        first = self.frame_descriptor(feats.levels)
        first_bt = first.view(b, t, -1)
        state = state if state is not None else initial_state(b, self.config, device=images.device, dtype=first.dtype)
        seg, vid = [], []
        for i in range(t):  # the only sequential part: a few small pools per frame
            s = state
            x_s, x_v = self.temporal_descriptors(first_bt[:, i], s.frame_ring, s.frame_valid, s.segment_ring, s.segment_valid)
            seg.append(x_s)
            vid.append(x_v)
            state = advance(state, first_bt[:, i], x_s, close_segment=bool(closes[i]), push_frame=bool(pushes[i]))
        x_s = torch.stack(seg, dim=1).flatten(0, 1)
        x_v = torch.stack(vid, dim=1).flatten(0, 1)
        texts = self.implicit_texts(first, x_s, x_v, feats.audio, text_vectors)
        logits, pixels, bridged, concepts = self._decode_with_texts(feats.levels, feats.audio, texts)
        return ClipOutput(
            mask_logits=logits.view(b, t, *logits.shape[1:]),
            concept_logits=concepts.reshape(b, t, -1),
            audio=feats.audio,
            audio_bridged=bridged,
            frame_text=first,
            segment_text=x_s,
            video_text=x_v,
            levels=feats.levels,
            pixels=pixels,
            texts=texts,
        )
