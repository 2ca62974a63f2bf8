"""Losses on hand-checked cases: InfoNCE closed form, negative weights, SC geometry, Dice / BCE."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    CDCL,
    SemanticCounterfactual,
    bce_dice,
    bhattacharyya,
    ce_dice,
    concept_loss,
    dice_loss,
    factual_directions,
    info_nce,
    negative_weights,
    pool_region,
    sc_mask_term,
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


def test_negative_weights_mean_one_and_favour_hard_negatives():
    torch.manual_seed(0)
    sim = torch.rand(6, 9) * 2 - 1
    neg = torch.rand(6, 9) > 0.3
    neg[:, 0] = True
    w = negative_weights(sim, neg, hardness=0.5)
    means = (w * neg).sum(1) / neg.sum(1)
    assert torch.allclose(means, torch.ones(6), atol=1e-5)
    assert (w[~neg] == 0).all()
    row = w[0][neg[0]]
    assert row.argmax() == sim[0][neg[0]].argmax()  # the most similar negative weighs most
    assert not w.requires_grad


def test_counterfactual_directions_are_orthogonal_to_the_factual_one():
    torch.manual_seed(1)
    sc = SemanticCounterfactual(width=32, rank=8, samples=3)
    u = sc.U
    assert torch.allclose(u.t() @ u, torch.eye(8), atol=1e-5)  # orthonormal basis
    f = torch.nn.functional.normalize(torch.randn(5, 32), dim=-1)
    v = sc.directions(f)
    assert v.shape == (5, 3, 32)
    assert torch.allclose((v * f[:, None]).sum(-1), torch.zeros(5, 3), atol=1e-5)
    assert torch.allclose(v.norm(dim=-1), torch.ones(5, 3), atol=1e-5)


def test_counterfactual_moves_the_factual_energy():
    torch.manual_seed(2)
    sc = SemanticCounterfactual(width=16, rank=4, samples=2)
    a = torch.randn(3, 16)
    f = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    cols = torch.tensor([0, 2])
    cf = sc.counterfactuals(a, f, cols)
    c = (a * f).sum(-1)
    v = sc.directions(f, cols)
    base = a - c[:, None] * f
    assert torch.allclose((cf * f[:, None]).sum(-1), torch.zeros(3, 2), atol=1e-5)  # factual part removed
    assert torch.allclose(cf - base[:, None], c.abs()[:, None, None] * v, atol=1e-5)  # same energy on v


def test_orthogonal_basis_stays_orthogonal_after_training_steps():
    torch.manual_seed(3)
    sc = SemanticCounterfactual(width=16, rank=4, samples=2, basis_grad="follow")
    opt = torch.optim.SGD(sc.parameters(), lr=0.5)
    f = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    for _ in range(3):
        loss = sc.counterfactuals(torch.randn(4, 16), f).pow(3).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.allclose(sc.U.t() @ sc.U, torch.eye(4), atol=1e-4)


def test_reverse_basis_gradient_flips_sign():
    torch.manual_seed(4)
    f = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    grads = {}
    for mode in ("follow", "reverse", "none"):
        torch.manual_seed(5)
        sc = SemanticCounterfactual(width=8, rank=3, samples=1, basis_grad=mode)
        sc.directions(f, torch.tensor([1])).sum().backward()
        grads[mode] = next(p for p in sc.parameters()).grad.clone()
    assert torch.allclose(grads["reverse"], -grads["follow"]) and grads["none"].abs().sum() == 0


def test_factual_directions_use_labels_else_fallback():
    bank = torch.eye(3, 4)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])
    fallback = torch.tensor([[0.0, 0, 0, 2]] * 3)
    f = factual_directions(bank, labels, fallback)
    assert torch.allclose(f[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(f[1], torch.tensor([0, 1, 1, 0]) / math.sqrt(2))
    assert torch.allclose(f[2], torch.tensor([0.0, 0, 0, 1]))


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


def test_concept_loss_and_sc_terms():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    labels = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    assert concept_loss(logits, labels, torch.tensor([True, True])).item() == pytest.approx(math.log(2), rel=1e-5)
    cf = torch.full((1, 2, 1, 2, 2), 0.0)  # sigmoid 0.5 everywhere
    gt = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert sc_mask_term(cf, gt).item() == pytest.approx(0.5)
    p = torch.tensor([[0.5, 0.5, 0.0]])
    assert bhattacharyya(p, p).item() == pytest.approx(1.0, rel=1e-5)
    assert bhattacharyya(p, torch.tensor([[0.0, 0.0, 1.0]])).item() < 1e-5


def test_cdcl_runs_and_backpropagates():
    torch.manual_seed(6)
    d, k, a, s = 16, 4, 6, 2
    cdcl = CDCL(width=d, dim=8, weights={"fc": 1, "at": 1, "vt": 1, "av": 1}, temps={"fc": 0.1}, hardness=0.5)
    pixels = torch.randn(a, d, 4, 4, requires_grad=True)
    masks = (torch.rand(a, 16, 16) > 0.5).float()
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 3]), k).float()
    total, parts = cdcl(
        region=pool_region(pixels, masks),
        bridged=torch.randn(a, d),
        counterfactual=torch.randn(a, s, d),
        anchor_audio=torch.randn(a, d),
        anchor_labels=labels,
        anchor_known=torch.ones(a, dtype=torch.bool),
        group=torch.tensor([0, 0, 1, 1, 2, 2]),
        all_audio=torch.randn(a, d),
        all_labels=labels,
        all_known=torch.ones(a, dtype=torch.bool),
        named_bank=torch.randn(k, d),
    )
    assert set(parts) == {"cdcl_fc", "cdcl_at", "cdcl_vt", "cdcl_av"} and torch.isfinite(total)
    total.backward()
    assert pixels.grad.abs().sum() > 0


def test_pool_region_is_the_masked_mean():
    pixels = torch.arange(16.0).view(1, 1, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[0, 0, :2] = 1
    assert pool_region(pixels, mask).item() == pytest.approx(0.5)
