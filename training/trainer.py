"""``icf-train fit``: AdamW, warm-up + cosine, grad clipping, AMP, DDP, JSONL log, checkpoints.

Outputs in cfg.out_dir: config.json (the resolved training config), log.jsonl (one line per
log_every steps and per validation), last.safetensors/.json + last.opt.pt (resume point),
best.safetensors/.json (best validation mIoU), metrics.json (final validation).
The learning-rate schedule follows progress = max(step / steps, elapsed / max_minutes), so a
time-boxed run (the GPU lease) still warms up, peaks and anneals.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import TrainConfig
from .data import build_dataset, collate, prepare_batch
from .evaluate import evaluate
from .objective import TrainModule, aux_ramp
from .runtime import (
    Dist,
    amp_dtype,
    bank_overrides,
    build_network,
    load_training_state,
    pick_device,
    save_training_state,
    save_weights,
)


class StepBatches(torch.utils.data.Sampler):
    """Batch indices for steps start..steps-1 of this rank, deterministic (so --resume continues
    the same stream). Generated data (``fresh``) uses every index once; finite data is walked
    in a new seeded permutation every epoch."""

    def __init__(self, length: int, *, batch: int, rank: int, world: int, start: int, steps: int, seed: int, fresh: bool) -> None:
        self.length, self.batch, self.rank, self.world = length, batch, rank, world
        self.start, self.steps, self.seed, self.fresh = start, steps, seed, fresh

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self):
        per_step = self.batch * self.world
        perm, epoch = None, -1
        for step in range(self.start, self.steps):
            first = step * per_step + self.rank * self.batch
            if self.fresh:
                yield list(range(first, first + self.batch))
                continue
            out = []
            for g in range(first, first + self.batch):
                e, pos = divmod(g, self.length)
                if e != epoch:
                    perm, epoch = np.random.default_rng([self.seed, e]).permutation(self.length), e
                out.append(int(perm[pos]))
            yield out


def _out_of_time(local: bool, d: Dist) -> bool:
    """All ranks stop together (one rank leaving the loop alone would hang the others in DDP)."""
    if not d.enabled:
        return local
    import torch.distributed as dist

    flag = torch.tensor([1.0 if local else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def lr_factor(progress: float, step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def param_groups(module: TrainModule, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        backbone = name.startswith("net.backbone.")
        decay = p.ndim > 1 and "basis" not in name  # no decay on norms, biases, the SC basis
        groups.setdefault((backbone, decay), []).append(p)
    return [
        {"params": ps, "lr_scale": cfg.backbone_lr_scale if bb else 1.0, "weight_decay": cfg.weight_decay if dec else 0.0}
        for (bb, dec), ps in groups.items()
    ]


def fit(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False) -> dict:
    d = Dist()
    device = pick_device(cfg.device, d.local_rank)
    d.init(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # no cudnn.benchmark: SC decodes a varying number of frames per step, and re-tuning every new
        # batch shape would eat minutes of a time-boxed run
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_flush_denormal(True)  # subnormal floats make CPU kernels crawl late in training
    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    out = Path(cfg.out_dir)
    train_size = cfg.effective_train_size
    total = cfg.steps * cfg.batch_size * d.world
    train_set = build_dataset(
        cfg.train_data,
        split="train",
        size=train_size,
        frames=cfg.frames,
        length=total,
        bias=cfg.synth_bias,
        flip=cfg.hflip,
        seed=cfg.seed,
    )
    val_set = (
        build_dataset(
            cfg.val_data,
            split="val",
            size=train_size,
            frames=cfg.frames,
            length=cfg.val_clips,
            bias=cfg.synth_bias,
            seed=cfg.seed,
        )
        if cfg.val_data
        else None
    )
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    extra = bank_overrides(cfg, getattr(train_set, "classes", None), out) if d.main else {}
    d.barrier()
    if d.enabled and not extra:
        extra = bank_overrides(cfg, getattr(train_set, "classes", None), out)  # the file exists now
    net = build_network(cfg, size=train_size, extra=extra)
    module = TrainModule(net, cfg).to(device)
    if device.type == "cuda" and cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    groups = param_groups(module, cfg)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda")
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    start, best, elapsed0 = 0, -1.0, 0.0
    if resume:
        from model import load_weights_into

        load_weights_into(net, out / "last.safetensors")
        state = load_training_state(out / "last.opt.pt")
        module.load_state_dict({**{f"net.{k}": v for k, v in net.state_dict().items()}, **state["aux"]})
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start, best, elapsed0 = int(state["step"]), float(state["best"]), float(state["elapsed"])
    runner = (
        DDP(module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        if d.enabled
        else module
    )
    fresh = type(train_set).__name__ == "SynthDataset"
    sampler = StepBatches(
        len(train_set), batch=cfg.batch_size, rank=d.rank, world=d.world, start=start, steps=cfg.steps, seed=cfg.seed, fresh=fresh
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None,
    )
    log = open(out / "log.jsonl", "a") if d.main else None
    bar = None
    if d.main and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=cfg.name, dynamic_ncols=True, mininterval=1.0)
    budget = cfg.max_minutes * 60.0
    t0 = time.time() - elapsed0
    step, last_val = start, {}
    k = net.config.num_concepts

    def validate_and_save(step: int) -> None:
        nonlocal best, last_val
        if d.main:
            if val_set is not None:
                last_val = evaluate(
                    net,
                    val_set,
                    device=device,
                    batch_size=cfg.batch_size,
                    workers=cfg.workers,
                    amp=dtype,
                    max_clips=cfg.val_clips,
                )
                log.write(json.dumps({"step": step, "val": last_val, "time": round(time.time() - t0, 1)}) + "\n")
                log.flush()
                score = last_val.get("mIoU") or 0.0
                if score > best:
                    best = score
                    save_weights(
                        net,
                        out / "best.safetensors",
                        cfg.image_size,
                        {"step": step, "val": last_val, "train_config": cfg.to_dict()},
                    )
            save_weights(net, out / "last.safetensors", cfg.image_size, {"step": step, "train_config": cfg.to_dict()})
            save_training_state(
                out / "last.opt.pt", step=step, optimizer=opt, module=module, scaler=scaler, best=best, elapsed=time.time() - t0
            )
        d.barrier()

    for raw in loader:
        elapsed = time.time() - t0
        progress = max(step / cfg.steps, elapsed / budget if budget > 0 else 0.0)
        if budget > 0 and _out_of_time(elapsed >= budget, d):
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(progress, step, cfg)
        batch = prepare_batch(raw, device, k)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            loss, parts = runner(batch, aux_ramp(progress))
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else torch.zeros(())
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        step += 1
        if d.main and (step % cfg.log_every == 0 or step == cfg.steps):
            row = {
                "step": step,
                "loss": float(loss.detach()),
                "lr": opt.param_groups[0]["lr"],
                "grad_norm": float(gnorm),
                "time": round(time.time() - t0, 1),
            }
            row.update({k2: round(float(v), 5) for k2, v in parts.items()})
            log.write(json.dumps(row) + "\n")
            log.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.1e}")
        if bar is not None:
            bar.update(1)
        if step % cfg.val_every == 0 or step % cfg.ckpt_every == 0:
            if step < cfg.steps:
                validate_and_save(step)
    validate_and_save(step)
    if bar is not None:
        bar.close()
    result = {"steps": step, "best_val_mIoU": best, "val": last_val, "minutes": round((time.time() - t0) / 60, 2)}
    if d.main:
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        log.close()
    d.close()
    return result
