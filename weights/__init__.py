"""The shipped checkpoint, as package data: it resolves from an installed wheel as from a clone,
whatever the current directory. It knows 8 SynthAVS classes only (see README)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "icf-lite-synthavs.safetensors"  # + icf-lite-synthavs.json: how it was trained and scored
SHIPPED_NAME = "icf-lite-synthavs"  # what --weights accepts for it in any directory (a path there would need the clone)


def weights_arg(text: str) -> str:
    """A --weights value: the shipped checkpoint's name (``icf-lite-synthavs``, or its file name), or a path.
    A file of that name in the current directory wins over the shipped one."""
    if text in (SHIPPED_NAME, SHIPPED.name) and not Path(text).exists():
        return str(SHIPPED)
    return text


__all__ = ["HERE", "SHIPPED", "SHIPPED_NAME", "weights_arg"]
