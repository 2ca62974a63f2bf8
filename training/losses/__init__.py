"""Training losses: segmentation (segmentation.py), SC (sc.py), CDCL (cdcl.py, contrastive.py)."""

from .cdcl import CDCL, pool_region
from .contrastive import info_nce, negative_weights
from .sc import SemanticCounterfactual, bhattacharyya, concept_distribution, factual_directions, sc_mask_term
from .segmentation import bce_dice, ce_dice, concept_loss, dice_loss

__all__ = [
    "CDCL",
    "SemanticCounterfactual",
    "bce_dice",
    "bhattacharyya",
    "ce_dice",
    "concept_distribution",
    "concept_loss",
    "dice_loss",
    "factual_directions",
    "info_nce",
    "negative_weights",
    "pool_region",
    "sc_mask_term",
]
