"""aisfx's log-mel front end computed in-graph from the model's 16 kHz window (fixed tensors, no STFT op).

aisfx 0.1.2 (``aisfx/spectrogram/spectrogram_librosa.py`` + ``preprocessing.spectrogram_normalize``)
reads audio at 44.1 kHz and computes: Hann window 2048, hop 1024, centred frames (zero padding),
power spectrum, 96 HTK-mel bands over 0-22050 Hz with unit-sum (L1) triangles, log10(1e4 * mel + 1),
divided by 9.4578 (its "original" min-max range). The model's ``step`` receives 15,600 samples at
16 kHz, so this module evaluates that same spectrogram on the 44.1 kHz analysis grid directly from the
16 kHz samples instead of resampling in the graph:

- the 2048-sample window lasts 46.4 ms = 743 samples at 16 kHz, the 1024 hop 23.2 ms = 372 samples
  (the exact 371.5 rounded: 1.3 ms drift over the window's 42 frames);
- each 44.1 kHz DFT bin k (k * 21.53 Hz) at or below 8 kHz (k <= 371) is the DTFT of the windowed
  16 kHz frame at that frequency times 44100 / 16000, the sample-density ratio, which is what a
  band-limited resampling to 44.1 kHz followed by aisfx's DFT gives;
- bins above 8 kHz are empty in any 16 kHz signal (a resampled one too), so the 27 mel bands that lie
  wholly above 8 kHz read log10(0 + 1) = 0 exactly as they would after resampling.

Output: [B, 42, 96] (frames, bands), the (time, frequency) layout aisfx's CNN takes.
Input level: aisfx peak-normalises each whole file first, which a streaming window cannot. peak_floor=0
feeds the raw level; peak_floor=f > 0 divides each window by max(peak, f) in the graph (gain at most 1/f,
so digital silence stays silent), which recovers aisfx's level invariance (docs/results/audio_arms.md
measures both, and what the 8 kHz band limit changes).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import AUDIO_SAMPLES, SAMPLE_RATE

AISFX_RATE = 44_100
AISFX_FFT = 2048
AISFX_HOP = 1024
AISFX_BANDS = 96
AISFX_LOG_SCALE = 1e4  # log10(1e4 * mel + 1): Essentia's "shift_scale_log", as aisfx's librosa path
AISFX_RANGE_MAX = 9.457798957824707  # preprocessing.spectrogram_normalize(spec_norm="original"): (x - 0) / 9.4578

RATE_RATIO = AISFX_RATE / SAMPLE_RATE
WINDOW = round(AISFX_FFT / RATE_RATIO)  # 743 samples at 16 kHz
HOP = round(AISFX_HOP / RATE_RATIO)  # 372
PAD = WINDOW // 2  # librosa's centred framing: n_fft // 2 zeros each side
BINS = int((SAMPLE_RATE / 2) // (AISFX_RATE / AISFX_FFT)) + 1  # 372 DFT bins of the 44.1 kHz grid below 8 kHz
FRAMES = (AUDIO_SAMPLES + 2 * PAD - WINDOW) // HOP + 1  # 42


def _hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz_htk(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def aisfx_mel_matrix() -> np.ndarray:
    """librosa.filters.mel(sr=44100, n_fft=2048, n_mels=96, fmin=0, fmax=22050, htk=True, norm=1),
    transposed and cut to the bins below 8 kHz: [372, 96] float64."""
    fft_hz = np.linspace(0.0, AISFX_RATE / 2.0, 1 + AISFX_FFT // 2)
    points_hz = _mel_to_hz_htk(np.linspace(_hz_to_mel_htk(0.0), _hz_to_mel_htk(AISFX_RATE / 2.0), AISFX_BANDS + 2))
    widths = np.diff(points_hz)
    ramps = points_hz[:, None] - fft_hz[None, :]
    weights = np.zeros((AISFX_BANDS, fft_hz.size))
    for i in range(AISFX_BANDS):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)  # norm=1: unit L1 per band
    return weights[:, :BINS].T


class AisfxLogMel(nn.Module):
    """Raw 16 kHz samples [B, 15600] in [-1, 1] -> aisfx-normalised log-mel [B, 42, 96]."""

    def __init__(self, *, peak_floor: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= peak_floor <= 1.0:
            raise ValueError(f"peak_floor {peak_floor} must be in [0, 1] (0: raw level)")
        self.peak_floor = float(peak_floor)
        m = np.arange(WINDOW)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * m / WINDOW)  # periodic Hann, as scipy's get_window("hann")
        bin_hz = np.arange(BINS) * AISFX_RATE / AISFX_FFT
        phase = 2.0 * np.pi * np.outer(bin_hz, m) / SAMPLE_RATE  # [372, 743]
        basis = np.concatenate([np.cos(phase), -np.sin(phase)], axis=0) * window[None, :] * RATE_RATIO
        self.register_buffer("dft", torch.tensor(basis, dtype=torch.float32)[:, None, :], persistent=False)
        self.register_buffer("mel", torch.tensor(aisfx_mel_matrix(), dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.peak_floor > 0.0:
            audio = audio / audio.abs().amax(dim=1, keepdim=True).clamp_min(self.peak_floor)
        padded = nn.functional.pad(audio[:, None, :], (PAD, PAD))
        spec = nn.functional.conv1d(padded, self.dft, stride=HOP)  # [B, 2 * 372, 42]
        real, imag = spec.chunk(2, dim=1)
        power = real * real + imag * imag
        mel = torch.matmul(power.transpose(1, 2), self.mel)  # [B, 42, 96]
        return torch.log10(AISFX_LOG_SCALE * mel + 1.0) / AISFX_RANGE_MAX
