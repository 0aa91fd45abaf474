"""Pydantic configs, loadable from YAML/JSON; a checkpoint carries the config that rebuilds its
model.

``TrainConfig`` describes one run of the training loop (pretraining or finetuning): the input
(``modality``), the encoder, the pretext (PART) or finetuning head, the optimiser and the
runtime. Presets shipped with the package live in ``relpos/configs/*.yaml`` and are loaded by
name with :func:`load_preset`.
"""

from __future__ import annotations

import inspect
import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from torch import nn

from relpos.core.atomic import atomic_write_text
from relpos.core.checks import Dim, Rate, Seed, Size, Steps
from relpos.core.modality import MODALITIES, Modality, get_modality
from relpos.core.sampler_configs import (
    BoxesConfig,
    CuboidsConfig,
    GridConfig,
    SamplerConfig,
    SpansConfig,
    WindowsConfig,
    parse_sampler,
)
from relpos.core.samplers import Grid, SpanSampler
from relpos.core.tokenizer import TokenizerConfig
from relpos.errors import one_line
from relpos.nn.heads import HEADS
from relpos.nn.vit import MODELS, ViT, create_model
from relpos.train.methods import build_part, get_method, pretraining_methods

__all__ = [
    "BoxesConfig",
    "CuboidsConfig",
    "EarlyStoppingConfig",
    "EncoderConfig",
    "FinetuneConfig",
    "GridConfig",
    "ModalityConfig",
    "OptimConfig",
    "PresetSections",
    "PretextConfig",
    "RuntimeConfig",
    "SamplerConfig",
    "SpansConfig",
    "TrainConfig",
    "WindowsConfig",
    "build_modality",
    "build_model",
    "list_presets",
    "load_config",
    "load_preset",
    "merge",
    "parse_overrides",
    "save_config",
]

T = TypeVar("T", bound=BaseModel)


