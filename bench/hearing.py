"""Calibration of the "hears: nothing / unsure" rule (stream/hearing.py) on the shipped weights.

    python -m bench.hearing --clips 24        # ~5 min on 2 CPU cores; prints the table in stream/hearing.py

Sets: SynthAVS test clips (single source, silence, off-screen) and the single-source pictures with
sounds the weights never learned in place of theirs (white noise, a voice-like harmonic sweep, a 1 kHz
tone), all at 0.1 RMS. Per frame: the distance of the concept logits to the model's zero-audio answer
(the rule's "nothing") and the margin between the best two concepts (its "unsure").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

SETS = ("single", "silence", "offscreen", "noise", "voice", "tone")


def _sound(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    frames, n = shape
    t = np.arange(n) / 16000
    out = np.zeros(shape, np.float32)
    for i in range(frames):
        if kind == "noise":
            x = rng.standard_normal(n)
        elif kind == "voice":  # harmonics of a wandering 120 +- 60 Hz pitch, 4 Hz syllable envelope
            ph = 2 * np.pi * np.cumsum(120 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))) / 16000
            x = sum(np.sin(k * ph) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
        else:
            x = np.sin(2 * np.pi * 1000 * t)
        out[i] = 0.1 * x / np.sqrt(np.mean(x**2))
    return torch.from_numpy(out)


@torch.no_grad()
def measure(weights: str, clips: int, sets=SETS, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per set: 'distance' to the zero-audio logits, 'margin' of the best two, 'label' by the rule."""
    import model
    from model.context import initial_state
    from stream.hearing import Hearing
    from training.data import build_dataset, collate, prepare_batch

    net = model.load_checkpoint(weights).eval()
    st = initial_state(1, net.config)
    h, w = net.config.image_size
    ref = net.step(torch.zeros(1, 3, h, w), torch.zeros(1, 15600), st.frame_ring, st.frame_valid, st.segment_ring,
                   st.segment_valid)[3][0].numpy()
    hearing = Hearing(ref, list(net.config.concepts))
    rng, out = np.random.default_rng(seed), {}
    for name in sets:
        mode = name if name in ("single", "silence", "offscreen") else "single"
        ds = build_dataset(f"synthavs:{mode},split=test", split="test", size=(h, w), frames=5, length=clips, bias=0.8)
        logits, shares = [], []
        for i in range(clips):
            item = dict(ds[i])
            if name != mode:
                item["audio"] = _sound(name, tuple(item["audio"].shape), rng)
            b = prepare_batch(collate([item]), torch.device("cpu"), net.config.num_concepts)
            run = net.clip(b["images"], b["audio"], frames_per_segment=1)
            logits.append(run.concept_logits[0].numpy())
            shares.append((run.mask_logits[0, :, 0] > 0).float().mean((-1, -2)).numpy())  # binary models: [T]
        cl = np.concatenate(logits).astype(np.float64)
        share = np.concatenate(shares).astype(np.float64)
        top2 = np.sort(cl, 1)[:, -2:]
        out[name] = {"distance": np.linalg.norm(cl - ref, axis=1), "margin": top2[:, 1] - top2[:, 0],
                     "mask_share": share, "label": np.array([hearing.label(x, m) for x, m in zip(cl, share)])}
    return out


def main(argv: list[str] | None = None) -> int:
    from weights import SHIPPED

    ap = argparse.ArgumentParser(prog="python -m bench.hearing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(SHIPPED), help="checkpoint (default: the shipped weights)")
    ap.add_argument("--clips", type=int, default=24, help="clips per set (5 frames each)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = measure(args.weights, args.clips)
    print("| set | frames | distance min / p50 / max | margin < 1.5 | mask < 0.5% | says nothing | says unsure |\n|---|---|---|---|---|---|---|")
    for name, r in res.items():
        d = r["distance"]
        print(f"| {name} | {d.size} | {d.min():.2f} / {np.median(d):.2f} / {d.max():.2f} | {100 * (r['margin'] < 1.5).mean():.1f}% "
              f"| {100 * (r['mask_share'] < 0.005).mean():.1f}% | {100 * (r['label'] == 'nothing').mean():.1f}% | {100 * (r['label'] == 'unsure').mean():.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
