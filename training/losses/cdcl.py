"""CDCL, collaborative distribution-aware contrastive learning (design: shared/design/ICF.md).

Four InfoNCE terms, each with its own temperature, summed with per-pair weights:
  fc  factual vs counterfactual: anchor = visual region (pixel embedding pooled inside the gt
      mask), positive = its factual a', negatives = its counterfactual a' and other frames' a';
  at  audio <-> text: audio token vs the bank entries; positives = the heard classes;
  vt  visual region <-> text: region vs bank entries; positives = the sounding classes;
  av  audio <-> visual region: region vs audio tokens of the batch; positive = its own frame
      (and frames of the same clip with the same label, never counted as negatives).
Negatives are re-weighted by their similarity distribution (contrastive.negative_weights).
Small projection heads (training-only) map each modality to a shared contrastive space.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import info_nce, negative_weights

PAIRS = ("fc", "at", "vt", "av")


def _head(width: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))


def pool_region(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pixel embedding inside a mask. pixels [N, D, h, w]; mask [N, H, W] 0/1 -> [N, D]."""
    m = F.interpolate(mask[:, None].float(), size=pixels.shape[-2:], mode="area")
    return (pixels.float() * m).flatten(2).sum(-1) / m.flatten(2).sum(-1).clamp_min(1e-6)


class CDCL(nn.Module):
    def __init__(self, *, width: int, dim: int, weights: dict, temps: dict, hardness: float) -> None:
        super().__init__()
        self.weights = {p: float(weights.get(p, 0.0)) for p in PAIRS}
        self.temps = {p: float(temps.get(p, 0.1)) for p in PAIRS}
        self.hardness = hardness
        self.visual = _head(width, dim)
        self.audio = _head(width, dim)
        self.text = nn.Linear(width, dim)

    def _nce(self, pair: str, sim, pos, neg) -> torch.Tensor:
        w = negative_weights(sim, neg, self.hardness)
        return info_nce(sim, pos, neg, temperature=self.temps[pair], weights=w)

    def forward(
        self,
        *,
        region: torch.Tensor,
        bridged: torch.Tensor,
        counterfactual: torch.Tensor | None,
        anchor_audio: torch.Tensor,
        anchor_labels: torch.Tensor,
        anchor_known: torch.Tensor,
        group: torch.Tensor,
        all_audio: torch.Tensor,
        all_labels: torch.Tensor,
        all_known: torch.Tensor,
        named_bank: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Anchors are frames with a non-empty gt mask (A of them): region [A, D], their a' [A, D],
        counterfactual a' [A, S, D] or None, their audio tokens [A, D], labels [A, K] with known
        flags [A], clip ids group [A]. The at pair uses every frame: all_audio [N, D], all_labels
        [N, K], all_known [N]. named_bank [K, D]."""
        parts: dict[str, torch.Tensor] = {}
        zero = named_bank.sum() * 0.0
        text = F.normalize(self.text(named_bank.float()), dim=-1)
        a = len(region)
        if a > 0:
            r = F.normalize(self.visual(region.float()), dim=-1)
            fa = F.normalize(self.audio(bridged.float()), dim=-1)
            eye = torch.eye(a, dtype=torch.bool, device=r.device)
            same_label = (anchor_labels[:, None] == anchor_labels[None]).all(-1) & anchor_known[:, None] & anchor_known[None]
            same_clip = group[:, None] == group[None]
            # frames of one clip are positives when they share a known label, and never negatives
            pos_av = eye | (same_clip & same_label)
            neg_av = ~same_clip
            if self.weights["fc"]:
                sim = r @ fa.t()  # [A, A]
                pos, neg = eye, neg_av
                if counterfactual is not None:
                    cf = F.normalize(self.audio(counterfactual.float()), dim=-1)  # [A, S, P]
                    sim = torch.cat([sim, torch.einsum("ap,asp->as", r, cf)], dim=1)
                    own = torch.ones(a, cf.shape[1], dtype=torch.bool, device=r.device)
                    pos = torch.cat([pos, ~own], dim=1)
                    neg = torch.cat([neg, own], dim=1)
                parts["fc"] = self._nce("fc", sim, pos, neg)
            if self.weights["vt"]:
                rows = anchor_known & (anchor_labels.sum(1) > 0)
                if rows.any():
                    lab = anchor_labels[rows] > 0
                    parts["vt"] = self._nce("vt", r[rows] @ text.t(), lab, ~lab)
            if self.weights["av"]:
                au = F.normalize(self.audio(anchor_audio.float()), dim=-1)
                parts["av"] = self._nce("av", r @ au.t(), pos_av, neg_av & ~pos_av)
        if self.weights["at"]:
            rows = all_known & (all_labels.sum(1) > 0)
            if rows.any():
                au = F.normalize(self.audio(all_audio[rows].float()), dim=-1)
                lab = all_labels[rows] > 0
                parts["at"] = self._nce("at", au @ text.t(), lab, ~lab)
        total = zero + sum(self.weights[p] * v for p, v in parts.items())
        return total, {f"cdcl_{p}": v.detach() for p, v in parts.items()}
