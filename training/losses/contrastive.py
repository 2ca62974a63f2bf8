"""The InfoNCE family with distribution-aware negative weights (the CDCL building block).

For a row a with similarities s_ac to candidates c, positives P_a and negatives N_a:
    loss_a = -log( sum_{P_a} exp(s/t) / (sum_{P_a} exp(s/t) + sum_{N_a} w_ac exp(s/t)) )
With every w = 1 and one positive this is the textbook InfoNCE. The weights re-shape the
negative distribution: w_ac = |N_a| * softmax_{N_a}(s_ac / hardness), so harder (more similar)
negatives weigh more and the weights of a row average exactly 1 (the loss scale stays put).
"""

from __future__ import annotations

import torch


def negative_weights(sim: torch.Tensor, negatives: torch.Tensor, hardness: float) -> torch.Tensor:
    """sim [A, C], negatives [A, C] bool -> weights [A, C] (0 off the negatives, mean 1 on them).

    Computed without gradient: the weights describe the distribution, they are not trained."""
    with torch.no_grad():
        logits = (sim.float() / hardness).masked_fill(~negatives, float("-inf"))
        w = torch.softmax(logits, dim=1).nan_to_num(0.0)  # rows without negatives -> 0
        return w * negatives.sum(1, keepdim=True).to(w.dtype)


def info_nce(
    sim: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean multi-positive InfoNCE over rows that have a positive and a negative.

    sim [A, C] similarities (cosines); positives / negatives [A, C] bool (negatives default to
    not-positive); weights [A, C] for the negatives (default 1)."""
    if negatives is None:
        negatives = ~positives
    logits = sim.float() / temperature
    log_w = torch.zeros_like(logits) if weights is None else torch.log(weights.float().clamp_min(1e-12))
    neg_inf = torch.finfo(logits.dtype).min
    num = torch.logsumexp(logits.masked_fill(~positives, neg_inf), dim=1)
    den_terms = torch.where(positives, logits, torch.where(negatives, logits + log_w, torch.full_like(logits, neg_inf)))
    den = torch.logsumexp(den_terms, dim=1)
    rows = positives.any(1) & negatives.any(1)
    if not rows.any():
        return sim.sum() * 0.0
    return (den - num)[rows].mean()
