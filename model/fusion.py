"""Text-bridged fusion: the audio token reads the implicit texts, then conditions the vision.

Coarse levels (stride 16, 32) cross-attend to the condition set C = [a', texts...]; fine levels
(stride 4, 8) get FiLM from a', which keeps the high-resolution path cheap enough for real time.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention


class TextBridge(nn.Module):
    """a' = LN(a + attn(a, texts)). Inputs a [B, D], texts [B, Nt, D] -> a' [B, D]."""

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        self.attn = CrossAttention(width=width, heads=heads)
        self.norm = nn.LayerNorm(width)

    def forward(self, audio: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return self.norm(audio + self.attn(audio[:, None], texts)[:, 0])


class ConditionedAttention(nn.Module):
    """Visual map [B, D, h, w] cross-attends to C [B, Nc, D] (pre-norm, residual, small MLP)."""

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = CrossAttention(width=width, heads=heads)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, hw, D]
        tokens = tokens + self.attn(self.norm(tokens), condition)
        tokens = tokens + self.mlp(self.mlp_norm(tokens))
        return tokens.transpose(1, 2).reshape(b, d, h, w)


class FiLM(nn.Module):
    """x * (1 + gamma(a')) + beta(a'). x [B, D, h, w], a' [B, D]."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.to_affine = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.to_affine.weight)
        nn.init.zeros_(self.to_affine.bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_affine(audio)[:, :, None, None].chunk(2, dim=1)
        return x * (1.0 + gamma) + beta
