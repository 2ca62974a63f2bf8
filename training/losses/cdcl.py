"""CDCL, collaborative distribution-aware contrastive learning as the ICF paper does it (Sec. 3.3).

Each modality of a clip is a Gaussian over the clip's sounding frames (features projected to P
dims and put on the unit sphere): mean and a DIAGONAL covariance + eps (a clip has 5-10 frames, so
a full covariance is singular; ``w2_full`` is kept for the measurement and the tests). Distance =
2-Wasserstein^2 + gamma (H1 + H2), H the differential entropy. Three InfoNCE-shaped contrasts over
exp(-distance / tau) (``info_nce`` with sim = -distance):
- va: visual <-> audio. Positives: the same clip, and clips whose audio text agrees (the argmax of
  the audio-text match averaged over the clip) unless their known classes differ (our guard while
  the texts are young). Never negatives: clips with the same known classes.
- vt / at: visual (audio) <-> text. Positive: the clip's factual z; negatives: its counterfactual
  pool, weighted w_k proportional to sqrt(1 - a_k) (mean 1), so the less counterfactual (harder)
  ones weigh more. Without a pool (sc=false), other clips' z are the negatives.
``distance``: "distribution" (above), "prototype" (means only: ||mu1 - mu2||^2), "feature"
(every frame its own point: frame-level contrast; the vt / at negatives are that frame's counterfactuals).
The anchor's entropy H1 is left out of the distance: it is constant along an InfoNCE row and cancels.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import info_nce

PAIRS = ("va", "vt", "at")
DISTANCES = ("distribution", "feature", "prototype")


def _head(width: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))


def pool_region(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pixel embedding inside a mask. pixels [N, D, h, w]; mask [N, H, W] 0/1 -> [N, D]."""
    m = F.interpolate(mask[:, None].float(), size=pixels.shape[-2:], mode="area")
    return (pixels.float() * m).flatten(2).sum(-1) / m.flatten(2).sum(-1).clamp_min(1e-6)


