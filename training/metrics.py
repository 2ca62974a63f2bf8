"""AVSBench metrics, the official definitions (shared/references/AVSBENCH.md), plus empty rate.

S4 / MS3 (binary), per batch (the official test batch is one video's frames):
  mask_iou: sigmoid(logits) > 0.5; IoU = |P & G| / |P | G| per frame; a frame with empty ground
            truth scores the fraction of pixels both call background; mean over frames.
  f_score:  beta^2 = 0.3; 255 thresholds linspace(0, 1 - 1e-10, 255) on sigmoid(logits);
            P = tp / (pred + 1e-20), R = tp / (gt + 1e-20) per frame and threshold; F NaN -> 0;
            empty-gt frames skipped; mean over frames per threshold, then the max (0 when every
            frame was skipped, as the official code returns its zero-initialised score).
  Dataset numbers are the mean of these per-batch values over batches (BinaryMeter).
AVSS (semantic): argmax over classes; per class per frame I / U counted only when the class is
  in prediction or ground truth; per-class IoU = sum / count (unseen classes 0); mean over all
  classes incl. background. F per class per frame (beta^2 0.3) on hard predictions, same averaging.
Empty rate (ours, for silence / off-screen): fraction of empty-gt frames predicted with < 1% of
  pixels on.
"""

from __future__ import annotations

import torch

BETA2 = 0.3
THRESHOLDS = 255
EMPTY_FRACTION = 0.01


def mask_iou(logits: torch.Tensor, gt: torch.Tensor, eps: float = 1e-7) -> float:
    """Official S4/MS3 mIoU of one batch. logits, gt [N, H, W] (gt 0/1)."""
    logits, gt = _frames(logits), _frames(gt).float()
    n, pixels = gt.shape[0], gt.shape[-1] * gt.shape[-2]
    pred = (torch.sigmoid(logits.float()) > 0.5).float()
    empty = gt.sum((1, 2)) == 0
    inter = (pred * gt).sum((1, 2))
    union = torch.maximum(pred, gt).sum((1, 2))
    inter_empty = ((1 - gt) * (1 - pred)).sum((1, 2))
    inter = torch.where(empty, inter_empty, inter)
    union = torch.where(empty, torch.full_like(union, float(pixels)), union)
    return float((inter / (union + eps)).sum() / n)


def f_score(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """Official S4/MS3 F-measure of one batch (max over 255 thresholds of the frame-mean F)."""
    prob, gt = torch.sigmoid(_frames(logits).float()), _frames(gt).float()
    keep = gt.flatten(1).mean(1) != 0
    if not keep.any():
        return 0.0
    prob, gt = prob[keep].flatten(1), gt[keep].flatten(1)
    th = torch.linspace(0, 1 - 1e-10, THRESHOLDS, device=prob.device)
    # [F, Th]: chunk over thresholds so large frames do not blow memory
    tp_list, ps_list = [], []
    for chunk in th.split(64):
        above = (prob[:, None, :] >= chunk[None, :, None]).float()  # [F, th, P]
        tp_list.append((above * gt[:, None, :]).sum(-1))
        ps_list.append(above.sum(-1))
    tp, pred_sum = torch.cat(tp_list, 1), torch.cat(ps_list, 1)
    prec = tp / (pred_sum + 1e-20)
    rec = tp / (gt.sum(-1, keepdim=True) + 1e-20)
    f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
    f = torch.nan_to_num(f, nan=0.0)
    return float(f.mean(0).max())


def empty_predictions(logits: torch.Tensor, fraction: float = EMPTY_FRACTION) -> torch.Tensor:
    """[N] bool: frame predicted with fewer than ``fraction`` of its pixels on (sigmoid > 0.5)."""
    pred = torch.sigmoid(_frames(logits).float()) > 0.5
    return pred.flatten(1).float().mean(1) < fraction


def _frames(x: torch.Tensor) -> torch.Tensor:
    """[N, H, W] from [N, H, W], [N, 1, H, W] or [B, T, 1, H, W]."""
    if x.ndim == 5:
        x = x.flatten(0, 1)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"binary metrics want one mask channel, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(x.shape)}")
    return x


