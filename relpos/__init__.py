"""relpos: self-supervised pretraining by relative position prediction between off-grid spans.

The spine is modality-agnostic: ``sampler -> extract -> ViT -> relative head -> MSE``.
Modalities, samplers, heads, encoder presets and data sources are registries: register your
own and name it from configs and the command line.
"""

from relpos import train  # the package, callable as relpos.train.api.train
from relpos.core.extract import extract
from relpos.core.modality import Modality, get_modality, list_modalities, register_modality
from relpos.core.part import PART, PARTOutput
from relpos.core.registry import Registry
from relpos.core.sampler_configs import SamplerConfig, list_samplers, register_sampler
from relpos.core.samplers import (
    Grid,
    RandomBoxes,
    RandomCuboids,
    RandomSpans,
    RandomWindows,
    SpanSampler,
)
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
from relpos.train.api import predict
from relpos.train.checkpoint import export_encoder, load_encoder, load_model
from relpos.train.config import TrainConfig, load_config, load_preset
from relpos.train.data import get_data_source, list_data_sources, register_data_source
from relpos.train.export import relpos_version, save_pretrained

__version__ = relpos_version()  # the installed distribution's version

# The domains' data sources, imported only when a run asks for them (no mne/wfdb at import).
register_data_source("eeg_store", "relpos.sleep.sources:eeg_store")
for _name in ("images", "image_folder", "image_arrays", "digits", "mnist5k", "cifar10", "cifar100"):
    register_data_source(_name, f"relpos.vision.sources:{_name}")
del _name

__all__ = [
    "PART",
    "CrossAttentionHead",
    "Grid",
    "MLPHead",
    "Modality",
    "PARTOutput",
    "PairwiseMLPHead",
    "RandomBoxes",
    "RandomCuboids",
    "RandomSpans",
    "RandomWindows",
    "Registry",
    "RelativeHead",
    "SamplerConfig",
    "SpanSampler",
    "Spans",
    "TrainConfig",
    "ViT",
    "__version__",
    "create_head",
    "create_model",
    "export_encoder",
    "extract",
    "get_data_source",
    "get_modality",
    "list_data_sources",
    "list_heads",
    "list_modalities",
    "list_models",
    "list_samplers",
    "load_config",
    "load_encoder",
    "load_model",
    "load_preset",
    "predict",
    "register_data_source",
    "register_head",
    "register_modality",
    "register_model",
    "register_sampler",
    "relative_targets",
    "sample_pairs",
    "save_pretrained",
    "sincos_encoding",
    "train",
]
