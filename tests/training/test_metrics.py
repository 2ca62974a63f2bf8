"""Metrics against the official AVSBench definitions, written out the slow way here."""

from __future__ import annotations

import pytest
import torch

from training.metrics import BinaryMeter, SemanticMeter, empty_predictions, f_score, mask_iou


def _official_iou(pred, target, eps=1e-7):
    """AVSBench utility.mask_iou, transcribed."""
    n = pred.size(0)
    num_pixels = pred.size(-1) * pred.size(-2)
    no_obj_flag = target.sum(2).sum(1) == 0
    p = (torch.sigmoid(pred) > 0.5).int()
    inter = (p * target).sum(2).sum(1)
    union = torch.max(p, target).sum(2).sum(1)
    inter_no_obj = ((1 - target) * (1 - p)).sum(2).sum(1)
    inter[no_obj_flag] = inter_no_obj[no_obj_flag]
    union[no_obj_flag] = num_pixels
    return (torch.sum(inter / (union + eps)) / n).item()


def _official_f(pred, gt, pr_num=255):
    """AVSBench utility.Eval_Fmeasure, transcribed (sigmoid first, as the official test calls it)."""
    pred = torch.sigmoid(pred)
    beta2, avg_f, img_num = 0.3, 0.0, 0
    score = torch.zeros(pr_num)
    for i in range(pred.size(0)):
        if torch.mean(gt[i]) == 0.0:
            continue
        thlist = torch.linspace(0, 1 - 1e-10, pr_num)
        prec, recall = torch.zeros(pr_num), torch.zeros(pr_num)
        for j in range(pr_num):
            y_temp = (pred[i] >= thlist[j]).float()
            tp = (y_temp * gt[i]).sum()
            prec[j], recall[j] = tp / (y_temp.sum() + 1e-20), tp / (gt[i].sum() + 1e-20)
        f = (1 + beta2) * prec * recall / (beta2 * prec + recall)
        f[f != f] = 0
        avg_f += f
        img_num += 1
        score = avg_f / img_num
    return score.max().item()


def test_mask_iou_hand_cases():
    gt = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]]).float()
    logits = torch.tensor([[[5.0, -5.0], [5.0, -5.0]], [[-5.0, -5.0], [-5.0, 5.0]]])
    # frame 0: inter 1, union 3 -> 1/3; frame 1 (empty gt): 3 of 4 pixels both background -> 0.75
    assert mask_iou(logits, gt) == pytest.approx((1 / 3 + 0.75) / 2, rel=1e-5)
    assert mask_iou(torch.full((1, 2, 2), -3.0), torch.zeros(1, 2, 2)) == pytest.approx(1.0, rel=1e-5)


def test_metrics_match_official_transcription():
    torch.manual_seed(0)
    logits = torch.randn(5, 12, 12) * 3
    gt = (torch.rand(5, 12, 12) > 0.6).float()
    gt[2] = 0  # an empty-gt frame
    assert mask_iou(logits, gt) == pytest.approx(_official_iou(logits, gt.int()), rel=1e-5)
    assert f_score(logits, gt) == pytest.approx(_official_f(logits, gt), rel=1e-4)


def test_f_score_rules():
    assert f_score(torch.randn(3, 4, 4), torch.zeros(3, 4, 4)) == 0.0  # all frames skipped
    gt = torch.zeros(1, 2, 2)
    gt[0, 0, 0] = 1
    perfect = torch.where(gt > 0, 10.0, -10.0)
    assert f_score(perfect, gt) == pytest.approx(1.0, rel=1e-4)


def test_binary_meter_averages_batches_and_counts_empty_rate():
    m = BinaryMeter()
    gt = torch.zeros(2, 10, 10)
    gt[0, :5] = 1
    logits = torch.where(gt > 0, 4.0, -4.0)
    m.add(logits, gt)  # perfect: IoU 1 both frames (frame 1 empty and predicted empty)
    silent = torch.zeros(1, 10, 10)
    m.add(torch.full((1, 10, 10), 4.0), silent)  # all on: IoU 0 on an empty frame
    r = m.result()
    assert r["mIoU"] == pytest.approx(0.5, rel=1e-5)
    assert r["empty_frames"] == 2 and r["empty_rate"] == pytest.approx(0.5)
    assert r["F"] == pytest.approx(0.5, rel=1e-4) and r["F_annotated"] == pytest.approx(1.0, rel=1e-4)


def test_empty_prediction_threshold_is_one_percent():
    x = torch.full((1, 10, 10), -5.0)
    assert empty_predictions(x).item()
    x[0, 0, 0] = 5.0  # exactly 1% on: not empty
    assert not empty_predictions(x).item()


def test_semantic_meter_hand_case():
    # 3 classes, 2 frames of 1x2 pixels
    gt = torch.tensor([[[0, 1]], [[2, 2]]])
    pred_ids = torch.tensor([[[0, 1]], [[2, 0]]])
    logits = torch.nn.functional.one_hot(pred_ids, 3).permute(0, 3, 1, 2).float()
    m = SemanticMeter(3)
    m.add(logits, gt)
    r = m.result()
    # class 0: frame0 IoU 1, frame1 IoU 0 (pred only) -> 0.5; class 1: 1; class 2: frame1 1/2 -> 0.5
    assert r["mIoU"] == pytest.approx((0.5 + 1 + 0.5) / 3, rel=1e-6)
    # F: class 0 frame1 p=0 -> 0, frame0 1 -> 0.5; class 1 -> 1; class 2: p=1, r=0.5 -> 1.3*0.5/(0.3+0.5)
    f2 = 1.3 * 0.5 / 0.8
    assert r["F"] == pytest.approx((0.5 + 1 + f2) / 3, rel=1e-5)


def test_semantic_meter_unseen_classes_count_zero_and_valid_flags():
    m = SemanticMeter(4)
    gt = torch.zeros(2, 1, 2, dtype=torch.long)
    logits = torch.zeros(2, 4, 1, 2)
    logits[:, 0] = 1
    m.add(logits, gt, torch.tensor([True, False]))
    r = m.result()
    assert r["mIoU"] == pytest.approx(0.25) and r["classes_seen"] == 1 and r["empty_rate"] == 1.0
