"""The in-graph log-mel must equal an independent NumPy implementation of the VGGish definition."""

import numpy as np
import torch

from model.config import AUDIO_SAMPLES
from model.logmel import LogMel


def vggish_logmel_reference(samples: np.ndarray) -> np.ndarray:
    """torchvggish mel_features.log_mel_spectrogram, re-derived from its definition with rfft."""
    sr, win, hop, fft = 16000, 400, 160, 512
    n_frames = 1 + (len(samples) - win) // hop
    frames = np.stack([samples[i * hop : i * hop + win] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))
    spec = np.abs(np.fft.rfft(frames * window, fft))

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins = mel(np.linspace(0.0, sr / 2, fft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    weights = np.zeros((fft // 2 + 1, 64))
    for i in range(64):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        weights[:, i] = np.maximum(0.0, np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)))
    weights[0, :] = 0.0
    return np.log(spec @ weights + 0.01)


def test_logmel_matches_numpy_vggish_definition():
    rng = np.random.default_rng(0)
    t = np.arange(AUDIO_SAMPLES) / 16000
    signals = [
        0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(AUDIO_SAMPLES),
        rng.uniform(-1, 1, AUDIO_SAMPLES),
        np.zeros(AUDIO_SAMPLES),
    ]
    ours = LogMel()(torch.tensor(np.stack(signals), dtype=torch.float32)).numpy()
    assert ours.shape == (3, 1, 96, 64)
    for i, s in enumerate(signals):
        ref = vggish_logmel_reference(s)
        assert ref.shape == (96, 64)
        assert np.abs(ours[i, 0] - ref).max() <= 1e-4
