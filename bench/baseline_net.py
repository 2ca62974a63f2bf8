"""The reference network for `icf-bench baseline`: an AVSBench-style model as users run it today.

AVSBench (Zhou et al., ECCV 2022) with its TPAVI module: ResNet-50 features at strides 4/8/16/32,
each reduced to 256 channels, audio-visual attention at EVERY level, an FPN decoder to stride 4
and a mask head. Run in eager PyTorch, no compile, no graphs: the baseline a user has before
ICF's engines. Weights are random: latency does not depend on their values.

TPAVI ("dot" mode, as in the AVSBench code): the 128-d VGGish audio embedding is projected to the
level's width and repeated over the grid; theta(x) @ phi(audio)^T / N is an [HW, HW] affinity that
re-weights g(x). At stride 4 that is a 3136 x 3136 matrix per frame: the dense attention, not
the backbone, is what makes this model heavy at high resolution. Per frame (T = 1) the 3-D 1x1x1
convs of the clip version are the same maths as 2-D 1x1 convs.

The audio path is the real one a live user must run: the VGGish log-mel front end and the full
VGGish CNN (reused from model/, so the front end is byte-for-byte the same definition as ICF's).
About 17 GFLOPs at 224 x 224 (torch's counting, 2 per multiply-add; see `cost`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.audio_encoder import VGGishEncoder
from model.backbones import Bottleneck, ResNet
from model.config import AUDIO_SAMPLES
from model.logmel import LogMel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGGISH_CHANNELS = (64, 128, 256, 256, 512, 512)
VGGISH_FC = (4096, 4096)


class TPAVI(nn.Module):
    """Temporal pixel-wise audio-visual interaction, one frame, "dot" mode (AVSBench)."""

    def __init__(self, channels: int = 256, audio_dim: int = 128) -> None:
        super().__init__()
        inter = channels // 2  # AVSBench: inter_channels = in_channels // 2
        self.align = nn.Linear(audio_dim, channels)
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Repeated over the grid as AVSBench does (audio.repeat(1, 1, 1, H, W)): users pay for it.
        a = self.align(audio)[:, :, None, None].expand(b, c, h, w)
        g = self.g(x).flatten(2).transpose(1, 2)  # [B, HW, C']
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, HW, C']
        phi = self.phi(a).flatten(2)  # [B, C', HW]
        affinity = torch.matmul(theta, phi) / (h * w)  # [B, HW, HW], "dot" mode: f / N, no softmax
        y = torch.matmul(affinity, g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.out(y)


class BaselineAVS(nn.Module):
    """forward(image [B, 3, H, W] in [0, 1], audio [B, 15600] 16 kHz) -> mask logits [B, 1, H, W]."""

    def __init__(self, *, width: int = 256, head_width: int = 64) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = ResNet(block=Bottleneck, layers=(3, 4, 6, 3))
        self.logmel = LogMel()
        # VGGishEncoder ends in a 128 -> width token; 128 keeps the VGGish embedding size TPAVI reads.
        self.audio = VGGishEncoder(channels=VGGISH_CHANNELS, fc=VGGISH_FC, width=128)
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for c in self.backbone.channels
        )
        self.tpavi = nn.ModuleList(TPAVI(width) for _ in self.backbone.channels)
        self.head = nn.Sequential(
            nn.Conv2d(width, head_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_width, 1, 1),
        )

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        x = (image - self.pixel_mean) / self.pixel_std
        token = self.audio(self.logmel(audio))  # [B, 128]
        levels = [tp(lat(f), token) for lat, tp, f in zip(self.lateral, self.tpavi, self.backbone(x))]
        y = levels[3]
        for lvl in reversed(levels[:3]):  # FPN top-down: upsample and add
            y = lvl + F.interpolate(y, size=lvl.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(self.head(y), size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_baseline() -> BaselineAVS:
    return BaselineAVS().eval()


def cost(image_size: tuple[int, int] = (224, 224)) -> dict[str, float]:
    """Parameters (M) and GFLOPs of one forward at ``image_size``, counted on the meta device."""
    from .flops import cost as count

    with torch.device("meta"):
        net = BaselineAVS().eval()
    h, w = image_size
    return count(net, (torch.empty(1, 3, h, w), torch.empty(1, AUDIO_SAMPLES)))
