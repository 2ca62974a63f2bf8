"""MIT: multi-granularity implicit text (frame, segment, video), causal and stateless.

Each granularity is a point in the width-D text space: a soft mixture over the bank entries
(frame) or an attention pooling of earlier texts (segment, video). Never decoded to words.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AttentionPool


class FrameText(nn.Module):
    """tau_f = softmax(cos(query, bank) / temperature) @ bank, query from pooled vision + audio.

    Inputs: pooled [B, D], audio [B, D], bank [K + M, D]. Outputs: tau_f [B, D], logits [B, K + M].
    """

    def __init__(self, *, width: int, temperature: float) -> None:
        super().__init__()
        self.query = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width))
        self.temperature = temperature

    def forward(self, pooled: torch.Tensor, audio: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.query(torch.cat([pooled, audio], dim=-1)), dim=-1)
        logits = q @ F.normalize(bank, dim=-1).t() / self.temperature
        return torch.softmax(logits, dim=-1) @ bank, logits


class TemporalText(nn.Module):
    """Segment and video texts from the rings the stream keeps (state in, nothing stored).

    frame_ring [B, Nf, D] + frame_valid [B, Nf]: earlier frame texts of the current segment.
    segment_ring [B, Ns, D] + segment_valid [B, Ns]: texts of the last closed segments.
    Returns tau_s [B, D] (pools the ring and the current tau_f) and tau_v [B, D] (pools the
    segment ring and the current tau_s). The current item is always valid, so no empty softmax.
    """

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.segment_pool = AttentionPool(width=width)
        self.video_pool = AttentionPool(width=width)

    def forward(
        self,
        tau_f: torch.Tensor,
        audio: torch.Tensor,
        frame_ring: torch.Tensor,
        frame_valid: torch.Tensor,
        segment_ring: torch.Tensor,
        segment_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones_like(frame_valid[:, :1])
        tau_s = self.segment_pool(
            torch.cat([frame_ring, tau_f[:, None]], dim=1), torch.cat([frame_valid, one], dim=1), audio
        )
        tau_v = self.video_pool(
            torch.cat([segment_ring, tau_s[:, None]], dim=1), torch.cat([segment_valid, one], dim=1), audio
        )
        return tau_s, tau_v
