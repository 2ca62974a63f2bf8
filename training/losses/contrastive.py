"""The InfoNCE family (the CDCL building block) and the implicit-text diversity term.

For a row a with similarities s_ac to candidates c, positives P_a and negatives N_a:
    loss_a = -log( sum_{P_a} exp(s/t) / (sum_{P_a} exp(s/t) + sum_{N_a} w_ac exp(s/t)) )
With every w = 1 and one positive this is the textbook InfoNCE; CDCL passes w_k ~ sqrt(1 - a_k) for
its counterfactual negatives.
"""

from __future__ import annotations

import torch


def text_diversity(texts: torch.Tensor, clip_of: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between the texts of frames from DIFFERENT clips (issue 21's MIT mend: the
    visual implicit text l_v collapsed to one vector for every clip, cosine ~0.97 across clips, so it
    carried no information). texts [N, D], clip_of [N] -> scalar in [0, 1]; 0 = orthogonal across clips."""
    u = torch.nn.functional.normalize(texts.float(), dim=-1)
    other = clip_of[:, None] != clip_of[None]
    if not other.any():
        return texts.sum() * 0.0
    return (u @ u.t()).pow(2)[other].mean()


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
