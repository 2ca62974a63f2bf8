"""Compare any backend with the torch fp32 reference on random and synthetic frames.

What "passes" means is engine.tolerance's rule, the one export and the builds apply (fp32: scale-aware
max abs diff and mask agreement; reduced precision: pooled mask IoU). The reference rolls the ring state
on the synthetic sequence, and both sides see the identical inputs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from . import runtime, spec
from .inputs import random_inputs, synthetic_sequence
from .tolerance import IoU, Parity
from .torch_backend import load_reference_net


def check(
    artifact: str | Path,
    backend: str = "auto",
    *,
    weights: str | Path | None = None,
    random_frames: int = 3,
    synthetic_frames: int = 8,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Runs the comparison; returns a report dict with ``passed`` and the numbers behind it."""
    import torch

    cand = runtime.load(artifact, backend, **options)
    ref_net, _, ckpt = load_reference_net(artifact, weights)
    ref_net = ref_net.float().cpu().eval()

    def ref_step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = ref_net(*(torch.from_numpy(inputs[n]) for n in spec.INPUT_NAMES))
        return {n: o.numpy() for n, o in zip(spec.OUTPUT_NAMES, outs)}

    rng = np.random.default_rng(seed)
    cases = [("random", random_inputs(cand.input_specs, rng)) for _ in range(random_frames)]
    cases += [("synthetic", x) for x in synthetic_sequence(cand.input_specs, synthetic_frames, rng, step=ref_step, frames_per_segment=3)]
    parity = {"random": Parity(), "synthetic": Parity(), "all": Parity()}
    latencies = []
    for kind, inputs in cases:
        ref = ref_step(inputs)
        t0 = time.perf_counter()
        got = cand.infer(inputs)
        latencies.append(time.perf_counter() - t0)
        parity[kind].add(ref, got)
        parity["all"].add(ref, got)

    verdict = parity["all"].verdict(cand.precision)
    ious: dict[str, IoU] = {k: p.iou for k, p in parity.items()}
    report = {
        "passed": bool(verdict["passed"]),
        "rule": verdict["rule"],
        "failed": verdict["failed"],
        "backend": cand.info(),
        "reference": {"backend": "torch eager fp32 CPU", "checkpoint": str(ckpt)},
        "frames": {"random": random_frames, "synthetic": synthetic_frames},
        "max_abs_logit_diff": verdict["max_abs_logit_diff"],
        "allowed_logit_diff": verdict["allowed_logit_diff"],
        "logit_range": verdict["logit_range"],
        "mask_agreement": verdict["mask_agreement"],
        "max_abs_diff": {k: {n: parity[k].worst.get(n, 0.0) for n in spec.OUTPUT_NAMES} for k in ("random", "synthetic")},
        "mask_iou": {"pooled": ious["all"].pooled(), "random": ious["random"].pooled(), "synthetic": ious["synthetic"].pooled(),
                     "min_frame": min(ious["all"].frames)},
        "candidate_p50_ms_incl_first": float(np.median(latencies) * 1e3),
    }
    cand.close()
    return report


def format_report(report: dict[str, Any]) -> str:
    b = report["backend"]
    lines = [
        f"backend   {b['backend']} on {b['device']} ({b['precision']}) - {b['reason']}",
        f"artifact  {b['artifact']}",
        f"reference {report['reference']['backend']} from {report['reference']['checkpoint']}",
        f"{'frames':<10} {'mask_logits':>12} {'concept_logits':>15} {'frame_text':>11} {'segment_text':>13} {'mask IoU':>9}",
    ]
    for kind in ("random", "synthetic"):
        d = report["max_abs_diff"][kind]
        lines.append(
            f"{kind:<10} {d['mask_logits']:>12.2e} {d['concept_logits']:>15.2e} {d['frame_text']:>11.2e} "
            f"{d['segment_text']:>13.2e} {report['mask_iou'][kind]:>9.4f}"
        )
    lines.append(f"max abs logit diff {report['max_abs_logit_diff']:.2e} (allowed {report['allowed_logit_diff']:.2g} at logit "
                 f"range {report['logit_range']:.1f}); mask agreement {report['mask_agreement']:.5f}; "
                 f"pooled mask IoU {report['mask_iou']['pooled']:.4f}")
    lines.append(f"{'PASS' if report['passed'] else 'FAIL'}: {report['rule']}" + (f" ({report['failed']})" if report["failed"] else ""))
    return "\n".join(lines)