class Base(BaseModel):
    """Configs: unknown keys, NaN and infinities are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# ---------------------------------------------------------------------- samplers
#: a sampler config, ``{kind: name, **fields}``, validated by the config class registered under
#: ``kind`` (:func:`relpos.core.sampler_configs.register_sampler`)
SamplerField = Annotated[SerializeAsAny[SamplerConfig], BeforeValidator(parse_sampler)]


def build_sampler(cfg: SamplerConfig, token_shape: tuple[int, ...]) -> SpanSampler:
    return cfg.build(token_shape)


# ---------------------------------------------------------------------- model parts
class ModalityConfig(Base):
    """The input: ``(B, channels, *extent)`` cut into tokens of ``token_shape``.

    ``name`` is a registered modality (:func:`relpos.core.modality.register_modality`) built with
    ``options``; it supplies the number of axes, the on-the-fly transform and the default data
    source. ``extent`` is the shape tokens are cut from (after the transform). ``tokenizer``
    says how spans become tokens (band limit, standardisation; default: the plain resize), the
    same in pretraining, finetuning and prediction.
    """

    name: str = "signal"
    channels: Dim = 6
    extent: Annotated[list[Size], Field(min_length=1)] = [3000]
    token_shape: Annotated[list[Dim], Field(min_length=1)] = [100]
    options: dict[str, Any] = {}
    tokenizer: TokenizerConfig = TokenizerConfig()

    @model_validator(mode="after")
    def _check(self) -> ModalityConfig:
        self.tokenizer.build(self.token_shape)  # ValueError if the band does not fit the token
        if len(self.extent) != len(self.token_shape):
            raise ValueError(
                f"modality: extent {self.extent} and token_shape {self.token_shape} need the same number of axes"
            )
        if any(t > e for t, e in zip(self.token_shape, self.extent)):
            raise ValueError(
                f"modality: token_shape {self.token_shape} exceeds extent {self.extent}"
            )
        registered = self.registered()
        if registered.ndim != len(self.extent):
            raise ValueError(
                f"modality {self.name!r} has {registered.ndim} axes; extent {self.extent} has "
                f"{len(self.extent)}"
            )
        return self

    def registered(self) -> Modality:
        """The registered modality ``name`` built with ``options`` (errors list known names)."""
        MODALITIES.get(self.name)
        try:
            return get_modality(self.name, **self.options)
        except TypeError as exc:
            raise ValueError(f"modality {self.name!r}: bad options {self.options}: {exc}") from exc

    @property
    def token_dim(self) -> int:
        return self.channels * math.prod(self.token_shape)

    @property
    def ndim(self) -> int:
        return len(self.extent)


class EncoderConfig(Base):
    """A ViT preset (``relpos models``) plus overrides; position settings come from the task."""

    preset: str = "vit_eeg_mini"
    dim: Dim | None = None
    depth: Annotated[int, Field(ge=1, le=1024)] | None = None
    heads: Dim | None = None
    mlp_ratio: Annotated[float, Field(gt=0, le=64)] | None = None
    drop: Rate | None = None
    attn_drop: Rate | None = None
    drop_path: Rate | None = None
    class_token: bool | None = None
    # tokenizer: "linear" (the paper's) or "conv" (a small conv stem per token); None: the preset's
    embed: Literal["linear", "conv"] | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        return MODELS.check(v, "encoder preset")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> EncoderConfig:
        preset = MODELS.get(self.preset)
        dim, heads = self.dim or preset.get("dim"), self.heads or preset.get("heads")
        if isinstance(dim, int) and isinstance(heads, int) and dim % heads:
            raise ValueError(
                f"encoder.dim ({dim}) must be divisible by encoder.heads ({heads}) "
                f"(preset {self.preset!r} and overrides)"
            )
        return self

    def build(self, **task: Any) -> ViT:
        overrides = {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}
        return create_model(self.preset, **{**overrides, **task})


class PretextConfig(Base):
    """Pretraining: the method (PART by default) and its options; PART's spans, pairs, relative
    head and targets; the encoder's positions."""

    sampler: SamplerField = WindowsConfig()
    num_pairs: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    head: str = "cross_attention"
    head_kwargs: dict[str, Any] = {}
    scale: Literal["ratio", "log"] | None = None
    pos_embed: Literal["none", "sincos"] = "none"
    pos_drop: Rate = 0.0
    pos_unit: Annotated[float, Field(gt=0)] = 1.0
    # pairs the loss averages over: all, or those whose target / either member lost its position
    score: Literal["all", "dropped_target", "dropped_either"] = "all"
    # "gaussian_nll": the head also predicts a log-variance per component
    loss: Literal["mse", "gaussian_nll"] = "mse"
    # weigh every target component equally (squared error / the neutral prediction's, per batch)
    normalize: bool = False
    # the pretraining method whose model is built (relpos.train.methods; "part": PART) and its
    # options (validated by the method's options model; omitted ones take its defaults)
    method: str = "part"
    options: dict[str, Any] = {}

    @field_validator("head")
    @classmethod
    def _known_head(cls, v: str) -> str:
        return HEADS.check(v, "head")

    @model_validator(mode="after")
    def _known_head_kwargs(self) -> PretextConfig:
        # dim and out_dim come from the encoder and the target; the rest must be the head's
        params = inspect.signature(HEADS.get(self.head)).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        known = sorted(k for k in params if k not in ("self", "dim", "out_dim"))
        for key in self.head_kwargs:
            if key in ("dim", "out_dim"):
                raise ValueError(
                    f"head_kwargs.{key}: set by relpos ({key} comes from the "
                    f"{'encoder' if key == 'dim' else 'method target'}), not a head option"
                )
            if key not in params and not takes_any:
                raise ValueError(
                    f"head_kwargs.{key}: not an option of head {self.head!r} "
                    f"(known: {', '.join(known)})"
                )
        return self

    @model_validator(mode="after")
    def _known_method(self) -> PretextConfig:
        method = get_method(self.method, pretraining_methods())
        method.parse_options(self.options)
        return self

    @model_validator(mode="after")
    def _score_needs_drop(self) -> PretextConfig:
        if self.score != "all" and (self.pos_embed == "none" or self.pos_drop == 0):
            raise ValueError(
                f"pretext.score={self.score!r} scores pairs that lost their position: it needs "
                "pretext.pos_embed='sincos' and pretext.pos_drop > 0"
            )
        return self


