"""One-time conversion of aisfx 0.1.2's pickled weights into safetensors in the user cache.

    pip install --no-deps aisfx==0.1.2   # --no-deps: its librosa / numpy pins never enter the environment
    python -m model.aisfx_convert        # -> <user cache>/aisfx-0.1.2/embedding.safetensors

The pickle (aisfx/models/checkpoint.pth: (state dict, dataset table)) is read with torch's weights-only
unpickler, which runs no code; only numpy's scalar type (the table's class indices) is allowed besides
tensors. Only the ``embedding_net.*`` tensors are kept (aisfx's per-dataset classifier heads are not used).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from .audio_pretrained import AISFX_VERSION, CONVERT_HINT, INSTALL_HINT, AisfxCNN, converted_weights_path

_PREFIX = "embedding_net."  # aisfx's CrossNet keeps the embedding CNN under this name


def _installed_checkpoint() -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("aisfx")
    except PackageNotFoundError:
        raise FileNotFoundError(f"package aisfx is not installed: {INSTALL_HINT}") from None
    if dist.version != AISFX_VERSION:
        raise FileNotFoundError(f"package aisfx is version {dist.version}, these weights are {AISFX_VERSION}: {INSTALL_HINT}")
    found = [f for f in dist.files or () if f.as_posix() == "aisfx/models/checkpoint.pth"]
    path = Path(dist.locate_file(found[0])) if found else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"aisfx {AISFX_VERSION} is installed without aisfx/models/checkpoint.pth; reinstall: {INSTALL_HINT}")
    return path


def convert_installed_weights(out: Path | None = None) -> Path:
    """Reads the installed aisfx checkpoint (weights-only unpickler) and writes its embedding CNN as safetensors."""
    import numpy as np
    from safetensors.torch import save_file

    from .weights import file_sha256

    source = _installed_checkpoint()
    scalar = np.dtype("int64").type(0).__reduce__()[0]  # numpy's scalar reconstructor, whatever module holds it
    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("int64"))]
    with torch.serialization.safe_globals(allowed):
        weights, _datasets = torch.load(str(source), map_location="cpu", weights_only=True)
    state = {k[len(_PREFIX):]: v.contiguous() for k, v in weights.items() if k.startswith(_PREFIX)}
    cnn = AisfxCNN()
    cnn.load_state_dict(state)  # strict: the published tensors fit this module exactly
    out = Path(out) if out else converted_weights_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    meta = {"source": f"aisfx {AISFX_VERSION} aisfx/models/checkpoint.pth", "source_sha256": file_sha256(source),
            "licence": "CC BY 4.0, (c) 2022 A. B. Ma and A. Lerch"}
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(out)  # a failed conversion never leaves a half-written file under the real name
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(f"usage: {CONVERT_HINT}  (after `{INSTALL_HINT}`); it takes no arguments", file=sys.stderr)
        return 2
    try:
        path = convert_installed_weights()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
