"""Diagonal vs full-covariance 2-Wasserstein for CDCL: cost and agreement (the measurement behind
the diagonal choice). ``python -m lab.measure_w2``. Features as CDCL sees them: a clip
mean plus frame noise on the unit sphere; the full covariance gets + eps I (rank <= T - 1 otherwise)."""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from training.losses.cdcl import diagonal_gaussian, w2_diagonal, w2_full


def _cov(z: torch.Tensor, eps: float) -> torch.Tensor:
    c = z - z.mean(1, keepdim=True)
    return c.transpose(1, 2) @ c / z.shape[1] + eps * torch.eye(z.shape[-1])


def _ranks(v: torch.Tensor) -> torch.Tensor:
    return v.argsort().argsort().double()


def main(clips: int = 16, frames: int = 6, dim: int = 64, eps: float = 1e-3) -> dict:
    torch.manual_seed(0)
    a, t, p = clips, frames, dim
    x = F.normalize(torch.randn(a, 1, p) + 0.5 * torch.randn(a, t, p), dim=-1)  # visual
    y = F.normalize(x + 0.3 * torch.randn(a, t, p), dim=-1)  # audio of the same clips
    mu1, var1 = diagonal_gaussian(x, torch.ones(a, t), eps)
    mu2, var2 = diagonal_gaussian(y, torch.ones(a, t), eps)
    start = time.perf_counter()
    d_diag = w2_diagonal(mu1[:, None], var1[:, None], mu2[None], var2[None])
    t_diag = time.perf_counter() - start
    c1, c2 = _cov(x, eps).double(), _cov(y, eps).double()
    start = time.perf_counter()
    d_full = w2_full(mu1[:, None].double(), c1[:, None].expand(a, a, p, p), mu2[None].double(), c2[None].expand(a, a, p, p))
    t_full = time.perf_counter() - start
    spearman = torch.corrcoef(torch.stack([_ranks(d_diag.flatten()), _ranks(d_full.flatten())]))[0, 1].item()
    same_nearest = (d_diag.argmin(1) == d_full.argmin(1)).float().mean().item()
    print(
        f"{a} clips x {t} frames, P={p}: diagonal {t_diag * 1e3:.2f} ms, full {t_full * 1e3:.1f} ms "
        f"({t_full / t_diag:.0f}x); Spearman(diagonal, full) = {spearman:.3f}; same nearest audio for "
        f"{same_nearest * 100:.0f}% of rows; full covariance rank <= {t - 1} of {p} before + eps I"
    )
    return {"diag_ms": t_diag * 1e3, "full_ms": t_full * 1e3, "spearman": spearman, "same_nearest": same_nearest}


if __name__ == "__main__":
    main()
