"""The full training objective around one ICF network: segmentation + concepts + SC + CDCL.

``TrainModule`` holds the network and the training-only parts (SC basis, CDCL heads) in one
nn.Module, so DDP, the optimizer and checkpoints see one thing. Its forward takes a batch on
the device and returns (loss, parts). Batch keys (B clips, T frames, K concepts):
images float [B, T, 3, H, W] in [0, 1]; audio [B, T, 15600]; masks [B, T, H, W] 0/1;
semantic long [B, T, H, W] (0 = background, k + 1 = class k); gt_valid bool [B, T];
labels float [B, T, K] (heard classes); label_valid bool [B, T].
"""

from __future__ import annotations

import torch
from torch import nn

from model import ICFNet

from .config import TrainConfig
from .losses import (
    CDCL,
    SemanticCounterfactual,
    bce_dice,
    bhattacharyya,
    ce_dice,
    concept_distribution,
    concept_loss,
    factual_directions,
    pool_region,
    sc_mask_term,
)


def aux_ramp(progress: float, start: float = 0.05, full: float = 0.25) -> float:
    """SC and CDCL weights ramp from 0 to 1 over this span of training: their targets (a factual
    concept direction, a region embedding) mean little before the network segments at all."""
    return float(min(max((progress - start) / max(full - start, 1e-6), 0.0), 1.0))


class TrainModule(nn.Module):
    def __init__(self, net: ICFNet, cfg: TrainConfig) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        width = net.config.width
        self.sc = (
            SemanticCounterfactual(width=width, rank=cfg.sc_rank, samples=cfg.sc_samples, basis_grad=cfg.sc_basis_grad)
            if cfg.sc
            else None
        )
        self.cdcl = (
            CDCL(width=width, dim=cfg.cdcl_dim, weights=cfg.cdcl_weights, temps=cfg.cdcl_temps, hardness=cfg.cdcl_hardness)
            if cfg.cdcl
            else None
        )

    def forward(self, batch: dict[str, torch.Tensor], ramp: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, net = self.cfg, self.net
        b, t = batch["images"].shape[:2]
        out = net.clip(batch["images"], batch["audio"], frames_per_segment=1)
        logits = out.mask_logits.flatten(0, 1)  # [N, C, H, W]
        masks = batch["masks"].flatten(0, 1)
        valid = batch["gt_valid"].flatten()
        if net.config.semantic:
            loss, parts = ce_dice(logits, batch["semantic"].flatten(0, 1), valid, w_bce=cfg.w_bce, w_dice=cfg.w_dice)
        else:
            loss, parts = bce_dice(logits[:, 0], masks, valid, w_bce=cfg.w_bce, w_dice=cfg.w_dice)
        labels = batch["labels"].flatten(0, 1)
        known = batch["label_valid"].flatten()
        if cfg.w_concept:
            c = concept_loss(out.concept_logits.flatten(0, 1), labels, known)
            loss = loss + cfg.w_concept * c
            parts["concept"] = c.detach()
        if (self.sc is None and self.cdcl is None) or ramp <= 0:
            return loss, parts

        named = net.text_bank.entries()[: net.config.num_concepts]
        # anchors: frames with ground truth and a sounding object in view
        anchor = valid & (masks.flatten(1).sum(1) > 0)
        idx = torch.nonzero(anchor).flatten()
        cf = None
        if self.sc is not None and len(idx):
            lab = labels[idx] * known[idx, None].to(labels.dtype)
            factual = factual_directions(named, lab, out.frame_text[idx])
            cf = self.sc.counterfactuals(out.audio_bridged[idx], factual)  # [A, S, D]
            s = cf.shape[1]
            texts = [x[idx].repeat_interleave(s, 0) for x in net.texts_for(out.frame_text, out.segment_text, out.video_text)]
            levels = [lv[idx].repeat_interleave(s, 0) for lv in out.levels]
            cf_logits, _ = net.decode(levels, cf.flatten(0, 1), texts)
            cf_logits = cf_logits.view(len(idx), s, *cf_logits.shape[1:])
            sem = batch["semantic"].flatten(0, 1)[idx] if net.config.semantic else None
            term = sc_mask_term(cf_logits, masks[idx], sem)
            temp = net.config.text_temperature
            overlap = bhattacharyya(
                concept_distribution(out.audio_bridged[idx], named, temp)[:, None].expand(-1, s, -1),
                concept_distribution(cf, named, temp),
            )
            loss = loss + ramp * (cfg.w_sc * term + cfg.w_sc_div * overlap)
            parts.update(sc=term.detach(), sc_div=overlap.detach())
        if self.cdcl is not None:
            group = torch.arange(b, device=idx.device).repeat_interleave(t)
            total, cparts = self.cdcl(
                region=pool_region(out.pixels[idx], masks[idx]),
                bridged=out.audio_bridged[idx],
                counterfactual=cf,
                anchor_audio=out.audio[idx],
                anchor_labels=labels[idx],
                anchor_known=known[idx],
                group=group[idx],
                all_audio=out.audio,
                all_labels=labels,
                all_known=known,
                named_bank=named,
            )
            loss = loss + ramp * cfg.w_cdcl * total
            parts.update(cparts)
        return loss, parts
