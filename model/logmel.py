"""VGGish log-mel front end as fixed tensors, so an exported graph needs no STFT operator.

Definition (torchvggish mel_features.py): periodic Hann window of 400 samples, hop 160, FFT length
512, magnitude spectrum, HTK-mel filterbank of 64 bands over 125-7500 Hz with the DC bin zeroed,
log(mel + 0.01), 96 frames. The DFT is a strided conv1d whose kernels are the windowed cos / sin
bases: static shapes, one matmul-like op, identical maths.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import LOGMEL_BANDS, LOGMEL_FRAMES, SAMPLE_RATE, STFT_HOP, STFT_WINDOW

FFT_LENGTH = 2 ** math.ceil(math.log2(STFT_WINDOW))  # 512
LOG_OFFSET = 0.01
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def mel_matrix(num_bins: int = FFT_LENGTH // 2 + 1) -> np.ndarray:
    """HTK-mel triangular filterbank, [num_bins, 64] float64, DC row zeroed as VGGish does."""
    bins_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, num_bins))
    edges = np.linspace(_hz_to_mel(np.array(MEL_LOW_HZ)), _hz_to_mel(np.array(MEL_HIGH_HZ)), LOGMEL_BANDS + 2)
    weights = np.empty((num_bins, LOGMEL_BANDS))
    for i in range(LOGMEL_BANDS):
        lo, centre, hi = edges[i : i + 3]
        rising = (bins_mel - lo) / (centre - lo)
        falling = (hi - bins_mel) / (hi - centre)
        weights[:, i] = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


class LogMel(nn.Module):
    """Raw 16 kHz samples -> VGGish log-mel patch.

    Input: audio [B, 15600] float in [-1, 1]. Output: [B, 1, 96, 64].
    """

    def __init__(self) -> None:
        super().__init__()
        n = np.arange(STFT_WINDOW)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / STFT_WINDOW)  # periodic Hann
        k = np.arange(FFT_LENGTH // 2 + 1)
        phase = 2.0 * np.pi * np.outer(k, n) / FFT_LENGTH  # [257, 400]
        basis = np.concatenate([np.cos(phase), -np.sin(phase)], axis=0) * window[None, :]
        self.register_buffer("dft", torch.tensor(basis, dtype=torch.float32)[:, None, :], persistent=False)
        self.register_buffer("mel", torch.tensor(mel_matrix(), dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(audio[:, None, :], self.dft, stride=STFT_HOP)  # [B, 514, 96]
        real, imag = spec.chunk(2, dim=1)
        magnitude = torch.sqrt(real * real + imag * imag + 1e-20)  # [B, 257, 96]
        mel = torch.matmul(magnitude.transpose(1, 2), self.mel)  # [B, 96, 64]
        return torch.log(mel + LOG_OFFSET)[:, None, :LOGMEL_FRAMES, :]
