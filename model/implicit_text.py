"""MIT as published (ICF paper Sec. 3.1), made causal: channel-wise correlation at frame, segment
and video granularity, textual inversion, best-match texts, a weight query, gates, factual text z.

- ``ChannelCorrelation``: a set of D-vectors (spatial tokens of one frame, or the frames of a
  segment, or the segments of the video window) is correlated across CHANNELS (a D x D attention,
  cheap for any set size), mixed back into the items and pooled to one descriptor [B, D].
- ``ImplicitTexts``: k_t learnable token embeddings per text, turned into sentence vectors by the
  frozen encoder while training (model/text_encoder.py); the vectors are kept as buffers, so a
  checkpoint carries them as constants and inference needs no encoder.
- ``TextMatcher``: each granularity's descriptor picks its ``topk`` best-matching visual texts;
  a learnable weight query softmax-weights all picked texts into l_v. The audio token picks audio
  texts ("an audio of [ ]") into l_a. Gates (3-layer MLPs) and a projection give z.
Shapes: B batch, D width, E text_dim (384), n texts, k top matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class ChannelCorrelation(nn.Module):
    """items [B, N, D] with valid [B, N] (1 = real item) -> descriptor [B, D].

    energy = K^T Q / n over valid items ([B, D, D], channel-to-channel; unscaled, as DANet's channel
    attention: a 1/sqrt(D) scale leaves it near uniform and its projections near gradient-free),
    items + gamma * mixed, masked mean, LayerNorm. Static shapes; invalid items contribute nothing."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.gamma = nn.Parameter(torch.tensor(0.5))
        self.norm = nn.LayerNorm(width)

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        w = valid[..., None].to(items.dtype)
        n = w.sum(1).clamp_min(1.0)  # [B, 1]
        q, k = self.q(items) * w, self.k(items) * w
        energy = torch.matmul(k.transpose(1, 2), q) / n[..., None]  # [B, D, D]
        mixed = torch.matmul(items, torch.softmax(energy, dim=-1))  # each channel: a mix of correlated ones
        y = items + self.gamma * mixed
        return self.norm((y * w).sum(1) / n)


class ImplicitTexts(nn.Module):
    """Learnable token embeddings (training) and the text vectors they give (buffers, inference).

    tokens_visual [n_v, k_t, E], tokens_audio [n_a, k_t, E]; visual_texts [n_v, E], audio_texts
    [n_a, E] unit vectors. A fresh network (no encoder run yet) holds random unit vectors."""

    def __init__(self, *, visual: int, audio: int, tokens: int, text_dim: int) -> None:
        super().__init__()
        self.tokens_visual = nn.Parameter(torch.randn(visual, tokens, text_dim) * 0.02)
        self.tokens_audio = nn.Parameter(torch.randn(audio, tokens, text_dim) * 0.02)
        self.register_buffer("visual_texts", F.normalize(torch.randn(visual, text_dim), dim=-1))
        self.register_buffer("audio_texts", F.normalize(torch.randn(audio, text_dim), dim=-1))

    def constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual_texts, self.audio_texts

    def encode(self, encoder) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the frozen encoder on the tokens (with gradient to the tokens) and refreshes the
        stored constants with the result. Returns (visual [n_v, E], audio [n_a, E])."""
        from .text_encoder import AUDIO_TEMPLATE, VISUAL_TEMPLATE

        vis, aud = encoder.encode_many([(self.tokens_visual, VISUAL_TEMPLATE), (self.tokens_audio, AUDIO_TEMPLATE)])
        with torch.no_grad():
            self.visual_texts.copy_(vis.detach())
            self.audio_texts.copy_(aud.detach())
        return vis, aud

    @torch.no_grad()
    def init_from_words(self, encoder, words: list[str] | tuple[str, ...]) -> None:
        """Starts text i's tokens at the word pieces of words[i % len(words)] (plus a little noise),
        so implicit texts begin as real concepts and drift from there; then refreshes the constants."""
        for tokens in (self.tokens_visual, self.tokens_audio):
            k_t = tokens.shape[1]
            for i in range(tokens.shape[0]):
                start = encoder.word_vectors(words[i % len(words)], k_t)
                tokens[i].copy_(start + 0.01 * torch.randn_like(start))
        self.encode(encoder)


def _mlp3(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))


@dataclass
class TextOutput:
    """l_v [B, D] visual text, l_a [B, D] audio text, z [B, D] composite factual text,
    audio_match [B, n_a] match logits of the audio texts (which text the audio 'says')."""

    l_v: torch.Tensor
    l_a: torch.Tensor
    z: torch.Tensor
    audio_match: torch.Tensor


class TextMatcher(nn.Module):
    """Best-match implicit texts for the on granularities and the audio, fused into z."""

    def __init__(self, *, width: int, text_dim: int, granularities: int, topk: int, temperature: float) -> None:
        super().__init__()
        self.topk = topk
        self.temperature = temperature
        self.text_proj = nn.Sequential(nn.Linear(text_dim, width), nn.LayerNorm(width))
        self.keys = nn.ModuleList(nn.Linear(width, width) for _ in range(granularities))
        self.audio_key = nn.Linear(width, width)
        self.weight_query = nn.Parameter(torch.zeros(width))
        self.gate_v = _mlp3(width)
        self.gate_a = _mlp3(width)
        self.fuse = nn.Linear(2 * width, width)
        self.scale = 1.0 / math.sqrt(width)

    def _match(self, key: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """key [B, D], texts [n, D] -> picked texts [B, k, D], their match logits [B, k], all logits [B, n]."""
        logits = F.normalize(key, dim=-1) @ F.normalize(texts, dim=-1).t() / self.temperature
        top, idx = torch.topk(logits, k=min(self.topk, texts.shape[0]), dim=-1)
        return texts[idx], top, logits

    def forward(self, descriptors: list[torch.Tensor], audio: torch.Tensor, visual_texts: torch.Tensor, audio_texts: torch.Tensor) -> TextOutput:
        tv = self.text_proj(visual_texts)  # [n_v, D]
        ta = self.text_proj(audio_texts)  # [n_a, D]: one shared text space
        picked, scores = [], []
        for key, desc in zip(self.keys, descriptors):
            p, s, _ = self._match(key(desc), tv)
            picked.append(p)
            scores.append(s)
        texts, match = torch.cat(picked, dim=1), torch.cat(scores, dim=1)  # [B, G k, D], [B, G k]
        weights = torch.softmax(texts @ self.weight_query * self.scale + match, dim=-1)
        l_v = (weights[..., None] * texts).sum(1)
        pa, sa, audio_logits = self._match(self.audio_key(audio), ta)
        l_a = (torch.softmax(sa, dim=-1)[..., None] * pa).sum(1)
        gv = l_v * torch.sigmoid(self.gate_v(l_v))
        ga = l_a * torch.sigmoid(self.gate_a(l_a))
        z = self.fuse(torch.cat([gv, ga], dim=-1))
        return TextOutput(l_v=l_v, l_a=l_a, z=z, audio_match=audio_logits)
