"""Small attention blocks written out by hand: static shapes, ONNX-friendly, no value branching."""

from __future__ import annotations

import math

import torch
from torch import nn

MASKED = -1e4  # additive score for invalid ring slots; finite so fp16 softmax stays NaN-free


class CrossAttention(nn.Module):
    """Multi-head attention of queries [B, Nq, D] over keys/values [B, Nk, D] -> [B, Nq, D].

    ``key_valid`` [B, Nk] (1 = attend, 0 = ignore) is optional.
    """

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        b, nq, d = query.shape
        nk = keys.shape[1]
        h = self.heads
        q = self.q(query).reshape(b, nq, h, d // h).transpose(1, 2)  # [B, h, Nq, d/h]
        k, v = self.kv(keys).reshape(b, nk, 2, h, d // h).permute(2, 0, 3, 1, 4)  # each [B, h, Nk, d/h]
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h)
        if key_valid is not None:
            scores = scores + (1.0 - key_valid[:, None, None, :]) * MASKED
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, nq, d)
        return self.out(out)

