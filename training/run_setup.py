"""Run set-up shared by fit and eval: devices, DDP, the network, the text bank, checkpoints.

Checkpoints: ``{name}.safetensors`` + ``{name}.json`` through model.save_checkpoint (weights and
the resolved ICF config); the optimizer, step and training-only modules (SC basis, CDCL heads)
go to ``last.opt.pt`` with torch.save and come back with torch.load(weights_only=True).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import model
from model.text_bank import SYNTHAVS_CONCEPTS

from .config import TrainConfig


class Dist:
    """torchrun's environment, or a single process."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' asked for, but torch sees no CUDA GPU; use --device=cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    return torch.device(name)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed); fp16 uses a GradScaler; CPU runs fp32."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16
    return torch.bfloat16


def bank_overrides(cfg: TrainConfig, classes: list[str] | None, out_dir: Path) -> dict[str, Any]:
    """Model overrides that give the network the dataset's vocabulary.

    SynthAVS (or data without class names) keeps the configured bank. Other vocabularies are
    embedded once with the packaged sentence encoder into out_dir/bank.safetensors (needs the
    `text` extra); the embeddings then live in every checkpoint, so loading needs no encoder."""
    if "bank" in cfg.model_overrides or classes is None or list(classes) == list(SYNTHAVS_CONCEPTS):
        return {}
    from model.text_bank import embed_concepts, save_bank

    prompts = [f"the sound of {name.replace('_', ' ')}" for name in classes]
    path = out_dir / "bank.safetensors"
    if not path.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        save_bank(path, prompts, embed_concepts(prompts))
    return {"bank": str(path)}


def build_network(cfg: TrainConfig, *, size: tuple[int, int], extra: dict[str, Any] | None = None) -> model.ICFNet:
    """The network to train: from ``cfg.init`` weights when given (MIT switches and size from cfg),
    else freshly built from the registry (pretrained backbone where the variant has one)."""
    kw = {**cfg.model_kwargs(size=size), **(extra or {})}
    if cfg.init:
        keep = {k: v for k, v in kw.items() if k in ("frame_text", "segment_text", "video_text", "text_bridge", "image_size", "frame_ring_rate")}
        net = model.load_checkpoint(cfg.init, **keep)
        return net.train()
    return model.build_model(cfg.model, **kw).train()


def save_weights(net: model.ICFNet, path: Path, image_size: tuple[int, int], extra: dict[str, Any]) -> Path:
    """Saves the network with ``image_size`` in its config (training may run at a smaller size:
    the weights do not depend on it, the static graph size does)."""
    cfg = net.config
    if tuple(cfg.image_size) != tuple(image_size):
        target = model.build_from_config(cfg.replace(image_size=tuple(image_size), pretrained=False, audio_pretrained=False))
        target.load_state_dict(net.state_dict())
        net = target
    return model.save_checkpoint(net, path, extra=extra)


def save_training_state(
    path: Path, *, step: int, optimizer, module: torch.nn.Module, scaler, best: float, elapsed: float
) -> None:
    aux = {k: v.detach().cpu() for k, v in module.state_dict().items() if not k.startswith("net.")}
    state = {
        "step": step,
        "best": best,
        "elapsed": elapsed,
        "optimizer": optimizer.state_dict(),
        "aux": aux,
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never leave a half-written resume point


def load_training_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no training state at {path}; run fit without --resume first")
    return torch.load(path, map_location="cpu", weights_only=True)
