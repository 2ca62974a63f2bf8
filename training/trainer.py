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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import TrainConfig
from .data import build_dataset, collate, prepare_batch
from .evaluate import evaluate
from .objective import TrainModule, aux_ramp
from .run_setup import (
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


DECAYED_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d)


def decayed_names(module: torch.nn.Module) -> set[str]:
    """Parameters AdamW decays: the weight matrices / kernels of linear and conv layers, nothing
    else. Biases, norms, and parameters a module holds itself (the textual-inversion token
    embeddings, the weight query, correlation gammas: embedding-like, some zero-initialised) are
    left alone; decay would pull them toward zero, away from the words they start from."""
    return {
        f"{mod_name}.weight" if mod_name else "weight"
        for mod_name, mod in module.named_modules()
        if isinstance(mod, DECAYED_LAYERS) and isinstance(getattr(mod, "weight", None), torch.nn.Parameter)
    }


def param_groups(module: TrainModule, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    decayed = decayed_names(module)
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        backbone = name.startswith("net.backbone.")
        groups.setdefault((backbone, name in decayed), []).append(p)
    return [
        {"params": ps, "lr_scale": cfg.backbone_lr_scale if bb else 1.0, "weight_decay": cfg.weight_decay if dec else 0.0}
        for (bb, dec), ps in groups.items()
    ]


@dataclass
class Run:
    """What ``setup`` builds for one training run and the loop reads (one rank of it)."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    out: Path
    net: torch.nn.Module  # the ICF network (what checkpoints hold)
    module: TrainModule  # net + objective (+ auxiliary heads)
    runner: torch.nn.Module  # module, DDP-wrapped when distributed
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    val_set: torch.utils.data.Dataset | None
    loader: torch.utils.data.DataLoader
    start: int  # first step (after --resume, the step it stopped at)
    best: float  # best validation mIoU so far
    t0: float  # wall-clock start, shifted back by the time already trained before a resume
    log: Any  # log.jsonl handle (main rank only)
    bar: Any  # tqdm bar (main rank, not quiet)
    last_val: dict = field(default_factory=dict)


def setup_device(cfg: TrainConfig, d: Dist) -> torch.device:
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
    return device


def build_datasets(cfg: TrainConfig, d: Dist) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset | None]:
    common = dict(size=cfg.effective_train_size, frames=cfg.frames, bias=cfg.synth_bias, seed=cfg.seed)
    train_set = build_dataset(cfg.train_data, split="train", length=cfg.steps * cfg.batch_size * d.world, flip=cfg.hflip, **common)
    val_set = build_dataset(cfg.val_data, split="val", length=cfg.val_clips, **common) if cfg.val_data else None
    return train_set, val_set


def data_ring_rate(dataset) -> int:
    """Frames per second of the training clips: SynthAVS ``segment_frames=k`` -> k; AVSBench,
    folders and plain specs (one frame per segment) -> 1. Stored as the model's frame_ring_rate, so
    the stream samples its frame ring at the rate training filled it (model/context.py)."""
    for ds in (dataset, getattr(dataset, "dataset", None), getattr(dataset, "base", None)):  # wrappers keep the clips' rate
        k = getattr(ds, "segment_frames", None)
        if isinstance(k, int) and k >= 1:
            return k
    return 1


def build_model(cfg: TrainConfig, d: Dist, device: torch.device, train_set, out: Path) -> tuple[torch.nn.Module, TrainModule]:
    extra = bank_overrides(cfg, getattr(train_set, "classes", None), out) if d.main else {}
    d.barrier()
    if d.enabled and not extra:
        extra = bank_overrides(cfg, getattr(train_set, "classes", None), out)  # the file exists now
    if "frame_ring_rate" not in cfg.model_overrides:  # an explicit override wins; else the data's rate
        extra = {**extra, "frame_ring_rate": data_ring_rate(train_set)}
    net = build_network(cfg, size=cfg.effective_train_size, extra=extra)
    module = TrainModule(net, cfg).to(device)
    if device.type == "cuda" and cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return net, module


def resume_from(out: Path, net, module: TrainModule, opt, scaler) -> tuple[int, float, float]:
    """Loads last.safetensors + last.opt.pt into net / module / opt / scaler: (step, best, elapsed)."""
    from model import load_weights_into

    load_weights_into(net, out / "last.safetensors")
    state = load_training_state(out / "last.opt.pt")
    module.load_state_dict({**{f"net.{k}": v for k, v in net.state_dict().items()}, **state["aux"]})
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    return int(state["step"]), float(state["best"]), float(state["elapsed"])


def setup(cfg: TrainConfig, *, resume: bool, quiet: bool) -> Run:
    """Device, data, network, optimiser, resume point, loader, log: everything before step one."""
    d = Dist()
    device = setup_device(cfg, d)
    out = Path(cfg.out_dir)
    train_set, val_set = build_datasets(cfg, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    net, module = build_model(cfg, d, device, train_set, out)
    opt = torch.optim.AdamW(param_groups(module, cfg), lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda")
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    start, best, elapsed0 = resume_from(out, net, module, opt, scaler) if resume else (0, -1.0, 0.0)
    runner = (
        DDP(module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        if d.enabled
        else module
    )
    # generated data (a dataset with generated = True makes every clip on demand) is never repeated
    sampler = StepBatches(len(train_set), batch=cfg.batch_size, rank=d.rank, world=d.world, start=start, steps=cfg.steps,
                          seed=cfg.seed, fresh=getattr(train_set, "generated", False))
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
    return Run(cfg=cfg, dist=d, device=device, out=out, net=net, module=module, runner=runner, opt=opt, scaler=scaler,
               dtype=dtype, val_set=val_set, loader=loader, start=start, best=best, t0=time.time() - elapsed0, log=log, bar=bar)


def clip_gradients(module: TrainModule, clip: float) -> torch.Tensor:
    """Clips the network's gradients and the training-only heads' (SC's denoiser, CDCL's projections)
    each to ``clip`` on their own, so a large auxiliary gradient never shrinks the network's step.
    Returns the network's norm before clipping (0 when clip is 0: off)."""
    if clip <= 0:
        return torch.zeros(())
    net = list(module.net.parameters())
    ids = {id(p) for p in net}
    aux = [p for p in module.parameters() if id(p) not in ids]
    if aux:
        torch.nn.utils.clip_grad_norm_(aux, clip)
    return torch.nn.utils.clip_grad_norm_(net, clip)


def train_step(run: Run, batch: dict, progress: float) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """One optimiser step under autocast (scaled for fp16, clipped): (loss, loss parts, grad norm)."""
    with torch.autocast(device_type=run.device.type, dtype=run.dtype, enabled=run.dtype is not None):
        loss, parts = run.runner(batch, aux_ramp(progress))
    run.opt.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.opt)
    else:
        loss.backward()
    gnorm = clip_gradients(run.module, run.cfg.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.opt)
        run.scaler.update()
    else:
        run.opt.step()
    return loss, parts, gnorm


