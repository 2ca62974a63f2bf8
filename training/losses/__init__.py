"""Training losses: segmentation (segmentation.py), SC (sc.py), CDCL (cdcl.py, contrastive.py)."""

from .cdcl import CDCL, diagonal_entropy, diagonal_gaussian, pool_region, w2_diagonal, w2_full
from .contrastive import info_nce, text_diversity
from .sc import Counterfactuals, SemanticCounterfactual, ZDenoiser, orthogonal_mix
from .segmentation import bce_dice, ce_dice, concept_loss, dice_loss, focal_binary

__all__ = [
    "CDCL",
    "Counterfactuals",
    "SemanticCounterfactual",
    "ZDenoiser",
    "bce_dice",
    "ce_dice",
    "concept_loss",
    "diagonal_entropy",
    "diagonal_gaussian",
    "dice_loss",
    "focal_binary",
    "info_nce",
    "orthogonal_mix",
    "pool_region",
    "text_diversity",
    "w2_diagonal",
    "w2_full",
]
