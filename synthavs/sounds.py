"""How things sound: one synthetic, vectorised sound per class, a function of absolute time.

Each sound differs in pitch, timbre and rhythm (plucked, pulsed, swept, steady), so the class is
audible in any 0.975 s model window. ``pitch`` (about 0.9..1.1) and ``offset`` (s) give each
instance its own variant; sounds are RMS-normalised so the SNR knob means what it says.
"""

from __future__ import annotations

import numpy as np

from .config import SAMPLE_RATE

SOURCE_RMS = 0.1  # every sounding source is scaled to this RMS (before its per-instance gain)


def _harmonics(phase: np.ndarray, amps: list[float]) -> np.ndarray:
    """sum_n amps[n-1] * sin(n * phase) by the Chebyshev recurrence sin((n+1)x) = 2 cos(x) sin(nx) - sin((n-1)x):
    one sin and one cos however many harmonics (sin is the cost here)."""
    s_prev, s_cur = np.zeros_like(phase), np.sin(phase)
    two_cos = 2.0 * np.cos(phase)
    out = amps[0] * s_cur
    for a in amps[1:]:
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
        if a:
            out += a * s_cur
    return out


def _pulses(t: np.ndarray, period: float, decay: float, width: float | None = None) -> np.ndarray:
    """Repeating envelope: exponential decay after each onset (or a gate of ``width`` seconds)."""
    local = np.mod(t, period)
    if width is not None:
        return np.clip(np.minimum(local, width - local) / 0.01, 0.0, 1.0)
    return np.exp(-local / decay) * np.clip(local / 0.004, 0.0, 1.0)


def noise(t: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic noise indexed by absolute sample (so any time range gives the same samples)."""
    idx = np.round(t * SAMPLE_RATE).astype(np.int64)
    # integer hash -> uniform; cheap and stateless (a Generator could not be sliced by time)
    h = (idx * 2654435761 + seed * 40503) & 0xFFFFFFFF
    h = (h ^ (h >> 15)) * 2246822519 & 0xFFFFFFFF
    h = h ^ (h >> 13)
    return (h.astype(np.float64) / 0xFFFFFFFF) * 2.0 - 1.0


def _class_sound(k: int, t: np.ndarray, pitch: float, seed: int) -> np.ndarray:
    tau = 2 * np.pi
    if k == 0:  # guitar: plucked G3, bright harmonics, a pluck every 0.5 s
        return _harmonics(tau * 196 * pitch * t, [1, 0.6, 0.4, 0.3, 0.2]) * _pulses(t, 0.5, 0.18)
    if k == 1:  # dog: harsh 520 Hz barks with noise, 3 per second
        bark = _harmonics(tau * 520 * pitch * t, [1, 0.8, 0.5]) + 0.6 * noise(t, seed)
        return bark * _pulses(t, 0.33, 0.05)
    if k == 2:  # siren: sine swept 700..1400 Hz, one cycle per second, steady
        # phase = integral of f(t) = 1050 p + 350 sin(2 pi t)
        return np.sin(tau * 1050 * pitch * t - 350 * np.cos(tau * t))
    if k == 3:  # piano: C4, soft partials, a decaying note every 1/3 s
        f = 262 * pitch
        return _harmonics(tau * f * t, [1, 0.5, 0.35, 0.15]) * _pulses(t, 1 / 3, 0.25)
    if k == 4:  # bird: fast upward chirps 3..4.5 kHz, 6 per second
        local = np.mod(t, 1 / 6)
        phase = tau * (3000 * pitch * local + 0.5 * 1500 / 0.08 * local**2)
        return np.sin(phase) * (local < 0.08)
    if k == 5:  # drum: 70 Hz thump + noise click, 4 per second
        local = np.mod(t, 0.25)
        return (np.sin(tau * 70 * pitch * local) + 0.4 * noise(t, seed) * np.exp(-local / 0.01)) * np.exp(-local / 0.08)
    if k == 6:  # car: steady 55 Hz engine buzz (odd harmonics) + low noise, 25 Hz flutter
        buzz = _harmonics(tau * 55 * pitch * t, [1, 0, 0.5, 0, 0.3, 0, 0.2])
        return (buzz + 0.3 * noise(t, seed)) * (0.75 + 0.25 * np.sin(tau * 25 * t))
    # baby: 430 Hz cry with 6 Hz vibrato, 0.6 s on / 0.3 s off
    phase = tau * 430 * pitch * t + 3.0 * np.sin(tau * 6 * t)
    return _harmonics(phase, [1, 0.7, 0.4, 0.2]) * _pulses(t, 0.9, 0.0, width=0.6)


_RMS_CACHE: dict[tuple[int, float], float] = {}


def _reference_rms(k: int, pitch: float) -> float:
    key = (k, round(pitch, 4))
    if key not in _RMS_CACHE:
        t = np.arange(SAMPLE_RATE * 2) / float(SAMPLE_RATE)
        _RMS_CACHE[key] = float(np.sqrt(np.mean(_class_sound(k, t, pitch, 0) ** 2)) + 1e-9)
    return _RMS_CACHE[key]


def class_sound(k: int, t: np.ndarray, *, pitch: float = 1.0, offset: float = 0.0, seed: int = 0) -> np.ndarray:
    """Class k's sound at absolute times t (seconds, float64) -> float64, RMS ~= SOURCE_RMS."""
    return _class_sound(k, t + offset, pitch, seed) * (SOURCE_RMS / _reference_rms(k, pitch))


def gate(active: np.ndarray, n_samples: int, sample_rate: int, start_sample: int = 0, ramp: int = 160) -> np.ndarray:
    """Per-sample on/off from per-second flags (``active[s]`` for absolute second s), with 10 ms
    linear ramps at changes so switching sources does not click."""
    idx = np.arange(start_sample - ramp, start_sample + n_samples + ramp)
    seconds = np.clip(idx // sample_rate, 0, len(active) - 1)
    raw = np.where((idx >= 0) & (idx < len(active) * sample_rate), active[seconds], 0.0).astype(np.float64)
    # moving average of width ``ramp`` by a cumulative sum (O(n), unlike np.convolve)
    c = np.concatenate([[0.0], np.cumsum(raw)])
    half = ramp // 2
    lo = np.arange(ramp, ramp + n_samples) - half
    return (c[lo + ramp] - c[lo]) / ramp
