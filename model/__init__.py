"""ICF networks: configs, registry, the network with its clip and streaming forms, checkpoints.

Imports torch only (plus the backbone's own package for efficientnet_lite0).
"""

from .config import AUDIO_SAMPLES, SAMPLE_RATE, ICFConfig
from .context import ContextState, advance, clip_pushes, initial_state, ring_pushes, segment_closes
from .icf import ClipOutput, ICFNet
from .registry import build_from_config, build_model, get_config, list_models
from .weights import load_checkpoint, load_weights_into, read_checkpoint_config, save_checkpoint

__all__ = [
    "AUDIO_SAMPLES",
    "SAMPLE_RATE",
    "ICFConfig",
    "ICFNet",
    "ClipOutput",
    "ContextState",
    "advance",
    "initial_state",
    "segment_closes",
    "ring_pushes",
    "clip_pushes",
    "build_model",
    "build_from_config",
    "get_config",
    "list_models",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights_into",
    "read_checkpoint_config",
]