class EarlyStoppingConfig(Base):
    """Stop finetuning when a validation metric stops improving; keep the best weights.

    ``metric`` is a key of the validation metrics (``loss``, ``accuracy``, ``kappa``,
    ``macro_f1`` from :func:`relpos.train.api.train`'s ``val_dataset``), ``mode`` whether lower
    or higher is better. Validation runs every ``every`` optimiser steps (``None``: at each epoch
    end); after ``patience`` evaluations without an improvement larger than ``min_delta`` the run
    stops, and ``final.pt`` / ``encoder.safetensors`` hold the best weights (also in ``best.pt``).
    """

    metric: str = "loss"
    mode: Literal["min", "max"] = "min"
    patience: Annotated[int, Field(ge=1, le=10_000)] = 5
    every: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class FinetuneConfig(Base):
    """Supervised finetuning on on-grid tokens with a [CLS] classifier.

    Augmentation is not a config field: pass ``augment=`` to :func:`relpos.train.api.train`
    (the image experiment builds it from its own ``augment`` list).
    """

    num_classes: Annotated[int, Field(ge=1, le=1_000_000)] = 5
    grid: GridConfig = GridConfig()
    pos_embed: Literal["none", "learned", "sincos"] = "learned"
    pos_drop: Rate = 0.0  # fraction of tokens whose position encoding is dropped in training
    linear_probe: bool = False  # freeze the encoder, train only the classifier
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    class_balanced: bool = False  # weight the loss by inverse class frequency
    init: str | None = None  # checkpoint or safetensors export of a pretrained encoder
    # stop on a validation metric (needs a validation set; see EarlyStoppingConfig)
    early_stopping: EarlyStoppingConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_augment(cls, data: Any) -> Any:
        # ``augment`` was an ignored field: configs and checkpoints that hold it empty still load
        if isinstance(data, dict) and "augment" in data:
            data = dict(data)
            if data.pop("augment"):
                raise ValueError(
                    "finetune.augment is not a TrainConfig field (it was never applied): pass "
                    "augment= to relpos.train.api.train, or set the image experiment's augment"
                )
        return data


class OptimConfig(Base):
    """The optimiser and the budget: every count is at least 1, so a run never has 0 steps."""

    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    min_lr: Annotated[float, Field(ge=0, le=10)] = 1e-5
    weight_decay: Annotated[float, Field(ge=0, le=100)] = 0.05
    betas: tuple[Rate, Rate] = (0.9, 0.95)
    warmup_epochs: Annotated[float, Field(ge=0, le=100_000)] = 1.0
    epochs: Steps = 10
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    accum_steps: Annotated[int, Field(ge=1, le=100_000)] = 1
    clip_grad: Annotated[float, Field(gt=0)] | None = 1.0
    # stop after this many optimiser steps (budgets, tests)
    max_steps: Steps | None = None
    # train for at least this many optimiser steps: epochs rise to ceil(min_steps / steps per
    # epoch) when that is more (max_steps still caps; the schedule spans the resulting total)
    min_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class RuntimeConfig(Base):
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    amp: Literal["none", "bf16", "fp16", "auto"] = "auto"  # auto: bf16 on GPUs that have it
    compile: bool = False
    seed: Seed = 0
    num_workers: Annotated[int, Field(ge=0, le=1024)] = 0
    # optimiser steps; 0: only at epoch ends
    checkpoint_every: Annotated[int, Field(ge=0, le=1_000_000_000)] = 500
    keep_checkpoints: Annotated[int, Field(ge=1, le=10_000)] = 2
    log_every: Steps = 20
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v != "auto":
            try:
                torch.device(v)
            except (RuntimeError, ValueError):
                raise ValueError(
                    f"unknown device {v!r}; known: auto, cpu, cuda, cuda:<index>, mps"
                ) from None
        return v


class TrainConfig(Base):
    """One training run: ``task="pretrain"`` (PART) or ``task="finetune"``."""

    task: Literal["pretrain", "finetune"] = "pretrain"
    modality: ModalityConfig = ModalityConfig()
    encoder: EncoderConfig = EncoderConfig()
    pretext: PretextConfig = PretextConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    optim: OptimConfig = OptimConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _check_axes(self) -> TrainConfig:
        # the pretext sampler only matters to pretraining (finetuning sections keep the default)
        m = self.modality
        checks: list[tuple[str, SamplerConfig]] = [("finetune.grid", self.finetune.grid)]
        if self.task == "pretrain":
            checks.insert(0, ("pretext.sampler", self.pretext.sampler))
        for field, sampler in checks:
            axes = sampler.axes()
            if axes is not None and axes != m.ndim:
                raise ValueError(
                    f"{field} {sampler.kind!r} draws {axes}-D spans but modality {m.name!r} has "
                    f"{m.ndim} axes (extent {m.extent})"
                )
        # the samplers build and fit the extent: one draw with a generator of its own (the
        # global random state is untouched), so a bad size fails at load, not at the first batch
        extent = tuple(m.extent)
        for field, _ in checks:
            try:
                if field == "finetune.grid":
                    self.grid_sampler().num_spans(extent)
                else:
                    self.pretext_sampler()(extent, 1, generator=torch.Generator())
            except ValueError as exc:
                raise ValueError(f"{field}: {exc}") from None
        return self

    def pretext_sampler(self) -> SpanSampler:
        if self.pretext.sampler.kind == "modality":
            return self.modality.registered().sampler
        return build_sampler(self.pretext.sampler, tuple(self.modality.token_shape))

    def grid_sampler(self) -> Grid:
        return self.finetune.grid.build(tuple(self.modality.token_shape))

    def modality_object(self) -> Modality:
        """The run's :class:`~relpos.core.modality.Modality`: the registered one (its transform,
        data source), with this config's channels, token shape, tokenizer and samplers."""
        registered = self.modality.registered()
        return Modality(
            name=self.modality.name,
            channels=self.modality.channels,
            token_shape=tuple(self.modality.token_shape),
            sampler=self.pretext_sampler(),
            grid=self.grid_sampler(),
            transform=registered.transform,
            data_source=registered.data_source,
            preset=registered.preset,
            tokenizer=self.modality.tokenizer.build(self.modality.token_shape),
        )


