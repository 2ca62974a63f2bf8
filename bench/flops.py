"""Parameters and FLOPs of one forward, counted on the meta device (torch, lazily imported).

Its own module so that bench/backends.py (runners) and bench/baseline_net.py (the reference
network) both use it without importing each other.
"""

from __future__ import annotations


def cost(net, example: tuple) -> dict[str, float]:
    """Parameters (M) and GFLOPs of one call (torch's counter: a multiply-add is 2 FLOPs).

    Counted on the meta device (shapes only, no arithmetic: instant even for ResNet-50 on a busy
    CPU). It MOVES ``net`` to meta: call it last on a net that is not needed afterwards.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in net.parameters()) / 1e6
    net = net.to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*(x.to("meta") for x in example))
    flops = counter.get_total_flops()
    return {"params_M": params, "gflops": flops / 1e9, "gmacs": flops / 2e9}
