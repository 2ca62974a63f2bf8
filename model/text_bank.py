"""The text bank: K named concept embeddings (a frozen buffer), projected into the text space.

The embeddings come from a real sentence encoder (all-MiniLM-L6-v2, the `text` extra) and are
computed once, offline; banks live as .safetensors files with the prompts in their metadata.
At run time no text encoder is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

BANK_DIR = Path(__file__).resolve().parent / "banks"

# The SynthAVS vocabulary: class name -> the prompt that gets embedded.
SYNTHAVS_CONCEPTS: dict[str, str] = {
    "guitar": "a guitar playing",
    "dog": "a dog barking",
    "siren": "a siren wailing",
    "piano": "a piano playing",
    "bird": "a bird singing",
    "drum": "a drum beating",
    "car": "a car engine revving",
    "baby": "a baby crying",
}


def resolve_bank_path(bank: str) -> Path:
    """A committed bank name (model/banks/NAME.safetensors) or a file path."""
    candidate = BANK_DIR / f"{bank}.safetensors"
    if candidate.is_file():
        return candidate
    path = Path(bank)
    if path.is_file():
        return path
    names = sorted(p.stem for p in BANK_DIR.glob("*.safetensors"))
    raise FileNotFoundError(f"text bank '{bank}' is neither a committed bank {names} nor an existing file")


def load_bank(bank: str) -> tuple[tuple[str, ...], torch.Tensor]:
    """Returns (concept prompts, embeddings [K, text_dim])."""
    from safetensors import safe_open

    path = resolve_bank_path(bank)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        emb = f.get_tensor("embeddings")
    if "concepts" not in meta:
        raise ValueError(f"text bank {path} has no 'concepts' metadata; rebuild it with model.text_bank.save_bank")
    concepts = tuple(json.loads(meta["concepts"]))
    if emb.ndim != 2 or emb.shape[0] != len(concepts):
        raise ValueError(f"text bank {path}: embeddings {tuple(emb.shape)} do not match {len(concepts)} concepts")
    return concepts, emb.float()


def save_bank(path: str | Path, concepts: list[str] | tuple[str, ...], embeddings: torch.Tensor) -> None:
    from safetensors.torch import save_file

    save_file({"embeddings": embeddings.contiguous().float()}, str(path), metadata={"concepts": json.dumps(list(concepts))})


def embed_concepts(concepts: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Embeds prompts with the packaged all-MiniLM-L6-v2 ([K, 384], unit norm). Needs the `text` extra."""
    from .text_encoder import sentence_encoder

    encoder = sentence_encoder("embedding a new vocabulary needs the sentence encoder")
    emb = encoder.encode(list(concepts), convert_to_tensor=True, normalize_embeddings=True)
    return emb.detach().cpu().float()


class TextBank(nn.Module):
    """Holds the frozen named embeddings, projected into the width-D text space.

    ``entries()`` -> [K, D]: the named concepts (the mask head's classes and the concept readout).
    """

    def __init__(self, *, num_concepts: int, text_dim: int, width: int) -> None:
        super().__init__()
        self.register_buffer("embeddings", torch.zeros(num_concepts, text_dim))
        self.proj = nn.Sequential(nn.Linear(text_dim, width), nn.LayerNorm(width))

    def entries(self) -> torch.Tensor:
        return self.proj(self.embeddings)
