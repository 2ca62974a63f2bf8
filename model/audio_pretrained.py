"""Pretrained sound-effects audio encoder: aisfx 0.1.2's CNN as our own module, weights from safetensors.

aisfx (A. B. Ma and A. Lerch, "Representation Learning for the Automatic Indexing of Sound Effects
Libraries", ISMIR 2022; PyPI ``aisfx`` 0.1.2, weights CC BY 4.0) ships the "X-Sequential-CE" model:
``EmbeddingNet('max', 3, 1, 64)`` of its ``models/cnn2d.py`` (the DCASE 2018 cross-task baseline
Cnn_9layers): four blocks of two 3x3 conv (no bias) + BatchNorm + ReLU, widths 64/128/256/512, 2x2 max
pooling after the first three, then mean over frequency and max over time: a 512-d embedding
(4.69 M parameters). The module below has the same layers and parameter names, so the published
``embedding_net.*`` tensors load one to one; aisfx's code is never imported.

Weights: aisfx ships them as a pickle (``aisfx/models/checkpoint.pth``). Convert them once with

    pip install --no-deps aisfx==0.1.2        # --no-deps: its librosa / numpy pins never enter the env
    python -m model.aisfx_convert             # -> <user cache>/aisfx-0.1.2/embedding.safetensors

(model/aisfx_convert.py reads the pickle with torch's weights-only unpickler, allowing only numpy's scalar
type, which its dataset table uses); at run time only that safetensors file is read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from icfcli.paths import user_cache_dir

AISFX_VERSION = "0.1.2"
INSTALL_HINT = f"pip install --no-deps aisfx=={AISFX_VERSION}"
CONVERT_HINT = "python -m model.aisfx_convert"
EMBEDDING_DIM = 512


def converted_weights_path() -> Path:
    """Where the one-time conversion writes aisfx's embedding weights (user cache, never the repo)."""
    return user_cache_dir() / f"aisfx-{AISFX_VERSION}" / "embedding.safetensors"


class ConvBlock(nn.Module):
    """aisfx cnn2d.ConvBlock: (3x3 conv, no bias -> BatchNorm -> ReLU) x 2, then max pooling."""

    def __init__(self, c_in: int, c_out: int, *, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, self.pool) if self.pool > 1 else x


class AisfxCNN(nn.Module):
    """aisfx EmbeddingNet: log-mel [B, T, 96] (time, bands) -> embedding [B, 512]. Any T >= 8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = ConvBlock(1, 64, pool=2)
        self.conv_block2 = ConvBlock(64, 128, pool=2)
        self.conv_block3 = ConvBlock(128, 256, pool=2)
        self.conv_block4 = ConvBlock(256, 512, pool=1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = spec[:, None]
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
            x = block(x)
        return x.mean(dim=3).amax(dim=2)  # mean over bands, max over time, as aisfx


def load_aisfx_weights(cnn: AisfxCNN, path: str | Path | None = None) -> None:
    """Loads the converted safetensors into ``cnn``; a missing file is one line naming the fix."""
    from safetensors.torch import load_file

    file = Path(path) if path else converted_weights_path()
    if not file.is_file():
        raise FileNotFoundError(
            f"aisfx audio weights not found at {file}: install the package with `{INSTALL_HINT}`, then convert once with `{CONVERT_HINT}`"
        )
    state = load_file(str(file))
    own = cnn.state_dict()
    bad = sorted(k for k in own if k not in state or state[k].shape != own[k].shape)
    if bad or set(state) - set(own):
        first = (bad or sorted(set(state) - set(own)))[0]
        raise ValueError(f"aisfx weights file {file} does not match the aisfx {AISFX_VERSION} CNN (first bad key: {first}); "
                         f"convert again with `{CONVERT_HINT}`")
    cnn.load_state_dict(state)


class AisfxEncoder(nn.Module):
    """aisfx log-mel [B, T, 96] -> audio token [B, D]: the pretrained CNN, then a learnt projection.

    frozen=True keeps the CNN as published: no gradients and BatchNorm always in eval mode (its running
    statistics are the pretrained ones), so only the token projection learns.
    """

    def __init__(self, *, width: int, pretrained: bool, frozen: bool) -> None:
        super().__init__()
        self.cnn = AisfxCNN()
        if pretrained:
            load_aisfx_weights(self.cnn)
        self.frozen = frozen
        if frozen:
            self.cnn.requires_grad_(False)
            self.cnn.eval()
        self.to_token = nn.Sequential(nn.Linear(EMBEDDING_DIM, width), nn.LayerNorm(width))

    def train(self, mode: bool = True) -> AisfxEncoder:
        super().train(mode)
        if self.frozen:
            self.cnn.eval()
        return self

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.to_token(self.cnn(logmel))
