"""Calibration of the "hears: nothing / unsure" rule (stream/stages/hearing.py) on the shipped weights.

    python -m bench.hearing --clips 24                   # SynthAVS sets, the SynthAVS weights
    python -m bench.hearing --data stamps --clips 24     # real-media sets, the real-media weights (the default)

Sets: test clips (single source, silence, off-screen) and the single-source pictures with
sounds the weights never learned in place of theirs (white noise, a voice-like harmonic sweep, a 1 kHz
tone), all at 0.1 RMS. With --data stamps (real photos + recordings, synthavs.stamps) the sets add
``heldout`` (scenes of the held-out objects: real recordings the weights never heard) and ``speech``
(real people speaking: the package's spoken descriptions, NAME_desc.ogg, never used in training) in place
of the voice-like sweep. Per frame: the distance of the concept logits to the model's zero-audio answer
(the rule's "nothing"), the margin between the best two concepts (its "unsure"), the label the rule gives,
and whether a named label is right (a class that sounds in that frame).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

SETS = ("single", "silence", "offscreen", "noise", "voice", "tone")
STAMPS_SETS = ("single", "silence", "offscreen", "heldout", "speech", "noise", "tone")


def _speech(shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """Real speech: windows cut from the stamps package's English spoken descriptions (NAME_desc.ogg)."""
    from synthavs import stamps

    files = sorted(stamps.STAMPS_DIR.rglob("*_desc.ogg"))
    frames, n = shape
    out = np.zeros(shape, np.float32)
    for i in range(frames):
        x = stamps.decode_audio(files[int(rng.integers(len(files)))])
        x = np.pad(x, (0, max(0, n - len(x))))
        start = int(rng.integers(0, len(x) - n + 1))
        w = x[start : start + n]
        out[i] = 0.1 * w / max(np.sqrt(np.mean(w**2)), 1e-6)
    return torch.from_numpy(out)


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
def measure(weights: str, clips: int, sets=SETS, seed: int = 0, data: str = "synthavs") -> dict[str, dict[str, np.ndarray]]:
    """Per set: 'distance' to the zero-audio logits, 'margin' of the best two, 'label' by the rule, 'right' (a
    named label is a class sounding in that frame)."""
    import model
    from model.context import initial_state
    from stream.stages.hearing import Hearing
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
        extra = ",objects=heldout" if name == "heldout" else ""
        ds = build_dataset(f"{data}:{mode},split=test{extra}", split="test", size=(h, w), frames=5, length=clips, bias=0.8)
        logits, shares, heard = [], [], []
        for i in range(clips):
            item = dict(ds[i])
            own = name in ("single", "silence", "offscreen", "heldout")
            if not own:
                make = _speech if name == "speech" else lambda shape, r, kind=name: _sound(kind, shape, r)
                item["audio"] = make(tuple(item["audio"].shape), rng)
            named = item["labels"] if own and name != "heldout" else np.zeros((item["labels"].shape[0], len(hearing.names)))
            heard.append(named.astype(bool))
            b = prepare_batch(collate([item]), torch.device("cpu"), net.config.num_concepts)
            run = net.clip(b["images"], b["audio"], frames_per_segment=1)
            logits.append(run.concept_logits[0].numpy())
            shares.append((run.mask_logits[0, :, 0] > 0).float().mean((-1, -2)).numpy())  # binary models: [T]
        cl = np.concatenate(logits).astype(np.float64)
        share = np.concatenate(shares).astype(np.float64)
        top2 = np.sort(cl, 1)[:, -2:]
        labels = np.array([hearing.label(x, m) for x, m in zip(cl, share)])
        truth = np.concatenate(heard)
        index = {n: k for k, n in enumerate(hearing.names)}
        right = np.array([lab in index and truth[j, index[lab]] for j, lab in enumerate(labels)])
        out[name] = {"distance": np.linalg.norm(cl - ref, axis=1), "margin": top2[:, 1] - top2[:, 0],
                     "mask_share": share, "label": labels, "right": right}
    return out


def main(argv: list[str] | None = None) -> int:
    from weights import STAMPS, SYNTHAVS

    ap = argparse.ArgumentParser(prog="python -m bench.hearing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthavs", choices=("synthavs", "stamps"), help="which scenes (default synthavs)")
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights trained on --data)")
    ap.add_argument("--clips", type=int, default=24, help="clips per set (5 frames each)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    weights = args.weights or str(STAMPS if args.data == "stamps" else SYNTHAVS)
    res = measure(weights, args.clips, sets=STAMPS_SETS if args.data == "stamps" else SETS, data=args.data)
    print(f"weights {weights}, data {args.data}, {args.clips} clips x 5 frames per set")
    print("| set | frames | distance min / p50 / max | margin < 1.5 | mask < 0.5% | says nothing | says unsure | names a class "
          "| named and right |\n|---|---|---|---|---|---|---|---|---|")
    for name, r in res.items():
        d, lab = r["distance"], r["label"]
        named = (lab != "nothing") & (lab != "unsure")
        print(f"| {name} | {d.size} | {d.min():.2f} / {np.median(d):.2f} / {d.max():.2f} | {100 * (r['margin'] < 1.5).mean():.1f}% "
              f"| {100 * (r['mask_share'] < 0.005).mean():.1f}% | {100 * (lab == 'nothing').mean():.1f}% | {100 * (lab == 'unsure').mean():.1f}% "
              f"| {100 * named.mean():.1f}% | {100 * r['right'][named].mean() if named.any() else 0:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
