"""Does MIT's implicit text carry information? Issue 21's collapse measurement.

    python scripts/mit_collapse.py --weights weights/icf-lite-synthavs.safetensors --clips 32

Runs the network over test clips (SynthAVS, 2 frames per second, segments of 2 frames) and reports,
over all pairs of frames from DIFFERENT clips: the mean cosine of the visual implicit text l_v, of the
audio text l_a, of the factual text z and of the visual descriptors (frame g_f); how many distinct visual
/ audio texts win the top-1 match; and how often the top-1 audio text agrees with the heard class
(as a purity: for each text, the share of its frames of its most common class). A cosine near 1 across
clips means the text is the same vector for every clip: it carries (almost) no information.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cross_clip_cosine(x: torch.Tensor, clip_of: torch.Tensor) -> float:
    """Mean cosine over pairs of rows from different clips. x [N, D], clip_of [N]."""
    u = F.normalize(x.float(), dim=-1)
    sim = u @ u.t()
    other = clip_of[:, None] != clip_of[None]
    return float(sim[other].mean())


@torch.no_grad()
def measure(weights: str, spec: str, clips: int) -> dict:
    import model
    from training.data import build_dataset, collate, prepare_batch

    net = model.load_checkpoint(weights).eval()
    if not net.config.mit:
        raise ValueError(f"{weights}: MIT is off in this network (no frame, segment or video text)")
    ds = build_dataset(spec, split="test", size=tuple(net.config.image_size), frames=4, length=clips)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("l_v", "l_a", "z", "g_f", "clip", "top_v", "top_a", "heard")}
    vis, aud = net.implicit.constants()
    tv = net.matcher.text_proj(vis)
    for start in range(0, clips, 4):
        batch = prepare_batch(collate([ds[i] for i in range(start, min(start + 4, clips))]), torch.device("cpu"),
                              net.config.num_concepts)
        times = batch["frame_times"][0].tolist()
        out = net.clip(batch["images"], batch["audio"], closes=model.segment_closes(times),
                       pushes=model.ring_pushes(times, net.config.frame_ring_rate))
        b, t = batch["images"].shape[:2]
        rows["l_v"].append(out.texts.l_v)
        rows["l_a"].append(out.texts.l_a)
        rows["z"].append(out.texts.z)
        rows["g_f"].append(out.frame_text)
        rows["clip"].append(torch.arange(start, start + b).repeat_interleave(t))
        rows["top_v"].append((F.normalize(net.matcher.keys[0](out.frame_text), dim=-1) @ F.normalize(tv, dim=-1).t()).argmax(-1))
        rows["top_a"].append(out.texts.audio_match.argmax(-1))
        lab = batch["labels"].flatten(0, 1)
        rows["heard"].append(torch.where(lab.sum(-1) > 0, lab.argmax(-1), torch.full_like(lab[:, 0], -1, dtype=torch.long)))
    cat = {k: torch.cat(v) for k, v in rows.items()}
    purity = {}
    for name in ("top_a", "top_v"):
        total = hit = 0
        for text in cat[name].unique().tolist():
            heard = [c for c in cat["heard"][cat[name] == text].tolist() if c >= 0]
            if heard:
                total += len(heard)
                hit += Counter(heard).most_common(1)[0][1]
        purity[name] = hit / max(total, 1)
    return {
        "weights": weights, "data": spec, "clips": clips, "frames": int(len(cat["clip"])),
        "cross_clip_cosine": {k: round(cross_clip_cosine(cat[k], cat["clip"]), 4) for k in ("l_v", "l_a", "z", "g_f")},
        "distinct_top1": {"visual": int(cat["top_v"].unique().numel()), "visual_of": int(vis.shape[0]),
                          "audio": int(cat["top_a"].unique().numel()), "audio_of": int(aud.shape[0])},
        "heard_classes": int((cat["heard"][cat["heard"] >= 0]).unique().numel()),
        "class_purity_of_top1": {k: round(v, 3) for k, v in purity.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", action="append", required=True)
    p.add_argument("--data", default="synthavs:single,split=test,segment_frames=2")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--json", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    res = [measure(w, a.data, a.clips) for w in a.weights]
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