class PresetSections(BaseModel):
    """The training sections of an experiment preset (its other keys are ignored): what
    ``relpos pretrain``/``finetune`` read from ``--preset``."""

    model_config = ConfigDict(extra="ignore")

    pretrain: TrainConfig
    finetune: TrainConfig
    part_grid: GridConfig = GridConfig()


def build_modality(cfg: TrainConfig) -> Modality:
    """``cfg.modality_object()``: what training cuts tokens with, and the transform it applies."""
    return cfg.modality_object()


def build_model(cfg: TrainConfig) -> nn.Module:
    """The model a config describes: for pretraining, the model of ``pretext.method`` (a
    :class:`~relpos.core.part.PART` for PART methods; see :mod:`relpos.train.methods`) over a
    :class:`~relpos.nn.vit.ViT` encoder; for finetuning, a ViT classifier."""
    m = cfg.modality
    # the conv stem needs the token's layout; the linear embedding only its flat size
    layout: dict[str, Any] = (
        dict(token_shape=tuple(m.token_shape), channels=m.channels)
        if cfg.encoder.embed == "conv"
        else {}
    )
    if cfg.task == "pretrain":
        p = cfg.pretext
        encoder = cfg.encoder.build(
            token_dim=m.token_dim,
            pos_embed=p.pos_embed,
            pos_drop=p.pos_drop,
            pos_unit=p.pos_unit,
            num_classes=0,
            **layout,
        )
        return (get_method(p.method).build or build_part)(cfg, encoder)
    f = cfg.finetune
    n = cfg.grid_sampler().num_spans(tuple(m.extent))
    return cfg.encoder.build(
        **layout,
        token_dim=m.token_dim,
        pos_embed=f.pos_embed,
        num_tokens=n if f.pos_embed == "learned" else None,
        pos_drop=f.pos_drop,
        pos_unit=cfg.pretext.pos_unit,
        num_classes=f.num_classes,
    )


# ---------------------------------------------------------------------- files
def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        msg = " ".join(str(exc).split())  # YAML errors span lines
        raise ValueError(f"{path}: cannot parse config: {msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, cls: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    """Load a YAML or JSON file into ``cls``; errors name the file and the field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return cls.model_validate(_read(path))
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid {cls.__name__}: {one_line(exc)}") from exc


def save_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write a config as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    path = Path(path)
    data = cfg.model_dump(mode="json")
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if path.suffix in (".yaml", ".yml")
        else json.dumps(data, indent=2)
    )
    return atomic_write_text(path, text)


def list_presets() -> list[str]:
    """Names of the config presets shipped in ``relpos/configs``."""
    root = resources.files("relpos") / "configs"
    return sorted(
        p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith((".yaml", ".yml"))
    )


def load_preset(name: str, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Load a shipped preset (or a path to a YAML/JSON file) into ``cls``, with nested
    ``overrides`` merged on top."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        data = _read(path)
    else:
        res = resources.files("relpos") / "configs" / f"{name}.yaml"
        if not res.is_file():
            raise ValueError(
                f"unknown preset {name!r}; shipped presets: {', '.join(list_presets())}"
            )
        data = yaml.safe_load(res.read_text())
    data = merge(data, overrides or {})
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"preset {name!r}: invalid {cls.__name__}: {one_line(exc)}") from exc


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, recursively for nested mappings (neither is modified).
    A mapping whose ``kind`` differs from the base's (a sampler of another kind) replaces it
    instead: the other kind's fields would not fit."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        if (
            isinstance(v, dict)
            and isinstance(old, dict)
            and v.get("kind", old.get("kind")) == old.get("kind")
        ):
            out[k] = merge(old, v)
        else:
            out[k] = v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "runtime.amp=bf16"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise ValueError(f"override {item!r} must look like key.path=value")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p!r} was set to a value, not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            msg = " ".join(str(exc).split())
            raise ValueError(f"override {item!r}: cannot parse the value: {msg}") from exc
    return out
