"""Named ICF variants (timm style): ``list_models()``, ``get_config(name)``, ``build_model(name, **overrides)``."""

from __future__ import annotations

from typing import Any

from .config import ICFConfig
from .icf import ICFNet
from .text_bank import load_bank

_VARIANTS: dict[str, ICFConfig] = {}


def register_variant(config: ICFConfig) -> ICFConfig:
    if config.name in _VARIANTS:
        raise ValueError(f"model '{config.name}' is registered twice")
    _VARIANTS[config.name] = config
    return config


register_variant(ICFConfig(name="icf-tiny"))
register_variant(
    ICFConfig(
        name="icf-lite",
        backbone="efficientnet_lite0",
        pretrained=True,
        width=128,
        audio_channels=(16, 32, 64, 64, 128, 128),
        audio_fc=(512, 512),
    )
)
# icf-lite with aisfx's pretrained sound-effects CNN as its ear, frozen (only its projection learns): needs
# `pip install --no-deps aisfx==0.1.2` and `python -m model.audio_pretrained convert` once (model/audio_pretrained.py).
register_variant(
    ICFConfig(
        name="icf-lite-aisfx",
        backbone="efficientnet_lite0",
        pretrained=True,
        width=128,
        audio_encoder="aisfx",
        audio_pretrained=True,
        audio_frozen=True,
    )
)
register_variant(
    ICFConfig(
        name="icf-r50",
        backbone="resnet50",
        width=256,
        heads=8,
        audio_channels=(64, 128, 256, 256, 512, 512),  # full VGGish: torchvggish weights load
        audio_fc=(4096, 4096),
        separable=False,
    )
)


def list_models() -> list[str]:
    return sorted(_VARIANTS)


def get_config(name: str, **overrides: Any) -> ICFConfig:
    """The variant's config with overrides applied and the text bank's concepts resolved."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown model '{name}'; registered models: {list_models()}")
    cfg = _VARIANTS[name].replace(**overrides)
    if "concepts" not in overrides:
        concepts, _ = load_bank(cfg.bank)
        cfg = cfg.replace(concepts=concepts)
    return cfg


def build_model(name: str, **overrides: Any) -> ICFNet:
    """Builds a variant and fills its text bank from ``config.bank``."""
    cfg = get_config(name, **overrides)
    return build_from_config(cfg, load_bank_embeddings=True)


def build_from_config(cfg: ICFConfig, *, load_bank_embeddings: bool = False) -> ICFNet:
    net = ICFNet(config=cfg)
    if load_bank_embeddings:
        concepts, emb = load_bank(cfg.bank)
        if concepts != cfg.concepts:
            raise ValueError(f"text bank '{cfg.bank}' holds {list(concepts)}, config asks for {list(cfg.concepts)}")
        net.text_bank.embeddings.copy_(emb)
    return net.eval()
