"""Builds tests/model/data/aisfx_reference.npz: aisfx's own front ends and CNN on three synthetic clips.

    PYTHONPATH=. .venv/bin/python scripts/aisfx_fixture.py clips /tmp/aref/synth.npz
    /tmp/aisfxenv/bin/python scripts/aisfx_reference.py /tmp/aref/synth.npz /tmp/aref/synth_librosa.npz librosa
    /tmp/aisfxenv-ess/bin/python scripts/aisfx_reference.py /tmp/aref/synth.npz /tmp/aref/synth_essentia.npz essentia
    PYTHONPATH=. .venv/bin/python scripts/aisfx_fixture.py build /tmp/aref/synth_librosa.npz /tmp/aref/synth_essentia.npz

(the venvs: see scripts/aisfx_reference.py; ``build`` needs `pip install --no-deps aisfx==0.1.2` in the
project venv: it runs aisfx's own EmbeddingNet (aisfx/models/cnn2d.py, torch only) on the reference
spectrograms with the published weights, read from the converted safetensors.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "model" / "data" / "aisfx_reference.npz"


def main(argv: list[str]) -> int:
    from tests.model.test_aisfx import reference_clips

    if len(argv) == 2 and argv[0] == "clips":
        np.savez(argv[1], audio=reference_clips(), rate=16000)
        return 0
    if len(argv) != 3 or argv[0] != "build":
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    from aisfx.models.cnn2d import EmbeddingNet  # aisfx's own module: the reference, never used by model/
    from safetensors.torch import load_file

    from model.audio_pretrained import converted_weights_path

    ref = EmbeddingNet("max", 3, 1, 64)
    ref.load_state_dict(load_file(str(converted_weights_path())))
    ref.eval()
    lib, ess = np.load(argv[1]), np.load(argv[2])
    with torch.no_grad():
        emb_lib = ref(torch.from_numpy(lib["spec"])).numpy()
        emb_ess = ref(torch.from_numpy(ess["spec"])).numpy()
    np.savez_compressed(OUT, librosa_spec=lib["spec"], librosa_peak=lib["peak"], librosa_embedding=emb_lib,
                        essentia_spec=ess["spec"], essentia_embedding=emb_ess)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
