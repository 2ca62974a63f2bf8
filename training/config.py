"""Training configuration: one frozen dataclass (every field commented), JSON files, CLI overrides.

A config file is a flat JSON object of these fields (``"//"`` keys are comments and ignored);
``--key=value`` overrides are checked against the fields, parsed as JSON where they parse
(``--sc=false``, ``--lr=3e-4``, ``--image_size=[224,224]``) and as plain strings otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class TrainConfig:
    # ---- run ----
    name: str = "icf"  # run name; outputs go to out_dir
    out_dir: str = "out/train/icf"  # checkpoints, log.jsonl, metrics land here
    seed: int = 0  # torch / numpy seed; SynthAVS training clips use it too
    device: str = "auto"  # auto (cuda when available), cuda, cpu
    # ---- model ----
    model: str = "icf-lite"  # registry name (model.list_models())
    image_size: tuple[int, int] = (224, 224)  # (H, W) saved in the checkpoint and used for validation
    train_size: tuple[int, int] = (0, 0)  # (H, W) to train at when smaller (0 = image_size); multiples of 32
    frame_text: bool = True  # MIT ablation switches, copied into the model config
    segment_text: bool = True
    video_text: bool = True
    text_bridge: bool = True
    semantic: bool = False  # K + 1 class head (AVSS / SynthAVS semantic) instead of a binary mask
    model_overrides: dict = field(default_factory=dict)  # any other ICFConfig fields (e.g. {"width": 64})
    init: str = ""  # start from these weights (a .safetensors checkpoint), e.g. a SynthAVS model for S4
    # ---- data ----
    train_data: str = "synthavs:mixed"  # data spec (training.data.parse_spec)
    val_data: str = "synthavs:single,split=val"  # validation spec ("" = no validation)
    val_clips: int = 64  # clips used per validation (the first N of the val set)
    synth_bias: float = 0.8  # SynthAVS: chance the salient object is the sounding one (training and val)
    frames: int = 5  # T: frames (1 s segments) per training clip
    batch_size: int = 8  # clips per step per process
    workers: int = 2  # DataLoader worker processes per process (SynthAVS renders in them)
    hflip: float = 0.5  # probability of a horizontal flip (image and masks together)
    # ---- optimisation ----
    steps: int = 2000  # optimizer steps (the schedule's length)
    max_minutes: float = 0.0  # > 0: also stop at this wall time; the schedule then follows elapsed time
    lr: float = 4e-4  # peak AdamW learning rate
    backbone_lr_scale: float = 0.25  # the pretrained visual backbone learns this much slower
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine to min_lr_ratio * lr
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU), bf16, fp16, off
    channels_last: bool = True  # NHWC convolutions on CUDA
    # ---- losses (ICF: L_seg + w_sc * L_cf + w_cdcl * sum of pairs) ----
    w_bce: float = 1.0  # segmentation: BCE (binary) or CE (semantic) weight
    w_dice: float = 1.0  # segmentation: Dice weight
    w_focal: float = 1.0  # segmentation: focal weight (the paper's L_seg = BCE + Dice + focal)
    focal_gamma: float = 2.0  # focal exponent
    w_concept: float = 0.2  # concept logits vs the heard classes (not in the paper; an arm of its own)
    text_encoder: bool = True  # paper MIT: learn the implicit-text tokens through the frozen MiniLM (`text` extra)
    text_every: int = 1  # run the encoder (and teach the tokens) every N steps; between, the stored texts (CPU cost knob)
    # > 0: push the visual implicit texts l_v of different clips apart (mean cos^2; issue 21's MIT mend, off in the paper)
    w_text_diversity: float = 0.0
    sc: bool = True  # semantic counterfactuals: latent diffusion over z, L_cf, the counterfactual pool
    sc_samples: int = 16  # S counterfactuals drawn per clip
    sc_topk: int = 8  # k_c most similar to z kept as the pool
    sc_strength: float = 0.75  # a: counterfactual strength (paper: best 0.7-0.8)
    sc_step: int = 200  # s_d: the intermediate diffusion step the counterfactual starts from (of 1000)
    sc_ddim_steps: int = 4  # deterministic denoising steps from s_d back to 0
    w_sc: float = 0.5  # l_cf: weight of L_cf = noise prediction + w_ortho * L_ortho
    w_ortho: float = 0.1  # l_ortho (0 = the "continuous without L_ortho" ablation)
    sc_lz: float = 2.0  # l_z: weight of cos^2 inside L_ortho (optimum cos = 1 / l_z)
    cdcl: bool = True  # collaborative distribution-aware contrastive learning (CDCL)
    w_cdcl: float = 0.2  # weight of the CDCL sum
    cdcl_weights: dict = field(default_factory=lambda: {"va": 1.0, "vt": 1.0, "at": 1.0})  # per pair
    cdcl_temperature: float = 0.5  # tau in exp(-distance / tau)
    cdcl_distance: str = "distribution"  # distribution (W2 + entropy), feature (per frame), prototype (means)
    cdcl_gamma: float = 0.01  # gamma: weight of the entropies H1 + H2 in the distribution distance
    cdcl_dim: int = 64  # width of the contrastive projection heads
    # ---- logging / checkpoints ----
    log_every: int = 10  # steps between JSONL log lines
    val_every: int = 250  # steps between validations (and best-checkpoint updates)
    ckpt_every: int = 250  # steps between last-checkpoint saves (resume points)

    def __post_init__(self) -> None:
        problems = []
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            problems.append(f"amp '{self.amp}' must be auto, bf16, fp16 or off")
        if self.sc and not (self.cdcl and (self.cdcl_weights.get("vt") or self.cdcl_weights.get("at"))):
            # SC's own losses train only its denoiser (z and the condition are detached): its pool reaches
            # the network through CDCL's text pairs alone, so without them sc=true trains the same network as sc=false
            problems.append("sc=true needs cdcl=true with a vt or at pair (SC reaches the network only through CDCL's "
                            "text pairs); set sc=false")
        if self.cdcl_distance not in ("distribution", "feature", "prototype"):
            problems.append(f"cdcl_distance '{self.cdcl_distance}' must be distribution, feature or prototype")
        if not 1 <= self.sc_topk <= self.sc_samples:
            problems.append(f"sc_topk {self.sc_topk} must lie in 1..sc_samples ({self.sc_samples})")
        if self.device not in ("auto", "cuda", "cpu") and not self.device.startswith("cuda:"):
            problems.append(f"device '{self.device}' must be auto, cpu, cuda or cuda:N")
        bad = sorted(set(self.cdcl_weights) - {"va", "vt", "at"})
        if bad:
            problems.append(f"cdcl_weights has unknown pair(s) {bad}; pairs are va, vt, at")
        if any(s % 32 for s in (*self.image_size, *self.effective_train_size)):
            problems.append(f"image_size {self.image_size} / train_size {self.train_size} must be multiples of 32")
        if self.w_text_diversity < 0:
            problems.append(f"w_text_diversity {self.w_text_diversity} must be >= 0")
        if self.text_every < 1:
            problems.append(f"text_every {self.text_every} must be >= 1")
        if self.steps < 1 or self.batch_size < 1 or self.frames < 1:
            problems.append("steps, batch_size and frames must be >= 1")
        if problems:
            raise ValueError("bad training config: " + "; ".join(problems))

    @property
    def effective_train_size(self) -> tuple[int, int]:
        return tuple(self.image_size) if not any(self.train_size) else tuple(self.train_size)

    def model_kwargs(self, *, size: tuple[int, int] | None = None) -> dict[str, Any]:
        """Overrides for model.build_model (MIT switches, head, size)."""
        kw = dict(self.model_overrides)
        kw.update(
            frame_text=self.frame_text,
            segment_text=self.segment_text,
            video_text=self.video_text,
            text_bridge=self.text_bridge,
            semantic=self.semantic,
            image_size=tuple(size or self.image_size),
        )
        return kw

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **_coerce(changes))


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {' or '.join(m)}?)" if (m := difflib.get_close_matches(k, known, n=2, cutoff=0.6)) else k
                 for k in unknown]
        raise ValueError(f"unknown training config key(s): {', '.join(hints)}; `icf-train fit --help` lists them all")
    out = {}
    for k, v in values.items():
        default = getattr(TrainConfig(), k)
        if isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"training config key '{k}' wants true/false, got {v!r}")
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if type(default) is not type(v) and not (isinstance(default, float) and isinstance(v, float)):
            raise ValueError(f"training config key '{k}' wants {type(default).__name__}, got {v!r}")
        out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """A config file (a path, or a name in training/configs) with ``key=value`` overrides on top."""
    values: dict[str, Any] = {}
    if path:
        p = resolve_config_path(path)
        try:
            values = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"config {p} is not valid JSON: {exc}") from exc
        values = {k: v for k, v in values.items() if not k.startswith("//")}
    if isinstance(overrides, dict):
        values.update(overrides)
    else:
        values.update(parse_overrides(overrides or []))
    return TrainConfig(**_coerce(values))


def resolve_config_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    named = CONFIG_DIR / (p.name if p.suffix == ".json" else f"{p.name}.json")
    if named.is_file():
        return named
    names = sorted(q.stem for q in CONFIG_DIR.glob("*.json"))
    raise FileNotFoundError(f"config '{path}' is neither a file nor one of the committed configs {names}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['--lr=1e-3', 'sc=false', '--key', 'value'] -> {'lr': 0.001, 'sc': False, 'key': 'value'}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(items):
        item = items[i].removeprefix("--")
        if "=" in item:
            key, raw = item.split("=", 1)
        elif i + 1 < len(items):
            key, raw = item, items[i + 1]
            i += 1
        else:
            raise ValueError(f"override '{items[i]}' has no value; write --{item}=VALUE")
        if isinstance(getattr(TrainConfig(), key, None), str):
            out[key] = raw  # string fields take the text as is (a name like "123" stays a string)
        else:
            try:
                out[key] = json.loads(raw)
            except json.JSONDecodeError:
                out[key] = raw
        i += 1
    _coerce(out)  # unknown keys / wrong types fail here, before any work
    return out
