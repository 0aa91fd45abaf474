"""relpos: self-supervised pretraining by relative position prediction between off-grid spans.

The spine is modality-agnostic: ``sampler -> extract -> ViT -> relative head -> MSE``.
"""

from relpos.core.extract import extract
from relpos.core.modality import Modality, get_modality, list_modalities, register_modality
from relpos.core.part import PART, PARTOutput
from relpos.core.samplers import Grid, RandomBoxes, RandomWindows, SpanSampler
from relpos.core.spans import Spans, relative_targets, sample_pairs
from relpos.nn.heads import (
    CrossAttentionHead,
    MLPHead,
    PairwiseMLPHead,
    RelativeHead,
    create_head,
    list_heads,
    register_head,
)
from relpos.nn.vit import ViT, create_model, list_models, register_model, sincos_encoding
from relpos.train.checkpoint import export_encoder, load_encoder, load_model

__version__ = "0.1.0"

__all__ = [
    "PART",
    "CrossAttentionHead",
    "Grid",
    "MLPHead",
    "Modality",
    "PARTOutput",
    "PairwiseMLPHead",
    "RandomBoxes",
    "RandomWindows",
    "RelativeHead",
    "SpanSampler",
    "Spans",
    "ViT",
    "__version__",
    "create_head",
    "create_model",
    "export_encoder",
    "extract",
    "get_modality",
    "list_heads",
    "list_modalities",
    "list_models",
    "load_encoder",
    "load_model",
    "register_head",
    "register_modality",
    "register_model",
    "relative_targets",
    "sample_pairs",
    "sincos_encoding",
]