def diagonal_gaussian(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """x [G, n, P] samples, weight [G, n] 0/1 -> mean [G, P], variance [G, P] (biased, + eps)."""
    w = weight.to(x.dtype)[..., None]
    n = w.sum(1).clamp_min(1.0)
    mu = (x * w).sum(1) / n
    var = ((x - mu[:, None]) ** 2 * w).sum(1) / n
    return mu, var + eps


def w2_diagonal(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance of diagonal Gaussians, broadcasting over leading dims:
    ||mu1 - mu2||^2 + sum (sigma1 - sigma2)^2 (= Tr(S1 + S2 - 2 (S1 S2)^1/2) for diagonal S)."""
    return (mu1 - mu2).pow(2).sum(-1) + (var1.sqrt() - var2.sqrt()).pow(2).sum(-1)


def _sqrtm_psd(s: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh(s)
    return evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(-1, -2)


def w2_full(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance of full-covariance Gaussians ([.., P], [.., P, P]):
    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)."""
    r1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(r1 @ cov2 @ r1)
    trace = torch.diagonal(cov1 + cov2 - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    return (mu1 - mu2).pow(2).sum(-1) + trace


def diagonal_entropy(var: torch.Tensor) -> torch.Tensor:
    """Differential entropy 1/2 log((2 pi e)^P det S) of diagonal Gaussians [.., P] -> [..]."""
    return 0.5 * (var.shape[-1] * math.log(2 * math.pi * math.e) + var.log().sum(-1))


class CDCL(nn.Module):
    def __init__(self, *, width: int, dim: int, weights: dict, temperature: float, distance: str, gamma: float) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"CDCL distance '{distance}' must be one of {DISTANCES}")
        self.weights = {p: float(weights.get(p, 0.0)) for p in PAIRS}
        self.temperature, self.distance, self.gamma, self.dim = temperature, distance, gamma, dim
        self.visual = _head(width, dim)
        self.audio = _head(width, dim)
        self.text = nn.Linear(width, dim)

    def _dist(self, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Pairwise distances of Gaussians a (mean/var [A, P]) and b ([A, C, P] or [C, P]) -> [A, C]."""
        mu1, var1 = a[0][:, None], a[1][:, None]
        mu2, var2 = (b[0], b[1]) if b[0].dim() == 3 else (b[0][None], b[1][None])
        if self.distance != "distribution":
            return (mu1 - mu2).pow(2).sum(-1)
        # the paper's gamma (H1 + H2): H1, the anchor's entropy, is the same for every candidate of a row and
        # cancels in the row's softmax (InfoNCE), so only the candidates' H2 is computed (same loss, same gradient)
        return w2_diagonal(mu1, var1, mu2, var2) + self.gamma * diagonal_entropy(var2)

    def _fit(self, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return diagonal_gaussian(F.normalize(x, dim=-1), weight)

    def forward(
        self,
        *,
        visual: torch.Tensor,
        audio: torch.Tensor,
        anchor: torch.Tensor,
        frames: int,
        z: torch.Tensor | None = None,
        pool: torch.Tensor | None = None,
        strength: torch.Tensor | None = None,
        audio_text: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """visual (sounding-region features), audio (audio tokens), z (factual texts) [N, D] with
        N = B * frames, frame-major per clip; anchor [N] bool: frames with a sounding object in view;
        pool [B, k_c, frames, D] counterfactual texts with strength [B, k_c]; audio_text [N, n_a]
        audio-text match logits; labels [N, K] with known [N]. Returns (weighted sum, parts)."""
        n, p = len(visual), self.dim
        b = n // frames
        if self.distance == "feature":  # every frame its own 'clip' of one sample; its pool: the same frame's counterfactuals
            if pool is not None:
                k = pool.shape[1]
                pool = pool.transpose(1, 2).reshape(n, k, 1, pool.shape[-1])
                strength = strength.repeat_interleave(frames, 0)
            frames, b = 1, n
        w = anchor.view(b, frames).float()
        rows = w.sum(1) > 0
        parts: dict[str, torch.Tensor] = {}
        zero = visual.sum() * 0.0
        if rows.sum() < 1:
            return zero, parts
        gv = self._fit(self.visual(visual.float()).view(b, frames, p), w)
        ga = self._fit(self.audio(audio.float()).view(b, frames, p), w)
        gv, ga = (gv[0][rows], gv[1][rows]), (ga[0][rows], ga[1][rows])
        a = int(rows.sum())
        eye = torch.eye(a, dtype=torch.bool, device=visual.device)
        same_class = torch.zeros_like(eye)
        known_lab = torch.zeros(a, dtype=torch.bool, device=visual.device)
        if labels is not None and known is not None:
            lab = (labels.view(b, frames, -1) * w[..., None]).amax(1)[rows] > 0  # classes heard while in view
            ok = (known.view(b, frames) | ~anchor.view(b, frames)).all(1)[rows] & lab.any(1)
            same_class = (lab[:, None] == lab[None]).all(-1) & ok[:, None] & ok[None]
            known_lab = ok
        if self.weights["va"]:
            pos = eye
            if audio_text is not None:
                probs = torch.softmax(audio_text.float(), -1).view(b, frames, -1)
                said = ((probs * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)).argmax(-1)[rows]
                # ours: agreeing texts of clips whose known classes differ are not made positives
                differ = ~same_class & known_lab[:, None] & known_lab[None]
                pos = pos | ((said[:, None] == said[None]) & ~differ)
            neg = ~pos & ~same_class
            parts["va"] = info_nce(-self._dist(gv, ga), pos, neg, temperature=self.temperature)
            parts["va_pos"] = pos.float().sum(1).mean().detach()
        if z is not None and (self.weights["vt"] or self.weights["at"]):
            gz = self._fit(self.text(z.float()).view(b, frames, p), w)
            gz = (gz[0][rows], gz[1][rows])
            if pool is not None:
                k = pool.shape[1]
                cf = self.text(pool.float()).view(b, k, frames, p)[rows]  # [A, k, T, P]
                cf = diagonal_gaussian(F.normalize(cf, dim=-1).flatten(0, 1), w[rows].repeat_interleave(k, 0))
                cands = (torch.cat([gz[0][:, None], cf[0].view(a, k, p)], 1), torch.cat([gz[1][:, None], cf[1].view(a, k, p)], 1))
                pos = torch.zeros(a, k + 1, dtype=torch.bool, device=visual.device)
                pos[:, 0] = True
                hard = (1 - strength[rows].float()).clamp_min(0).sqrt()  # w_k ~ sqrt(1 - a_k)
                weights = torch.cat([torch.ones_like(hard[:, :1]), hard / hard.mean(1, keepdim=True).clamp_min(1e-6)], 1)
                neg = ~pos
            else:  # no SC: other clips' factual texts are the negatives
                cands, pos, weights = gz, eye, None
                neg = ~eye & ~same_class
            for pair, g in (("vt", gv), ("at", ga)):
                if self.weights[pair]:
                    parts[pair] = info_nce(-self._dist(g, cands), pos, neg, temperature=self.temperature, weights=weights)
        total = zero + sum(self.weights[k] * v for k, v in parts.items() if k in PAIRS)
        return total, {f"cdcl_{k}": v.detach() for k, v in parts.items()}
