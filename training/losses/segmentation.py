"""Segmentation losses (ICF: L_seg = BCE + Dice + focal): binary masks, and CE + Dice + focal for
semantic masks. Focal = mean over pixels of -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017).

Frames whose ground truth is missing (S4 train frames 2..5, AVSS padding) are left out with a
``valid`` flag. Silent and off-screen frames have an EMPTY target and are trained as such:
BCE pushes every pixel down and the smoothed Dice (eps in numerator and denominator) becomes
1 - eps / (sum(p) + eps), which only a near-empty prediction makes small.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-frame soft Dice loss. prob, target [N, ...] in [0, 1] -> [N]."""
    p, g = prob.flatten(1), target.flatten(1)
    inter = (p * g).sum(1)
    return 1.0 - (2.0 * inter + eps) / (p.sum(1) + g.sum(1) + eps)


def _masked_mean(per_frame: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return per_frame.mean()
    w = valid.to(per_frame.dtype)
    return (per_frame * w).sum() / w.sum().clamp_min(1.0)


def focal_binary(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Per-frame sigmoid focal loss. logits, target [N, ...] (target 0/1) -> [N]. alpha < 0: no class weight."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(1).mean(1)


def bce_dice(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *, w_bce: float = 1.0, w_dice: float = 1.0,
    w_focal: float = 0.0, focal_gamma: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary masks. logits, target [N, H, W] (target 0/1); valid [N] bool. Returns (loss, parts)."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    dice = dice_loss(torch.sigmoid(logits), target)
    bce_m, dice_m = _masked_mean(bce, valid), _masked_mean(dice, valid)
    loss, parts = w_bce * bce_m + w_dice * dice_m, {"bce": bce_m.detach(), "dice": dice_m.detach()}
    if w_focal:
        focal = _masked_mean(focal_binary(logits, target, gamma=focal_gamma), valid)
        loss, parts["focal"] = loss + w_focal * focal, focal.detach()
    return loss, parts


def ce_dice(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *, w_bce: float = 1.0, w_dice: float = 1.0,
    w_focal: float = 0.0, focal_gamma: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Semantic masks. logits [N, C, H, W] (channel 0 = background), target [N, H, W] class ids.

    Dice is taken jointly over the foreground channels 1..C-1 (one ratio per frame), so an empty
    ground truth asks for no foreground anywhere."""
    logits = logits.float()
    ce = F.cross_entropy(logits, target.long(), reduction="none").flatten(1).mean(1)
    prob = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    dice = dice_loss(prob, onehot)
    ce_m, dice_m = _masked_mean(ce, valid), _masked_mean(dice, valid)
    loss, parts = w_bce * ce_m + w_dice * dice_m, {"ce": ce_m.detach(), "dice": dice_m.detach()}
    if w_focal:  # multi-class focal: (1 - p_true)^gamma * CE
        p_true = torch.exp(-F.cross_entropy(logits, target.long(), reduction="none"))
        focal_px = (1 - p_true) ** focal_gamma * F.cross_entropy(logits, target.long(), reduction="none")
        focal = _masked_mean(focal_px.flatten(1).mean(1), valid)
        loss, parts["focal"] = loss + w_focal * focal, focal.detach()
    return loss, parts


def concept_loss(concept_logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the concept logits [N, K] to the heard-class distribution labels [N, K]
    (multi-label rows share the mass). Frames without a known label (silence, MS3) are skipped."""
    has = valid & (labels.sum(1) > 0)
    if not has.any():
        return concept_logits.sum() * 0.0
    q = labels[has] / labels[has].sum(1, keepdim=True)
    return -(q * torch.log_softmax(concept_logits[has].float(), dim=1)).sum(1).mean()
