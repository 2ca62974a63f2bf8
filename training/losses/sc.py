"""SC, semantic counterfactuals as the ICF paper makes them (Sec. 3.2): a small latent diffusion
model over the factual text z, vectors only. Training only: the exported network never sees it.

Latents are the factual texts scaled to unit RMS (one z per frame; a clip is B x T of them).
- Noise-prediction loss (DDPM): z_t = sqrt(ab_t) z + sqrt(1 - ab_t) e, L = ||e_theta(z_t, t, c) - e||^2,
  with the condition c = the frame's visual descriptor (detached).
- Counterfactuals: noise z forward to the intermediate step s_d (pure noise would make the
  orthogonality meaningless), normalise, draw r ~ N(0, I), make it orthogonal to z_sd
  (Gram-Schmidt), mix z' = sqrt(1 - a m s) z_sd + sqrt(a m s) r (unit vectors, rescaled to |z_sd|)
  with strength a, per-sample m in (0, 1] and per-feature s in [0.5, 1], then denoise z' back to
  step 0 with a few deterministic DDIM steps: z*. The same noise path without the mix gives z^.
- L_ortho = mean (z* - z^)^2 + l_z cos(z*, z^)^2 (our reading of the paper's
  ||z'_t - z_t||^2 + l_z (z'_t . z_t)^2 on the denoised pair: near the factual, yet turned away
  from it; for unit vectors the optimum is cos = 1 / l_z, so l_z > 1).
- The pool: per clip, the top-k_c of the S samples most similar to z (mean cosine over frames).
  Each pool member keeps its strength a m; CDCL weighs it sqrt(1 - a m) (harder = weighs more).
- Every random draw (diffusion noise, orthogonal direction, m, s) is made once per sample and shared by
  the clip's T frames (issue 21: per-frame draws made the pool jitter over frames while z is steady,
  an easy negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    x = t.float()[..., None] * freqs
    return torch.cat([x.sin(), x.cos()], dim=-1)


class ZDenoiser(nn.Module):
    """e_theta(z_t [.., D], t [..], c [.., D]) -> [.., D]: an MLP over [z_t, c, time embedding]."""

    def __init__(self, *, width: int, hidden: int) -> None:
        super().__init__()
        self.time = nn.Sequential(nn.Linear(64, hidden), nn.SiLU())
        self.inp = nn.Linear(2 * width, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, width))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(self.inp(torch.cat([z_t, cond], dim=-1)) + self.time(_time_embedding(t, 64)))


def orthogonal_mix(z: torch.Tensor, noise: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """sqrt(1 - mix) u + sqrt(mix) r, rescaled to |z|: u = z / |z|, r = noise made orthogonal to u
    (Gram-Schmidt) and normalised. z, noise [.., D]; mix broadcasts ([.., 1] per vector, or per feature).
    With a per-vector mix the result has cos(result, z) = sqrt(1 - mix) exactly."""
    norm = z.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    u = z / norm
    r = F.normalize(noise - (noise * u).sum(-1, keepdim=True) * u, dim=-1)
    return ((1 - mix).sqrt() * u + mix.sqrt() * r) * norm


@dataclass
class Counterfactuals:
    pool: torch.Tensor  # [B, k_c, T, D] counterfactual texts z*, in z's scale (no gradient)
    strength: torch.Tensor  # [B, k_c] a * m of each pool member
    ortho: torch.Tensor  # L_ortho (scalar, trains the denoiser)
    cosine: torch.Tensor  # mean cos(z*, z) over the pool (a diagnostic)


class SemanticCounterfactual(nn.Module):
    def __init__(
        self, *, width: int, samples: int = 16, topk: int = 8, strength: float = 0.75, start_step: int = 200,
        steps: int = 1000, ddim_steps: int = 4, l_z: float = 2.0, hidden: int = 0,
    ) -> None:
        super().__init__()
        if not 1 <= topk <= samples:
            raise ValueError(f"SC needs 1 <= topk ({topk}) <= samples ({samples})")
        if not 0 < start_step < steps:
            raise ValueError(f"SC start_step {start_step} must lie in (0, {steps})")
        self.samples, self.topk, self.strength, self.start_step, self.l_z = samples, topk, strength, start_step, l_z
        self.ddim = [int(round(x)) for x in torch.linspace(start_step, 0, ddim_steps + 1).tolist()]
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)
        self.denoiser = ZDenoiser(width=width, hidden=hidden or 2 * width)

    @staticmethod
    def normalise(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-RMS latents and the scale to undo it ([..., 1])."""
        scale = z.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)
        return z / scale, scale

    def diffusion_loss(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """z, cond [N, D] (detached inside) -> noise-prediction MSE."""
        x0, _ = self.normalise(z.detach().float())
        t = torch.randint(1, len(self.alpha_bar), (len(x0),), device=x0.device)
        ab = self.alpha_bar[t][:, None]
        eps = torch.randn_like(x0)
        pred = self.denoiser(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, cond.detach().float())
        return F.mse_loss(pred, eps)

    def _denoise(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM from start_step to 0 -> predicted x0."""
        for t, t_prev in zip(self.ddim[:-1], self.ddim[1:]):
            ab, ab_prev = self.alpha_bar[t], self.alpha_bar[t_prev]
            eps = self.denoiser(x, torch.full(x.shape[:-1], t, device=x.device), cond)
            x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps if t_prev > 0 else x0
        return x

    def counterfactuals(self, z: torch.Tensor, cond: torch.Tensor) -> Counterfactuals:
        """z, cond [B, T, D] -> the clip's counterfactual pool (see the module docstring)."""
        b, t, d = z.shape
        s = self.samples
        x0, scale = self.normalise(z.detach().float())
        c = cond.detach().float()[:, None].expand(b, s, t, d)
        ab = self.alpha_bar[self.start_step]
        # one draw per sample, shared by the clip's frames (the [.., 1, D] noises broadcast over T): a
        # counterfactual is one alternative text for the whole clip, as steady over frames as the factual z,
        # so CDCL cannot tell them apart by frame-to-frame jitter alone
        z_sd = ab.sqrt() * x0[:, None] + (1 - ab).sqrt() * torch.randn(b, s, 1, d, device=z.device)
        m = 1.0 - torch.rand(b, s, 1, 1, device=z.device)  # (0, 1] per sample
        feat = 0.5 + 0.5 * (1.0 - torch.rand(b, s, 1, d, device=z.device))  # (0.5, 1] per feature
        ortho_noise = torch.randn(b, s, 1, d, device=z.device).expand_as(z_sd)
        z_cf = orthogonal_mix(z_sd, ortho_noise, (self.strength * m * feat).clamp(max=1.0))
        both = self._denoise(torch.cat([z_cf, z_sd], dim=1), torch.cat([c, c], dim=1))
        z_star, z_hat = both[:, :s], both[:, s:]
        ortho = (z_star - z_hat).pow(2).mean() + self.l_z * F.cosine_similarity(z_star, z_hat, dim=-1).pow(2).mean()
        with torch.no_grad():
            sim = F.cosine_similarity(z_star, x0[:, None], dim=-1).mean(-1)  # [B, S]
            top = sim.topk(self.topk, dim=1).indices  # the hardest (most similar) k_c
            pool = z_star.gather(1, top[..., None, None].expand(-1, -1, t, d)) * scale[:, None]
            strength = (self.strength * m[:, :, 0, 0]).gather(1, top)
            cosine = sim.gather(1, top).mean()
        return Counterfactuals(pool=pool.detach(), strength=strength, ortho=ortho, cosine=cosine)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, Counterfactuals]:
        """z, cond [B, T, D] -> (noise-prediction loss, counterfactuals incl. L_ortho)."""
        return self.diffusion_loss(z.flatten(0, 1), cond.flatten(0, 1)), self.counterfactuals(z, cond)
