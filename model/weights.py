"""Checkpoints: safetensors weights with the resolved config in their metadata, plus a JSON beside.

``save_checkpoint(net, "x.safetensors")`` writes x.safetensors and x.json. Loading rebuilds the
network from the stored config; loading into an existing network of another variant fails with
a message naming both.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from .config import ICFConfig
from .icf import ICFNet

CONFIG_KEY = "icf_config"


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(net: ICFNet, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path {path} must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    config = net.config.to_dict()
    save_file(state, str(path), metadata={CONFIG_KEY: json.dumps(config)})
    doc = {"config": config, "sha256": file_sha256(path), **(extra or {})}
    sidecar_path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return path


def read_checkpoint_config(path: str | Path) -> ICFConfig:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"checkpoint {path} is not a readable safetensors file ({exc})") from exc
    side = sidecar_path(path)
    try:
        doc = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        doc = {}  # the weights' own metadata still says what network they are
    doc = doc if isinstance(doc, dict) else {}
    stored = json.loads(meta[CONFIG_KEY]) if CONFIG_KEY in meta else doc.get("config")
    if isinstance(stored, dict):
        if "frame_ring_rate" not in stored:  # saved before the field: the rate its training data had
            stored = {**stored, "frame_ring_rate": _trained_ring_rate(doc)}
        try:
            return ICFConfig.from_dict(stored)
        except ValueError as exc:
            raise ValueError(f"checkpoint {path}: {exc}") from exc
    raise ValueError(f"checkpoint {path} carries no ICF config (metadata '{CONFIG_KEY}' or {side.name}); is it an ICF checkpoint?")


def _trained_ring_rate(doc: dict[str, Any]) -> int:
    """Frame-ring rate of a checkpoint saved before ICFConfig.frame_ring_rate existed: its clips'
    frames per second, from the training config in its JSON (``segment_frames=k`` in the data spec:
    trained with k frames per second, every one pushed), else 1 (one frame per segment, e.g. the
    shipped weights/icf-lite-synthavs)."""
    train = doc.get("train_config") if isinstance(doc.get("train_config"), dict) else {}
    found = re.search(r"(?:^|[:,])segment_frames=(\d+)", str(train.get("train_data", "")))
    return max(int(found.group(1)), 1) if found else 1


def load_checkpoint(path: str | Path, **overrides: Any) -> ICFNet:
    """Rebuilds the network the checkpoint was saved from and loads its weights.

    overrides may change fields that do not touch parameters (e.g. backbone_weights="" or
    pretrained=False, so no backbone file is read before the checkpoint's own weights load). Pretrained
    files are never read here (pretrained, audio_pretrained off): the checkpoint holds those weights.
    """
    from .registry import build_from_config

    cfg = read_checkpoint_config(path).replace(pretrained=False, backbone_weights="", audio_weights="", audio_pretrained=False, **overrides)
    net = build_from_config(cfg)
    load_weights_into(net, path)
    return net.eval()


def load_weights_into(net: ICFNet, path: str | Path) -> None:
    from safetensors.torch import load_file

    stored = read_checkpoint_config(path)
    own = net.config
    shape_fields = ("backbone", "width", "audio_encoder", "audio_channels", "audio_fc", "text_dim", "semantic", "separable", "heads",
                    "visual_texts", "audio_texts", "text_tokens")
    diffs = [f for f in shape_fields if getattr(stored, f) != getattr(own, f)]
    if stored.num_concepts != own.num_concepts:
        diffs.append("concepts")
    if diffs:
        detail = ", ".join(f"{f}: checkpoint {getattr(stored, f, None)!r} vs model {getattr(own, f, None)!r}" for f in diffs if f != "concepts")
        if "concepts" in diffs:
            detail += f"{', ' if detail else ''}concepts: checkpoint {stored.num_concepts} vs model {own.num_concepts}"
        raise ValueError(
            f"checkpoint {path} is for model '{stored.name}', not '{own.name}' ({detail}); "
            f"load it with model.load_checkpoint('{path}') or build '{stored.name}'"
        )
    state = load_file(str(path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise ValueError(f"checkpoint {path} does not fit model '{own.name}': {'missing' if missing else 'unexpected'} key '{first}'")


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
