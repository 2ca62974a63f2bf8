"""Evaluation: run a network over a data spec and report the official metrics.

One clip at a time goes into the meters, so binary numbers follow the official protocol (the
test batch is one video). Used by ``icf-train eval``, by validation inside ``fit`` and by the
experiment script.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import model

from .data import build_dataset, collate, prepare_batch
from .metrics import BinaryMeter, SemanticMeter


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
    progress: bool = False,
) -> dict:
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
            times = batch.get("frame_times")  # segments close by the stream rule; none: 1 frame each
            out = net.clip(batch["images"], batch["audio"], closes=None if times is None else model.segment_closes(times[0].tolist()))
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
    progress: bool = False,
) -> dict:
    """Loads a checkpoint and evaluates it on a data spec at the checkpoint's image size."""
    net = model.load_checkpoint(weights).to(device)
    size = tuple(net.config.image_size)
    frames = 5
    dataset = build_dataset(spec, split=split, size=size, frames=frames, length=clips or 200, bias=0.5)
    amp = torch.bfloat16 if device.type == "cuda" else None
    result = evaluate(net, dataset, device=device, batch_size=batch_size, workers=workers, amp=amp, max_clips=clips, progress=progress)
    result.update(data=spec, weights=str(weights), model=net.config.name, image_size=list(size))
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


def write_json(path: str | Path, data) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
