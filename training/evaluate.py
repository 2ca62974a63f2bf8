"""Evaluation: run a network over a data spec and report the official metrics.

One clip at a time goes into the meters, so binary numbers follow the official protocol (the
test batch is one video). Used by ``icf-train eval``, by validation inside ``fit`` and by the
experiment script. SynthAVS specs also get the listening rows of training.listening (audio swap,
shuffled / silent audio, ground-truth reference "models"); ``compare_specs`` pairs two weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import model

from .data import SynthDataset, build_dataset, collate, prepare_batch
from .metrics import BinaryMeter, SemanticMeter

LISTENING = ("full", "basic", "off")  # eval --listening: every row, model + reference rows only, none


@torch.no_grad()
def evaluate(
    net: model.ICFNet,
    dataset: torch.utils.data.Dataset,
    *,
    device: torch.device,
    batch_size: int = 8,
    workers: int = 2,
    amp: torch.dtype | None = None,
    max_clips: int = 0,
    per_clip: bool = False,
    progress: bool = False,
) -> dict:
    """Official numbers over the first ``max_clips`` clips; ``per_clip`` adds the per-clip mIoU / F
    lists (binary data) that paired comparisons need."""
    was_training = net.training
    net.eval()
    semantic = net.config.semantic
    meter = SemanticMeter(net.config.mask_channels) if semantic else BinaryMeter()
    n = len(dataset) if max_clips <= 0 else min(max_clips, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda"
    )
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="eval", unit="batch", dynamic_ncols=True, mininterval=1.0)
    for raw in loader:
        batch = prepare_batch(raw, device, net.config.num_concepts)
        with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
            times = batch.get("frame_times")  # segments close and the frame ring samples by the stream rule; none: 1 frame each
            times = None if times is None else times[0].tolist()
            out = net.clip(batch["images"], batch["audio"], closes=None if times is None else model.segment_closes(times),
                           pushes=None if times is None else model.ring_pushes(times, net.config.frame_ring_rate))
        logits = out.mask_logits.float()
        for i in range(logits.shape[0]):  # one video per meter batch, as the official test loop
            valid = batch["gt_valid"][i]
            if semantic:
                meter.add(logits[i], batch["semantic"][i], valid)
            elif valid.any():
                meter.add(logits[i][valid], batch["masks"][i][valid])
    net.train(was_training)
    result = meter.result()
    result["clips"] = n
    if per_clip and not semantic:
        result["per_clip"] = {"mIoU": list(meter.iou), "F": list(meter.f)}
    return result


def evaluate_spec(
    weights: str | Path,
    spec: str,
    *,
    device: torch.device,
    split: str = "test",
    clips: int = 0,
    batch_size: int = 8,
    workers: int = 2,
    listening: str = "full",
    per_clip: bool = False,
    progress: bool = False,
) -> dict:
    """Loads a checkpoint and evaluates it on a data spec at the checkpoint's image size. SynthAVS
    specs add ``listening`` rows (training.listening) unless listening="off"; the data's seed is
    recorded in the result."""
    if listening not in LISTENING:
        raise ValueError(f"listening '{listening}' must be one of {list(LISTENING)}")
    net = model.load_checkpoint(weights).to(device)
    size = tuple(net.config.image_size)
    frames = 5
    dataset = build_dataset(spec, split=split, size=size, frames=frames, length=clips or 200, bias=0.5)
    amp = torch.bfloat16 if device.type == "cuda" else None
    if isinstance(dataset, SynthDataset) and listening != "off" and not net.config.semantic:
        # the listening pass already runs every clip as generated: it feeds the official meter too
        from synthavs import SceneGenerator

        from .listening import listening_report

        n = len(dataset) if clips <= 0 else min(clips, len(dataset))
        meter = BinaryMeter()
        net.eval()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="eval", unit="clip", dynamic_ncols=True, mininterval=1.0)
        try:
            report = listening_report(
                net, SceneGenerator(dataset.scene), clips=n, frames=frames, device=device, batch_size=batch_size, amp=amp,
                full=listening == "full", meter=meter, progress=bar.update if bar is not None else None,
            )  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        result = meter.result()
        result.update(clips=n, listening=report)
        if per_clip:
            result["per_clip"] = {"mIoU": list(meter.iou), "F": list(meter.f)}
    else:
        result = evaluate(
            net, dataset, device=device, batch_size=batch_size, workers=workers, amp=amp, max_clips=clips, per_clip=per_clip,
            progress=progress,
        )
    result.update(data=spec, weights=str(weights), model=net.config.name, image_size=list(size))
    if isinstance(dataset, SynthDataset):
        result["data_seed"] = dataset.scene.seed
    return result


def format_table(rows: list[dict], title: str = "") -> str:
    """Markdown table: data, mIoU, F, empty rate (as percentages where they apply)."""

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [f"### {title}", ""] if title else []
    lines += ["| data | clips | mIoU | F | empty rate |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.get('data', '')} | {r.get('clips', '')} | {pct(r.get('mIoU'))} | {pct(r.get('F'))} | {pct(r.get('empty_rate'))} |"
        )
    return "\n".join(lines)


LISTENING_ROWS = ("model", "shuffled", "silent", "salient-only", "all-objects")


def format_listening(rows: list[dict]) -> str:
    """Markdown table of the listening and reference rows of every result that has them."""

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [
        "| data | row | mIoU | F | prior capture (prior not salient) | follow | salient capture | IoU small / medium / large | empty rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name in LISTENING_ROWS:
            row = r.get("listening", {}).get(name)
            if row is None:
                continue
            bins = row.get("iou_by_size")
            size = " / ".join(pct(v) for v in bins.values()) if bins else "-"
            lines.append(
                f"| {r.get('data', '')} | {name} | {pct(row.get('mIoU'))} | {pct(row.get('F'))} "
                f"| {pct(row.get('prior_capture'))} ({pct(row.get('prior_capture_not_salient'))})"
                f" | {pct(row.get('follow'))} | {pct(row.get('salient_capture'))} | {size} | {pct(row.get('empty_rate'))} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def compare_specs(
    weights_a: str | Path, weights_b: str | Path, specs: list[str], *, device: torch.device, listening: str = "basic", **kw
) -> list[dict]:
    """Both weights on the same clips of each spec; paired bootstrap 95% interval of A - B for mIoU,
    F and (SynthAVS) the listening rates (training.stats)."""
    from .stats import paired_bootstrap, per_clip_metrics

    out = []
    for spec in specs:
        ra = evaluate_spec(weights_a, spec, device=device, listening=listening, per_clip=True, **kw)
        rb = evaluate_spec(weights_b, spec, device=device, listening=listening, per_clip=True, **kw)
        if "per_clip" not in ra:
            raise ValueError(f"--compare needs binary masks; {spec} is semantic (no per-clip numbers)")
        la, lb = ra.get("listening", {}).get("per_clip"), rb.get("listening", {}).get("per_clip")
        ma = per_clip_metrics(la) if la else per_clip_metrics(ra["per_clip"])
        mb = per_clip_metrics(lb) if lb else per_clip_metrics(rb["per_clip"])
        diffs = {k: paired_bootstrap(ma[k], mb[k]) for k in ma if k in mb and _has_frames(ma[k])}
        out.append({"data": spec, "a": str(weights_a), "b": str(weights_b), "diff": diffs, "data_seed": ra.get("data_seed")})
    return out


def checkpoint_seed(weights: str | Path) -> int:
    """The training seed a checkpoint was trained with (its JSON sidecar's train_config.seed)."""
    side = model.weights.sidecar_path(weights)
    try:
        seed = json.loads(side.read_text())["train_config"]["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{weights}: no training seed in {side.name} (train_config.seed); --compare pairs several weights by seed") from None
    return int(seed)


def pair_by_seed(weights_a: list[str], weights_b: list[str]) -> list[tuple[int, str, str]]:
    """[(seed, A, B)] sorted by seed: every seed once per arm, the same seeds in both arms."""
    arms = []
    for name, ws in (("A", weights_a), ("B", weights_b)):
        seeds = {}
        for w in ws:
            s = checkpoint_seed(w)
            if s in seeds:
                raise ValueError(f"--compare arm {name} has two weights of seed {s} ({seeds[s]}, {w}); give one per seed")
            seeds[s] = w
        arms.append(seeds)
    if set(arms[0]) != set(arms[1]):
        raise ValueError(f"--compare arms must share their seeds (A: {sorted(arms[0])}, B: {sorted(arms[1])}); pairs are by seed")
    return [(s, arms[0][s], arms[1][s]) for s in sorted(arms[0])]


def compare_seeds(
    weights_a: list[str], weights_b: list[str], specs: list[str], *, device: torch.device, margin: float = 3.0, **kw
) -> list[dict]:
    """Two recipes, several seeds each: per seed, both weights on the same clips (listening off: the
    official per-clip meter); the seed-level paired interval of A - B (training.stats.seed_paired) is
    the comparison, the per-pair bootstrap over clips only the precision of that pair of networks."""
    from .stats import decide, paired_bootstrap, seed_paired

    pairs = pair_by_seed(weights_a, weights_b)
    out = []
    for spec in specs:
        rows = []
        for seed, wa, wb in pairs:
            ra = evaluate_spec(wa, spec, device=device, listening="off", per_clip=True, **kw)
            rb = evaluate_spec(wb, spec, device=device, listening="off", per_clip=True, **kw)
            if "per_clip" not in ra:
                raise ValueError(f"--compare needs binary masks; {spec} is semantic (no per-clip numbers)")
            clip = {k: paired_bootstrap({"mean": ra["per_clip"][k]}, {"mean": rb["per_clip"][k]}) for k in ("mIoU", "F")}
            rows.append({"seed": seed, "a": wa, "b": wb, "clip_bootstrap": clip})
        seeds = {}
        for k in ("mIoU", "F"):
            st = seed_paired([100 * r["clip_bootstrap"][k]["diff"] for r in rows])
            st["verdict"] = decide(st, margin=margin) if st["n"] >= 2 else "undecided"
            seeds[k] = st
        out.append({"data": spec, "pairs": rows, "seed_level": seeds, "margin": margin, "data_seed": ra.get("data_seed")})
    return out


def format_compare_seeds(rows: list[dict]) -> str:
    lines = ["| data | metric | seed | A | B | A - B | within-pair 95% (clip bootstrap) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for k in ("mIoU", "F"):
            for p in r["pairs"]:
                d = p["clip_bootstrap"][k]
                lines.append(f"| {r['data']} | {k} | {p['seed']} | {100 * d['a']:.1f} | {100 * d['b']:.1f} | {100 * d['diff']:+.1f} |"
                             f" [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] |")
    lines += ["", "| data | metric | seeds | mean A - B | sd over seeds | 95% paired t (seeds) | 95% bootstrap (seeds) | rule |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k, st in r["seed_level"].items():
            lines.append(f"| {r['data']} | {k} | {st['n']} | {st['mean']:+.1f} | {st['sd']:.1f} | [{st['t_lo']:+.1f}, {st['t_hi']:+.1f}] |"
                         f" [{st['boot_lo']:+.1f}, {st['boot_hi']:+.1f}] | {st['verdict']} |")
    if rows:
        lines += ["", f"Pairs by training seed. The seed-level interval is the comparison of the recipes (rule, margin "
                      f"{rows[0]['margin']:g} points: helps if the t interval excludes 0 and the mean is >= margin; no useful "
                      "effect if it lies inside +-margin; else undecided). The clip bootstrap is only the precision of one "
                      "network pair (it treats the trained networks as fixed)."]
    return "\n".join(lines)


def _has_frames(values: dict) -> bool:
    return "mean" in values or float(sum(values["total"])) > 0


def format_compare(rows: list[dict]) -> str:
    lines = ["| data | metric | A | B | A - B | 95% interval (paired bootstrap) | clips |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, d in r["diff"].items():
            lines.append(
                f"| {r['data']} | {name} | {100 * d['a']:.1f} | {100 * d['b']:.1f} | {100 * d['diff']:+.1f} |"
                f" [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] | {d['clips']} |"
            )
    if rows:
        lines += ["", f"A = {rows[0]['a']}, B = {rows[0]['b']}; bootstrap {BOOT_NOTE}"]
    return "\n".join(lines)


BOOT_NOTE = "over clips, 2000 resamples, seed 0; rates are pooled over frames (sum of hits / sum of frames)"


def write_json(path: str | Path, data) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
