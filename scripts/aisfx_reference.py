"""aisfx's own front end on given audio windows: the reference our in-graph model/aisfx_logmel.py is measured against.

Runs in a THROWAWAY venv, never the project's (aisfx pins old librosa / numpy):

    python -m venv /tmp/aisfxenv
    /tmp/aisfxenv/bin/pip install librosa==0.9.2 numpy==1.23.5 soundfile resampy
    /tmp/aisfxenv/bin/pip install --no-deps aisfx==0.1.2
    /tmp/aisfxenv/bin/python scripts/aisfx_reference.py IN.npz OUT.npz librosa
    # aisfx's default and the paper's front end (essentia needs numpy >= 1.25: a second venv)
    python -m venv /tmp/aisfxenv-ess && /tmp/aisfxenv-ess/bin/pip install essentia
    /tmp/aisfxenv-ess/bin/pip install --no-deps aisfx==0.1.2
    /tmp/aisfxenv-ess/bin/python scripts/aisfx_reference.py IN.npz OUT.npz essentia

(aisfx pins numpy 1.23.0, which has no wheel for Python 3.11; 1.23.5 is the nearest that installs.)
Layout: aisfx 0.1.2's librosa path returns (bands, time) and its inference.main blocks that along the
bands axis, so the CNN would read bands as time; its essentia path (the paper's, the default) returns
(time, bands) as the CNN was trained on. Both are returned here as (time, bands).
IN.npz: ``audio`` [N, L] float32 and ``rate`` (Hz). Each window is written as a float WAV and passed,
unchanged, through aisfx's ``spectrogram/spectrogram_librosa.compute_spectrogram`` (librosa load at
44.1 kHz = resampy kaiser_best resampling, peak normalisation, 2048/1024 STFT, 96 HTK mel bands,
log10(1e4 x + 1)) and ``preprocessing.spectrogram_normalize`` ('original'), loaded from the installed
package by file path (its ``__init__`` imports torch, which this venv does not have).
OUT.npz: ``spec`` [N, T, 96] (time, bands) and ``peak`` [N] (the peak aisfx divided by, at 44.1 kHz).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in ("librosa", "essentia"):
        print("usage: aisfx_reference.py IN.npz OUT.npz librosa|essentia", file=sys.stderr)
        return 2
    kind = argv[2]
    from importlib.metadata import distribution

    dist = distribution("aisfx")
    root = Path(dist.locate_file("aisfx"))
    front = _load(root / "spectrogram" / f"spectrogram_{kind}.py", f"aisfx_spectrogram_{kind}")
    prep = _load(root / "preprocessing.py", "aisfx_preprocessing")

    data = np.load(argv[0])
    audio, rate = data["audio"].astype(np.float32), int(data["rate"])
    specs, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, window in enumerate(audio):
            wav = Path(tmp) / f"w{i}.wav"
            soundfile.write(str(wav), window, rate, subtype="FLOAT")
            # aisfx inference.py constants: SAMPLE_RATE 44100, 2048 / 1024, 96 mels, 0-22050 Hz
            spec = front.compute_spectrogram(filename=str(wav), sr=44100.0, block_size=2048, hop_size=1024,
                                             n_mels=96, f_min=0.0, f_max=22050.0)
            spec = spec.T if kind == "librosa" else spec  # librosa gives (bands, time)
            specs.append(prep.spectrogram_normalize(spec, spec_norm="original"))
            if kind == "librosa":
                import librosa

                y, _ = librosa.load(path=str(wav), sr=44100.0)
                peaks.append(float(np.max(np.abs(y))))
            else:  # essentia's EasyLoader applies ReplayGain (to -6 dB), not a peak
                peaks.append(float("nan"))
    np.savez(argv[1], spec=np.stack(specs).astype(np.float32), peak=np.array(peaks, dtype=np.float32))
    print(f"wrote {argv[1]}: {len(specs)} {kind} spectrograms {specs[0].shape} (numpy {np.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
