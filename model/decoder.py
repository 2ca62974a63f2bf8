"""FPN decoder to stride 4 and the mask heads (binary, or K + 1 semantic classes)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def conv3x3(width: int, separable: bool) -> nn.Module:
    """3x3 conv + BN + ReLU; depthwise-separable when asked (cheap, BN folds in engines)."""
    if separable:
        return nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Top-down merge of four conditioned maps [B, D, H/s, W/s], s = 32..4 -> pixel embedding [B, D, H/4, W/4]."""

    def __init__(self, *, width: int, separable: bool) -> None:
        super().__init__()
        self.smooth = nn.ModuleList([conv3x3(width, separable) for _ in range(3)])
        self.embed = nn.Conv2d(width, width, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = levels[3]
        for i, lateral in enumerate(reversed(levels[:3])):
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[i](x)
        return self.embed(x)


class MaskHead(nn.Module):
    """Mask logits = <pixel embedding, query> / sqrt(D) + bias conv.

    Binary: one query from the condition vector [B, D] -> [B, 1, h, w].
    Semantic: K class queries (projected bank entries gated by a') plus a learned background query
    -> [B, K + 1, h, w] (channel 0 = background).
    """

    def __init__(self, *, width: int, semantic: bool) -> None:
        super().__init__()
        self.semantic = semantic
        self.query = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.scale = 1.0 / math.sqrt(width)
        if semantic:
            self.gate = nn.Linear(width, width)
            self.class_proj = nn.Linear(width, width)
            self.background = nn.Parameter(torch.zeros(width))
            self.bias = nn.Conv2d(width, 1, 1)  # a shared per-pixel offset for all classes
        else:
            self.bias = nn.Conv2d(width, 1, 1)

    def forward(self, pixels: torch.Tensor, condition: torch.Tensor, named_bank: torch.Tensor) -> torch.Tensor:
        q = self.query(condition)  # [B, D]
        b, d, h, w = pixels.shape
        flat = pixels.reshape(b, d, h * w)  # batched MatMul: ONNX Runtime's Einsum kernel is ~10x slower here
        if not self.semantic:
            return torch.matmul(q[:, None, :], flat).reshape(b, 1, h, w) * self.scale + self.bias(pixels)
        gate = torch.sigmoid(self.gate(condition))[:, None, :]  # [B, 1, D]
        classes = self.class_proj(named_bank)[None] * gate + q[:, None, :]  # [B, K, D]
        background = self.background.expand(q.shape[0], 1, -1)
        queries = torch.cat([background, classes], dim=1)  # [B, K + 1, D]
        return torch.matmul(queries, flat).reshape(b, -1, h, w) * self.scale + self.bias(pixels)
