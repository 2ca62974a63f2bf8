"""The shipped checkpoints, as package data: they resolve from an installed wheel as from a clone,
whatever the current directory.

- SHIPPED (icf-lite-stamps): trained on real photos and real recordings (synthavs.stamps); the default everywhere;
- SYNTHAVS (icf-lite-synthavs): trained on the synthetic SynthAVS scenes only; the demo uses it for the synthetic
  scene (``icf-stream demo --scene synth``, and on a machine without the real-media packages).
Each has a .json sidecar beside it: how it was trained and what it scored."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
STAMPS = HERE / "icf-lite-stamps.safetensors"
SYNTHAVS = HERE / "icf-lite-synthavs.safetensors"
SHIPPED = STAMPS if STAMPS.is_file() else SYNTHAVS

__all__ = ["HERE", "SHIPPED", "STAMPS", "SYNTHAVS"]
