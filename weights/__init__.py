"""The shipped checkpoints, as package data: they resolve from an installed wheel as from a clone,
whatever the current directory.

- SHIPPED (icf-lite-stamps): trained on real photos and real recordings (synthavs.stamps); the default everywhere;
- SYNTHAVS (icf-lite-synthavs): trained on the synthetic SynthAVS scenes only; the demo uses it for the synthetic
  scene (``icf-stream demo --scene synth``, and on a machine without the real-media packages).
Each has a .json sidecar beside it: how it was trained and what it scored."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
STAMPS = HERE / "icf-lite-stamps.safetensors"  # + .json: how it was trained and scored
SYNTHAVS = HERE / "icf-lite-synthavs.safetensors"
SHIPPED = STAMPS
# what --weights accepts in any directory (a path there would need the clone)
NAMES = {"icf-lite-stamps": STAMPS, "icf-lite-synthavs": SYNTHAVS}
SHIPPED_NAME = SHIPPED.stem


def weights_arg(text: str) -> str:
    """A --weights value: a shipped checkpoint's name (``icf-lite-stamps``, ``icf-lite-synthavs``, or a file name of
    theirs), or a path. A file of that name in the current directory wins over the shipped one."""
    for name, path in NAMES.items():
        if text in (name, path.name) and not Path(text).exists():
            return str(path)
    return text


__all__ = ["HERE", "NAMES", "SHIPPED", "SHIPPED_NAME", "STAMPS", "SYNTHAVS", "weights_arg"]
