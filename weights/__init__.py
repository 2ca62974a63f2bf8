"""The shipped checkpoint, as package data: it resolves from an installed wheel as from a clone,
whatever the current directory. It knows 8 SynthAVS classes only (see README)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "icf-lite-synthavs.safetensors"  # + icf-lite-synthavs.json: how it was trained and scored

__all__ = ["HERE", "SHIPPED"]
