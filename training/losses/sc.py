"""SC, semantic counterfactuals made in latent space (design: shared/design/ICF.md).

An orthogonal basis U (D x R; columns kept orthonormal by torch's orthogonal parametrisation)
spans counterfactual semantic directions. For a frame with text-bridged audio a' and factual
concept direction f (unit):
    c    = <a', f>                         the factual semantic component
    v    = GS(u, f) = (u - <u, f> f) / |.|   a column of U made orthogonal to f (Gram-Schmidt)
    a_cf = a' - c f + |c| v                the same energy moved to a counterfactual direction
Several columns give several counterfactuals. The network decodes the SAME visual levels with
each a_cf (net.decode) and pays if the counterfactual still paints the factual sounding object,
or if its concept distribution stays the factual one.

How U learns is ours to choose (``basis_grad``): "reverse" flips its gradient, so U seeks the
counterfactuals the network still segments (hard counterfactuals, adversarial); "none" keeps the
random orthonormal basis; "follow" lets U minimise the loss with the network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import orthogonal


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class SemanticCounterfactual(nn.Module):
    def __init__(self, *, width: int, rank: int, samples: int, basis_grad: str = "reverse") -> None:
        super().__init__()
        if not 1 <= samples <= rank < width:
            raise ValueError(f"SC needs 1 <= samples ({samples}) <= rank ({rank}) < width ({width})")
        self.samples = samples
        self.grad_scale = {"reverse": -1.0, "none": 0.0, "follow": 1.0}[basis_grad]
        # nn.Linear(R, D).weight is [D, R]; orthogonal() keeps its columns orthonormal
        self.basis = orthogonal(nn.Linear(rank, width, bias=False))

    @property
    def U(self) -> torch.Tensor:
        """[D, R] with orthonormal columns."""
        return self.basis.weight

    def directions(self, factual: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """factual [N, D] unit -> [N, S, D] unit directions orthogonal to their factual one."""
        u = _ScaleGrad.apply(self.U, self.grad_scale)
        if columns is None:
            columns = torch.randperm(u.shape[1], device=u.device)[: self.samples]
        cand = u[:, columns].t().to(factual.dtype)  # [S, D]
        along = factual @ cand.t()  # [N, S]
        v = cand[None] - along[..., None] * factual[:, None]  # Gram-Schmidt against f
        return F.normalize(v, dim=-1, eps=1e-6)

    def counterfactuals(
        self, audio_bridged: torch.Tensor, factual: torch.Tensor, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        """a' [N, D], factual directions [N, D] (normalised here) -> a_cf [N, S, D]."""
        f = F.normalize(factual, dim=-1, eps=1e-6)
        c = (audio_bridged * f).sum(-1, keepdim=True)  # [N, 1]
        base = audio_bridged - c * f
        return base[:, None] + c.abs()[..., None] * self.directions(f, columns)


def factual_directions(named_bank: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Factual concept direction per frame: the mean bank entry of the heard classes (labels
    [N, K] 0/1, bank [K, D]); frames without labels use their own frame text (fallback [N, D])."""
    has = labels.sum(1, keepdim=True) > 0
    mean = (labels.to(named_bank.dtype) @ named_bank) / labels.sum(1, keepdim=True).clamp_min(1)
    return F.normalize(torch.where(has, mean, fallback), dim=-1, eps=1e-6)


def concept_distribution(vectors: torch.Tensor, named_bank: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(cos(vector, bank entries) / temperature) over the K named concepts ([..., K])."""
    return torch.softmax(F.normalize(vectors, dim=-1) @ F.normalize(named_bank, dim=-1).t() / temperature, dim=-1)


def sc_mask_term(cf_logits: torch.Tensor, gt: torch.Tensor, gt_class: torch.Tensor | None = None) -> torch.Tensor:
    """How much of the factual object a counterfactual still paints: mean(sigmoid(cf) * gt) taken
    over the gt pixels (divided by the gt area, so small objects count as much as large ones).

    cf_logits [N, S, C, H, W]; gt [N, H, W] 0/1; gt_class [N, H, W] class ids for a semantic head
    (the probability of the factual class is used there)."""
    if cf_logits.shape[2] == 1:
        prob = torch.sigmoid(cf_logits[:, :, 0].float())
    else:
        p = torch.softmax(cf_logits.float(), dim=2)
        idx = gt_class.long()[:, None, None].expand(-1, p.shape[1], 1, -1, -1)
        prob = p.gather(2, idx)[:, :, 0]
    g = gt.float()[:, None]
    return ((prob * g).flatten(2).sum(-1) / g.flatten(2).sum(-1).clamp_min(1.0)).mean()


def bhattacharyya(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Overlap of two distributions in [0, 1] (1 = identical), mean over rows. Bounded, so pushing
    counterfactual concepts away from the factual ones cannot run off to infinity."""
    return torch.sqrt((p * q).clamp_min(1e-12)).sum(-1).mean()