def log_step(run: Run, step: int, loss: torch.Tensor, parts: dict, gnorm: torch.Tensor) -> None:
    row = {"step": step, "loss": float(loss.detach()), "lr": run.opt.param_groups[0]["lr"], "grad_norm": float(gnorm),
           "time": round(time.time() - run.t0, 1)}
    row.update({name: round(float(v), 5) for name, v in parts.items()})
    run.log.write(json.dumps(row) + "\n")
    run.log.flush()
    if run.bar is not None:
        run.bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.1e}")


def validate_and_checkpoint(run: Run, step: int) -> None:
    """Main rank: validation (logged; a new best mIoU is saved as best.safetensors), then the
    resume point (last.safetensors + last.opt.pt). Every rank waits for it."""
    cfg, out = run.cfg, run.out
    if run.dist.main:
        if run.val_set is not None:
            run.last_val = evaluate(run.net, run.val_set, device=run.device, batch_size=cfg.batch_size, workers=cfg.workers,
                                    amp=run.dtype, max_clips=cfg.val_clips)
            run.log.write(json.dumps({"step": step, "val": run.last_val, "time": round(time.time() - run.t0, 1)}) + "\n")
            run.log.flush()
            score = run.last_val.get("mIoU") or 0.0
            if score > run.best:
                run.best = score
                save_weights(run.net, out / "best.safetensors", cfg.image_size,
                             {"step": step, "val": run.last_val, "train_config": cfg.to_dict()})
        save_weights(run.net, out / "last.safetensors", cfg.image_size, {"step": step, "train_config": cfg.to_dict()})
        save_training_state(out / "last.opt.pt", step=step, optimizer=run.opt, module=run.module, scaler=run.scaler,
                            best=run.best, elapsed=time.time() - run.t0)
    run.dist.barrier()


def fit(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False) -> dict:
    run = setup(cfg, resume=resume, quiet=quiet)
    budget = cfg.max_minutes * 60.0
    concepts = run.net.config.num_concepts
    step = run.start
    for raw in run.loader:
        elapsed = time.time() - run.t0
        # the schedule follows whichever runs out first, the steps or the time budget
        progress = max(step / cfg.steps, elapsed / budget if budget > 0 else 0.0)
        if budget > 0 and _out_of_time(elapsed >= budget, run.dist):
            break
        for g in run.opt.param_groups:
            g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(progress, step, cfg)
        loss, parts, gnorm = train_step(run, prepare_batch(raw, run.device, concepts), progress)
        step += 1
        if run.dist.main and (step % cfg.log_every == 0 or step == cfg.steps):
            log_step(run, step, loss, parts, gnorm)
        if run.bar is not None:
            run.bar.update(1)
        if (step % cfg.val_every == 0 or step % cfg.ckpt_every == 0) and step < cfg.steps:
            validate_and_checkpoint(run, step)
    validate_and_checkpoint(run, step)
    if run.bar is not None:
        run.bar.close()
    result = {"steps": step, "best_val_mIoU": run.best, "val": run.last_val, "minutes": round((time.time() - run.t0) / 60, 2)}
    if run.dist.main:
        (run.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        run.log.close()
    run.dist.close()
    return result
