"""The reference network: output shapes and a cost in the AVSBench/TPAVI range."""

import torch

from bench.baseline_net import build_baseline, cost
from model import AUDIO_SAMPLES


def test_baseline_cost_at_224():
    c = cost((224, 224))  # counted on the meta device: shapes only
    # ResNet-50 (~8.2) + VGGish (~1.8) + TPAVI at four levels (~6) + FPN/head: ~15-18 GFLOPs
    assert 12.0 < c["gflops"] < 22.0
    assert 60.0 < c["params_M"] < 130.0
    # TPAVI's [HW, HW] affinity grows with the square of the pixel count: more than 2x at 2x pixels
    assert cost((224, 448))["gflops"] > 2.0 * c["gflops"] - 10.0


def test_baseline_forward_shapes():
    torch.manual_seed(0)
    net = build_baseline()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 96, 128), 0.3 * torch.randn(1, AUDIO_SAMPLES))
    assert out.shape == (1, 1, 96, 128)
    assert torch.isfinite(out).all()
