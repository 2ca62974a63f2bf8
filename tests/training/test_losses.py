"""Losses on hand-checked cases: InfoNCE, W2 / entropy of Gaussians, CDCL masks and weights, SC geometry, Dice / BCE / focal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training.losses import (
    CDCL,
    SemanticCounterfactual,
    bce_dice,
    ce_dice,
    concept_loss,
    diagonal_entropy,
    diagonal_gaussian,
    dice_loss,
    focal_binary,
    info_nce,
    orthogonal_mix,
    pool_region,
    text_diversity,
    w2_diagonal,
    w2_full,
)


def test_info_nce_equals_closed_form_2x2():
    s = torch.tensor([[0.9, 0.2], [0.1, 0.7]])
    t = 0.5
    pos = torch.eye(2, dtype=torch.bool)
    row0 = -math.log(math.exp(0.9 / t) / (math.exp(0.9 / t) + math.exp(0.2 / t)))
    row1 = -math.log(math.exp(0.7 / t) / (math.exp(0.1 / t) + math.exp(0.7 / t)))
    assert info_nce(s, pos, temperature=t).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_weighted_info_nce_closed_form():
    s = torch.tensor([[0.5, 0.3, -0.2]])
    pos = torch.tensor([[True, False, False]])
    w = torch.tensor([[0.0, 1.5, 0.5]])
    e = [math.exp(v / 0.2) for v in (0.5, 0.3, -0.2)]
    expect = -math.log(e[0] / (e[0] + 1.5 * e[1] + 0.5 * e[2]))
    assert info_nce(s, pos, temperature=0.2, weights=w).item() == pytest.approx(expect, rel=1e-6)


def test_multi_positive_and_skipped_rows():
    s = torch.tensor([[1.0, 1.0, 0.0], [0.3, 0.1, 0.2]])
    pos = torch.tensor([[True, True, False], [False, False, False]])  # row 1 has no positive: skipped
    expect = -math.log(2 * math.e / (2 * math.e + 1))
    assert info_nce(s, pos, temperature=1.0).item() == pytest.approx(expect, rel=1e-6)


def test_text_diversity_hand_cases():
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # one vector for every clip: collapsed
    clip_of = torch.tensor([0, 0, 1, 1])
    assert text_diversity(same, clip_of).item() == pytest.approx(1.0)
    spread = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])  # clips orthogonal, frames of a clip alike
    assert text_diversity(spread, clip_of).item() == pytest.approx(0.0)
    x = torch.randn(4, 2, requires_grad=True)
    text_diversity(x, clip_of).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert text_diversity(same, torch.zeros(4, dtype=torch.long)).item() == 0.0  # one clip: nothing to spread


def test_dice_and_bce_hand_cases():
    prob = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    gt = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    # inter = 1 + 0.5 = 1.5, sums 2 and 2 -> 1 - (3 + 1) / (4 + 1)
    assert dice_loss(prob, gt).item() == pytest.approx(1 - 4 / 5)
    logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    loss, parts = bce_dice(logits, gt, w_dice=0.0)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)
    # dice part at p = 0.5 everywhere: inter 1, sums 2 + 2 -> 1 - 3 / 5
    assert parts["dice"].item() == pytest.approx(1 - 3 / 5, rel=1e-6)


def test_empty_targets_train_towards_empty_masks():
    gt = torch.zeros(1, 4, 4)
    strong_off = torch.full((1, 4, 4), -8.0)
    on = torch.full((1, 4, 4), 2.0)
    assert bce_dice(strong_off, gt)[0] < 0.01 < bce_dice(on, gt)[0]


def test_valid_flag_excludes_frames():
    logits = torch.stack([torch.full((2, 2), 5.0), torch.full((2, 2), -5.0)])
    gt = torch.ones(2, 2, 2)
    only_good = bce_dice(logits, gt, torch.tensor([True, False]))[0]
    both = bce_dice(logits, gt)[0]
    assert only_good < 0.05 < both


def test_ce_dice_hand_case():
    logits = torch.zeros(1, 3, 1, 2)  # uniform over 3 classes
    target = torch.tensor([[[0, 2]]])
    loss, parts = ce_dice(logits, target, w_dice=0.0)
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)
    # foreground channels 1, 2: p = 1/3 each on 2 pixels -> sum p = 4/3; gt fg = 1 pixel (class 2), inter = 1/3
    assert parts["dice"].item() == pytest.approx(1 - (2 / 3 + 1) / (4 / 3 + 1 + 1), rel=1e-6)


def test_pool_region_is_the_masked_mean():
    pixels = torch.arange(16.0).view(1, 1, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[0, 0, :2] = 1
    assert pool_region(pixels, mask).item() == pytest.approx(0.5)


def test_focal_hand_case_and_in_bce_dice():
    logits, gt = torch.zeros(1, 2, 1), torch.tensor([[[1.0], [0.0]]])
    # p_t = 0.5 everywhere: CE log 2, (1 - p_t)^2 = 1/4; alpha 0.25 for the positive, 0.75 for the negative
    expect = (0.25 + 0.75) / 2 * 0.25 * math.log(2)
    assert focal_binary(logits, gt).item() == pytest.approx(expect, rel=1e-6)
    loss, parts = bce_dice(logits, gt, w_bce=0.0, w_dice=0.0, w_focal=2.0)
    assert loss.item() == pytest.approx(2 * expect, rel=1e-6) and "focal" in parts
    assert focal_binary(torch.full((1, 4), 6.0), torch.ones(1, 4)) < 1e-4  # easy pixels count ~nothing


def test_w2_of_known_diagonal_gaussians():
    mu1, var1 = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 4.0])
    mu2, var2 = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 1.0])
    # ||mu1 - mu2||^2 = 25; sum (sigma1 - sigma2)^2 = (1 - 2)^2 + (2 - 1)^2 = 2
    assert w2_diagonal(mu1, var1, mu2, var2).item() == pytest.approx(27.0)
    assert w2_full(mu1, torch.diag(var1), mu2, torch.diag(var2)).item() == pytest.approx(27.0, rel=1e-5)
    assert w2_diagonal(mu1, var1, mu1, var1).item() == 0.0


def test_w2_full_is_rotation_invariant_and_matches_1d():
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(3, dtype=torch.float64), torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    m1, m2 = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    d = w2_full(m1, s1, m2, s2)
    d_rot = w2_full(q @ m1, q @ s1 @ q.T, q @ m2, q @ s2 @ q.T)
    assert d_rot.item() == pytest.approx(d.item(), rel=1e-8)
    one = w2_full(torch.zeros(1), torch.tensor([[1.0]]), torch.zeros(1), torch.tensor([[9.0]]))
    assert one.item() == pytest.approx(4.0, rel=1e-5)  # (1 - 3)^2


def test_entropy_and_gaussian_fit():
    assert diagonal_entropy(torch.tensor([1.0])).item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e))
    assert diagonal_entropy(torch.tensor([4.0, 1.0])).item() == pytest.approx(math.log(2 * math.pi * math.e) + 0.5 * math.log(4))
    x = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])  # third sample masked out
    mu, var = diagonal_gaussian(x, torch.tensor([[1.0, 1.0, 0.0]]), eps=0.0)
    assert mu.tolist() == [[2.0, 1.0]] and var.tolist() == [[1.0, 1.0]]


def _identity_cdcl(**kw) -> CDCL:
    cdcl = CDCL(width=2, dim=2, temperature=0.5, gamma=0.0, **kw)
    cdcl.visual, cdcl.audio, cdcl.text = nn.Identity(), nn.Identity(), nn.Identity()
    return cdcl


def _unit(*angles):
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles])


def test_cdcl_va_positives_by_audio_text_and_no_same_class_negatives():
    # 3 clips x 1 frame; clips 0 and 1 'say' the same audio text; clips 0 and 2 share their class
    cdcl = _identity_cdcl(weights={"va": 1.0}, distance="prototype")
    vis, aud = _unit(0.0, 1.0, 2.0), _unit(0.1, 1.2, 2.5)
    said = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    _, parts = cdcl(visual=vis, audio=aud, anchor=torch.ones(3, dtype=torch.bool), frames=1, audio_text=said,
                    labels=labels, known=torch.ones(3, dtype=torch.bool))
    dist = (vis[:, None] - aud[None]).pow(2).sum(-1)
    differ = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.bool)  # known, different classes
    pos = torch.eye(3, dtype=torch.bool) | (torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool) & ~differ)
    same_class = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    expect = info_nce(-dist, pos, ~pos & ~same_class, temperature=0.5)
    assert parts["cdcl_va"].item() == pytest.approx(expect.item(), rel=1e-5)
    # without labels, agreeing audio text alone makes clips 0 and 1 positives
    _, free = cdcl(visual=vis, audio=aud, anchor=torch.ones(3, dtype=torch.bool), frames=1, audio_text=said)
    pos2 = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    assert free["cdcl_va"].item() == pytest.approx(info_nce(-dist, pos2, ~pos2, temperature=0.5).item(), rel=1e-5)


def test_cdcl_text_pairs_weight_counterfactuals_by_sqrt_one_minus_strength():
    cdcl = _identity_cdcl(weights={"vt": 1.0}, distance="distribution")
    frames = 2
    vis = _unit(0.0, 0.2)  # one clip, 2 frames
    z = _unit(0.1, 0.3)
    pool = torch.stack([_unit(1.0, 1.1), _unit(2.0, 2.4)])[None]  # [1, k=2, T=2, 2]
    strength = torch.tensor([[0.19, 0.64]])  # sqrt(1 - a): 0.9, 0.6 -> mean-1 weights 1.2, 0.8
    _, parts = cdcl(visual=vis, audio=vis, anchor=torch.ones(2, dtype=torch.bool), frames=frames, z=z, pool=pool, strength=strength)
    g = lambda x: diagonal_gaussian(x[None], torch.ones(1, frames))  # noqa: E731
    gv = g(vis)
    d = [w2_diagonal(gv[0], gv[1], *g(x)).item() for x in (z, pool[0, 0], pool[0, 1])]
    e = [math.exp(-v / 0.5) for v in d]
    expect = -math.log(e[0] / (e[0] + 1.2 * e[1] + 0.8 * e[2]))
    assert parts["cdcl_vt"].item() == pytest.approx(expect, rel=1e-5)


def test_cdcl_backpropagates_to_every_input_and_head():
    torch.manual_seed(0)
    b, t, d = 3, 4, 8
    cdcl = CDCL(width=d, dim=6, weights={"va": 1, "vt": 1, "at": 1}, temperature=0.5, distance="distribution", gamma=0.01)
    vis, aud, z = (torch.randn(b * t, d, requires_grad=True) for _ in range(3))
    anchor = torch.rand(b * t) > 0.2
    total, parts = cdcl(visual=vis, audio=aud, anchor=anchor, frames=t, z=z, pool=torch.randn(b, 2, t, d),
                        strength=torch.rand(b, 2) * 0.75, audio_text=torch.randn(b * t, 5))
    assert {"cdcl_va", "cdcl_vt", "cdcl_at"} <= set(parts) and torch.isfinite(total)
    total.backward()
    assert all(x.grad.abs().sum() > 0 for x in (vis, aud, z))
    assert vis.grad[~anchor].abs().sum() == 0  # frames without a sounding object in view do not count
    assert all(p.grad is not None for p in cdcl.parameters())


def test_orthogonal_mix_geometry():
    torch.manual_seed(1)
    z, noise = torch.randn(5, 16) * 3, torch.randn(5, 16)
    mix = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])[:, None]
    out = orthogonal_mix(z, noise, mix)
    cos = torch.nn.functional.cosine_similarity(out, z, dim=-1)
    assert torch.allclose(cos, (1 - mix[:, 0]).sqrt(), atol=1e-5)  # cos = sqrt(1 - a m)
    assert torch.allclose(out.norm(dim=-1), z.norm(dim=-1), rtol=1e-5)
    assert cos[-1].abs() < 1e-5  # full strength: orthogonal (Gram-Schmidt)


def test_sc_pool_shapes_gradients_and_hardest_first():
    torch.manual_seed(2)
    b, t, d = 2, 3, 8
    sc = SemanticCounterfactual(width=d, samples=6, topk=3, strength=0.75, start_step=200, ddim_steps=2)
    z = torch.randn(b, t, d, requires_grad=True)
    noise, cf = sc(z, torch.randn(b, t, d))
    assert cf.pool.shape == (b, 3, t, d) and cf.strength.shape == (b, 3) and not cf.pool.requires_grad
    assert ((cf.strength > 0) & (cf.strength <= 0.75)).all()
    (noise + cf.ortho).backward()
    assert z.grad is None  # SC learns the distribution of z; it does not move z
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sc.denoiser.parameters())
    # the pool keeps the most similar of the samples: a pool of all samples is no more similar
    full = SemanticCounterfactual(width=d, samples=6, topk=6, strength=0.75, ddim_steps=2)
    full.load_state_dict(sc.state_dict())
    torch.manual_seed(3)
    top = sc.counterfactuals(z.detach(), torch.zeros(b, t, d)).cosine
    torch.manual_seed(3)
    everything = full.counterfactuals(z.detach(), torch.zeros(b, t, d)).cosine
    assert top >= everything


def test_concept_loss_hand_case():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    labels = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    assert concept_loss(logits, labels, torch.tensor([True, True])).item() == pytest.approx(math.log(2), rel=1e-5)
