"""VGGish-shaped audio encoder: log-mel [B, 1, 96, 64] -> 128-d embedding -> audio token [B, D].

With the full widths (64, 128, 256, 256, 512, 512 / 4096, 4096) the parameter names match
torchvggish (``features.*``, ``embeddings.*``), so a local torchvggish state dict loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class VGGishEncoder(nn.Module):
    """Conv(c1)-pool-conv(c2)-pool-conv(c3)-conv(c4)-pool-conv(c5)-conv(c6)-pool-fc-fc-fc(128), then to D."""

    def __init__(self, *, channels: tuple[int, ...], fc: tuple[int, ...], width: int, weights: str = "") -> None:
        super().__init__()
        if len(channels) != 6:
            raise ValueError(f"VGGish encoder needs 6 conv widths, got {channels}")
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            if i in (0, 1, 3, 5):  # VGGish pools after conv1, conv2, conv3_2, conv4_2
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c
        self.features = nn.Sequential(*layers)
        dims = [channels[-1] * 6 * 4, *fc, 128]  # 96x64 pooled four times -> 6x4
        emb: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            emb += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.embeddings = nn.Sequential(*emb)
        self.to_token = nn.Sequential(nn.Linear(128, width), nn.LayerNorm(width))
        if weights:
            self._load_torchvggish(weights)

    def _load_torchvggish(self, path: str) -> None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"audio weights file {file} does not exist; pass a torchvggish state dict")
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith(("features.", "embeddings."))}
        own = {k: v for k, v in self.state_dict().items() if k.startswith(("features.", "embeddings."))}
        for key, value in own.items():
            if key not in state or tuple(state[key].shape) != tuple(value.shape):
                got = tuple(state[key].shape) if key in state else "missing"
                raise ValueError(f"audio weights file {file} does not match: key '{key}' is {got}, expected {tuple(value.shape)}")
        self.load_state_dict(state, strict=False)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.features(logmel)  # [B, C6, 6, 4]
        # torchvggish flattens in NHWC order; keep that so its fc weights mean the same thing
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.to_token(self.embeddings(x))
