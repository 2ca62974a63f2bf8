"""Ship a trained checkpoint as package weights: half-precision storage, the sidecar with how it was made and scored.

    python scripts/ship_weights.py out/train/icf-stamps-cpu/best.safetensors weights/icf-lite-stamps.safetensors \
        --recipe "icf-train fit --config stamps-cpu" --results docs/results/realmedia.json

Floating-point tensors are stored as float16 (half the bytes in the wheel and in the tree that travels to a GPU
machine); loading casts them back to float32 (model.weights.load_weights_into copies into the network's own
tensors), so every consumer sees the same network. The config stays in the file's metadata and its sidecar.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from model.weights import CONFIG_KEY, file_sha256, sidecar_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="trained checkpoint (.safetensors)")
    ap.add_argument("dst", help="where the shipped file goes (.safetensors; its .json sidecar beside it)")
    ap.add_argument("--recipe", required=True, help="the command that trained it")
    ap.add_argument("--trained-on", default="", help="machine, steps, wall time")
    ap.add_argument("--results", action="append", default=[], help="a benchmark JSON to embed (repeatable)")
    args = ap.parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: (v.half() if v.dtype == torch.float32 else v).contiguous() for k, v in state.items()}
    tmp = dst.with_suffix(".tmp")
    save_file(half, str(tmp), metadata={CONFIG_KEY: meta[CONFIG_KEY]})
    tmp.replace(dst)
    train_doc = json.loads(sidecar_path(src).read_text()) if sidecar_path(src).is_file() else {}
    doc = {
        "config": json.loads(meta[CONFIG_KEY]),
        "sha256": file_sha256(dst),
        "storage": "float16 (loaded as float32)",
        "recipe": args.recipe,
        "trained_on": args.trained_on,
        "train_config": train_doc.get("train_config"),  # the resolved training config: what the recipe must reproduce
        "step": train_doc.get("step"),
        "val": train_doc.get("val"),
        "results": {Path(p).stem: json.loads(Path(p).read_text()) for p in args.results},
    }
    sidecar_path(dst).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{dst}: {dst.stat().st_size / 1e6:.1f} MB, sidecar {sidecar_path(dst)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
