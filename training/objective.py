"""The full training objective around one ICF network: L_seg + concepts + l_cf * L_cf + l_cdcl * CDCL
(+ the optional implicit-text diversity term, ours).

``TrainModule`` holds the network and the training-only parts (SC's denoiser, CDCL's heads) in one
nn.Module, so DDP, the optimizer and checkpoints see one thing; the frozen text encoder is held
beside it (not a submodule: never saved, never optimised). Its forward takes a batch on the
device and returns (loss, parts). Batch keys (B clips, T frames, K concepts): images float
[B, T, 3, H, W] in [0, 1]; audio [B, T, 15600]; masks [B, T, H, W] 0/1; semantic long
[B, T, H, W] (0 = background, k + 1 = class k); gt_valid bool [B, T]; labels float [B, T, K]
(heard classes); label_valid bool [B, T]; optional frame_times [B, T] seconds (where segments
close, by the stream's rule model.segment_closes; absent: one frame per segment, AVSBench).
"""

from __future__ import annotations

import torch
from torch import nn

from model import ICFNet, ring_pushes, segment_closes

from .config import TrainConfig
from .losses import CDCL, SemanticCounterfactual, bce_dice, ce_dice, concept_loss, pool_region, text_diversity


def aux_ramp(progress: float, start: float = 0.05, full: float = 0.25) -> float:
    """SC and CDCL weights ramp from 0 to 1 over this span of training: their targets (a factual
    text, a region embedding) mean little before the network segments at all."""
    return float(min(max((progress - start) / max(full - start, 1e-6), 0.0), 1.0))


def _batch_times(batch: dict[str, torch.Tensor]) -> list[float] | None:
    times = batch.get("frame_times")
    if times is None:
        return None
    if not torch.equal(times, times[:1].expand_as(times)):
        raise ValueError("clips of one batch must share frame times (same segment_frames and fps)")
    return times[0].tolist()


def batch_closes(batch: dict[str, torch.Tensor]) -> list[bool] | None:
    """Segment-close flags of the batch's clips from their frame times (all clips share them)."""
    times = _batch_times(batch)
    return None if times is None else segment_closes(times)


def batch_pushes(batch: dict[str, torch.Tensor], ring_rate: int) -> list[bool] | None:
    """Frame-ring push flags from the frame times at the network's frame_ring_rate (the stream's
    rule, model.ring_pushes); None (every frame pushes) for clips without times (AVSBench, 1 fps)."""
    times = _batch_times(batch)
    return None if times is None else ring_pushes(times, ring_rate)


class TrainModule(nn.Module):
    def __init__(self, net: ICFNet, cfg: TrainConfig) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        mcfg = net.config
        width = mcfg.width
        self._encoder = None
        self._calls = 0  # training forwards so far (text_every)
        if mcfg.mit and cfg.text_encoder:
            from model.text_encoder import load_text_encoder

            self.__dict__["_encoder"] = load_text_encoder()  # plain attribute: not a submodule
            if not cfg.init:
                net.implicit.init_from_words(self._encoder, mcfg.concepts)
        if cfg.sc and not mcfg.mit:  # SC works on the factual text z, which only MIT makes: it would do nothing
            raise ValueError("sc=true needs MIT (frame / segment / video text on): SC works on MIT's factual text z; set sc=false")
        self.sc = (
            SemanticCounterfactual(
                width=width, samples=cfg.sc_samples, topk=cfg.sc_topk, strength=cfg.sc_strength,
                start_step=cfg.sc_step, ddim_steps=cfg.sc_ddim_steps, l_z=cfg.sc_lz,
            )
            if cfg.sc
            else None
        )
        self.cdcl = (
            CDCL(
                width=width, dim=cfg.cdcl_dim, weights=cfg.cdcl_weights, temperature=cfg.cdcl_temperature,
                distance=cfg.cdcl_distance, gamma=cfg.cdcl_gamma,
            )
            if cfg.cdcl
            else None
        )

    def text_vectors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The implicit texts through the frozen encoder (gradient to the tokens), once every
        ``text_every`` training steps (1: every step, as the paper)."""
        if self._encoder is None or not self.training:
            return None
        self._calls += 1
        if (self._calls - 1) % self.cfg.text_every:
            return None  # the stored texts (constants) this step; the tokens rest
        self._encoder.to(self.net.implicit.tokens_visual.device)
        return self.net.implicit.encode(self._encoder)

    def forward(self, batch: dict[str, torch.Tensor], ramp: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, net = self.cfg, self.net
        b, t = batch["images"].shape[:2]
        out = net.clip(batch["images"], batch["audio"], closes=batch_closes(batch), pushes=batch_pushes(batch, net.config.frame_ring_rate),
                       text_vectors=self.text_vectors())
        logits = out.mask_logits.flatten(0, 1)  # [N, C, H, W]
        masks = batch["masks"].flatten(0, 1)
        valid = batch["gt_valid"].flatten()
        seg = {"w_bce": cfg.w_bce, "w_dice": cfg.w_dice, "w_focal": cfg.w_focal, "focal_gamma": cfg.focal_gamma}
        if net.config.semantic:
            loss, parts = ce_dice(logits, batch["semantic"].flatten(0, 1), valid, **seg)
        else:
            loss, parts = bce_dice(logits[:, 0], masks, valid, **seg)
        labels = batch["labels"].flatten(0, 1)
        known = batch["label_valid"].flatten()
        if cfg.w_concept:
            c = concept_loss(out.concept_logits.flatten(0, 1), labels, known)
            loss = loss + cfg.w_concept * c
            parts["concept"] = c.detach()
        texts = out.texts
        if cfg.w_text_diversity and texts is not None:
            # MIT's visual text collapsed to one vector for every clip (issue 21): spread it across clips
            div = text_diversity(texts.l_v, torch.arange(b, device=texts.l_v.device).repeat_interleave(t))
            loss = loss + cfg.w_text_diversity * div
            parts["text_diversity"] = div.detach()
        if (self.sc is None and self.cdcl is None) or ramp <= 0:
            return loss, parts
        cf = None
        if self.sc is not None and texts is not None:
            noise, cf = self.sc(texts.z.view(b, t, -1), out.frame_text.view(b, t, -1))
            l_cf = noise + cfg.w_ortho * cf.ortho
            loss = loss + ramp * cfg.w_sc * l_cf
            parts.update(sc_noise=noise.detach(), sc_ortho=cf.ortho.detach(), sc_cos=cf.cosine)
        if self.cdcl is not None:
            anchor = valid & (masks.flatten(1).sum(1) > 0)  # frames with a sounding object in view
            use_pool = cf is not None
            total, cparts = self.cdcl(
                visual=pool_region(out.pixels, masks),
                audio=out.audio,
                anchor=anchor,
                frames=t,
                z=None if texts is None else texts.z,
                pool=cf.pool if use_pool else None,
                strength=cf.strength if use_pool else None,
                audio_text=None if texts is None else texts.audio_match,
                labels=labels,
                known=known,
            )
            loss = loss + ramp * cfg.w_cdcl * total
            parts.update(cparts)
        return loss, parts