class BinaryMeter:
    """Dataset-level S4/MS3 numbers: official per-batch mIoU / F averaged over batches, and the
    empty rate over all empty-gt frames. ``add`` one video (batch) at a time for official numbers."""

    def __init__(self) -> None:
        self.iou: list[float] = []
        self.f: list[float] = []
        self.f_has_gt: list[bool] = []
        self.empty_hits = 0
        self.empty_frames = 0

    def add(self, logits: torch.Tensor, gt: torch.Tensor) -> None:
        logits, gt = _frames(logits), _frames(gt)
        self.iou.append(mask_iou(logits, gt))
        self.f.append(f_score(logits, gt))
        empty = gt.flatten(1).sum(1) == 0
        self.f_has_gt.append(bool((~empty).any()))
        self.empty_frames += int(empty.sum())
        self.empty_hits += int((empty_predictions(logits) & empty).sum())

    def result(self) -> dict[str, float | int | None]:
        n = len(self.iou)
        return {
            "mIoU": sum(self.iou) / n if n else None,
            "F": sum(self.f) / n if n else None,  # official: every batch counts, empty-gt batches as 0
            "F_annotated": (sum(f for f, h in zip(self.f, self.f_has_gt) if h) / max(sum(self.f_has_gt), 1))
            if any(self.f_has_gt)
            else None,
            "empty_rate": self.empty_hits / self.empty_frames if self.empty_frames else None,
            "videos": n,
            "empty_frames": self.empty_frames,
        }


class SemanticMeter:
    """AVSS mIoU / F accumulated per class over frames (official semantic definition)."""

    def __init__(self, num_classes: int, eps: float = 1e-10) -> None:
        self.c = num_classes
        self.eps = eps
        self.iou_sum = torch.zeros(num_classes, dtype=torch.float64)
        self.f_sum = torch.zeros(num_classes, dtype=torch.float64)
        self.count = torch.zeros(num_classes, dtype=torch.float64)
        self.empty_hits = 0
        self.empty_frames = 0

    def add(self, logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """logits [N, C, H, W], gt [N, H, W] class ids, valid [N] bool (AVSS gt flag)."""
        if valid is not None:
            logits, gt = logits[valid], gt[valid]
        if len(gt) == 0:
            return
        pred = logits.argmax(1)
        onehot_p = torch.nn.functional.one_hot(pred, self.c).flatten(1, 2).float()  # [N, HW, C]
        onehot_g = torch.nn.functional.one_hot(gt.long(), self.c).flatten(1, 2).float()
        inter = (onehot_p * onehot_g).sum(1)  # [N, C]
        ps, gs = onehot_p.sum(1), onehot_g.sum(1)
        union = ps + gs - inter
        present = (ps + gs) > 0
        iou = inter / (union + self.eps)
        prec, rec = inter / (ps + self.eps), inter / (gs + self.eps)
        f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec + self.eps)
        self.iou_sum += (iou * present).sum(0).double().cpu()
        self.f_sum += (f * present).sum(0).double().cpu()
        self.count += present.sum(0).double().cpu()
        empty = (gt.flatten(1) > 0).sum(1) == 0
        self.empty_frames += int(empty.sum())
        self.empty_hits += int((((pred.flatten(1) > 0).float().mean(1) < EMPTY_FRACTION) & empty).sum())

    def result(self) -> dict[str, float | int | None]:
        seen = self.count > 0
        per_iou = torch.where(seen, self.iou_sum / self.count.clamp_min(1), torch.zeros_like(self.iou_sum))
        per_f = torch.where(seen, self.f_sum / self.count.clamp_min(1), torch.zeros_like(self.f_sum))
        return {
            "mIoU": float(per_iou.mean()),
            "F": float(per_f.mean()),
            "empty_rate": self.empty_hits / self.empty_frames if self.empty_frames else None,
            "classes_seen": int(seen.sum()),
            "empty_frames": self.empty_frames,
        }


def miou_avss(logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    m = SemanticMeter(logits.shape[1])
    m.add(logits, gt, valid)
    return float(m.result()["mIoU"])


def f_score_avss(logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    m = SemanticMeter(logits.shape[1])
    m.add(logits, gt, valid)
    return float(m.result()["F"])
