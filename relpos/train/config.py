"""Pydantic configs, loadable from YAML/JSON; a checkpoint carries the config that rebuilds its
model.

``TrainConfig`` describes one run of the training loop (pretraining or finetuning): the input
(``modality``), the encoder, the pretext (PART) or finetuning head, the optimiser and the
runtime. Presets shipped with the package live in ``relpos/configs/*.yaml`` and are loaded by
name with :func:`load_preset`.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relpos.core.part import PART
from relpos.core.samplers import Grid, RandomBoxes, RandomWindows, SpanSampler
from relpos.nn.heads import create_head
from relpos.nn.vit import ViT, create_model

__all__ = [
    "BoxesConfig",
    "EncoderConfig",
    "FinetuneConfig",
    "GridConfig",
    "ModalityConfig",
    "OptimConfig",
    "PretextConfig",
    "RuntimeConfig",
    "TrainConfig",
    "WindowsConfig",
    "build_model",
    "list_presets",
    "load_config",
    "load_preset",
    "save_config",
]

Range = tuple[float, float]
T = TypeVar("T", bound=BaseModel)


class Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------- samplers
class WindowsConfig(Base):
    """1D random windows (:class:`~relpos.core.samplers.RandomWindows`)."""

    kind: Literal["windows"] = "windows"
    length: float | Range = 100
    count: int = 40
    snap: bool = False

    def build(self) -> SpanSampler:
        return RandomWindows(self.length, self.count, snap=self.snap)


class BoxesConfig(Base):
    """2D random boxes (:class:`~relpos.core.samplers.RandomBoxes`)."""

    kind: Literal["boxes"] = "boxes"
    size: float | tuple[float, float] | None = 16
    count: int = 196
    scale: Range | None = None
    ratio: Range | None = None
    height: Range | None = None
    width: Range | None = None
    snap: bool = False

    def build(self) -> SpanSampler:
        size = None if self.height is not None else self.size
        return RandomBoxes(
            size=size,
            count=self.count,
            scale=self.scale,
            ratio=self.ratio,
            height=self.height,
            width=self.width,
            snap=self.snap,
        )


class GridConfig(Base):
    """On-grid spans (:class:`~relpos.core.samplers.Grid`); ``token_shape`` defaults to the modality's."""

    kind: Literal["grid"] = "grid"
    token_shape: list[int] | None = None
    stride: list[int] | None = None
    size: list[int] | None = None

    def build(self, token_shape: tuple[int, ...] | None = None) -> Grid:
        ts = self.token_shape or token_shape
        if ts is None:
            raise ValueError("grid sampler: token_shape is not set")
        return Grid(tuple(ts), stride=self.stride, size=self.size)


SamplerConfig = Annotated[WindowsConfig | BoxesConfig | GridConfig, Field(discriminator="kind")]


def build_sampler(
    cfg: WindowsConfig | BoxesConfig | GridConfig, token_shape: tuple[int, ...]
) -> SpanSampler:
    return cfg.build(token_shape) if isinstance(cfg, GridConfig) else cfg.build()


# ---------------------------------------------------------------------- model parts
class ModalityConfig(Base):
    """The input: ``(B, channels, *extent)`` cut into tokens of ``token_shape``."""

    name: str = "signal"
    channels: int = 6
    extent: list[int] = [3000]
    token_shape: list[int] = [100]

    @model_validator(mode="after")
    def _check(self) -> ModalityConfig:
        if len(self.extent) != len(self.token_shape):
            raise ValueError(
                f"modality: extent {self.extent} and token_shape {self.token_shape} need the same number of axes"
            )
        if any(t > e for t, e in zip(self.token_shape, self.extent)):
            raise ValueError(
                f"modality: token_shape {self.token_shape} exceeds extent {self.extent}"
            )
        return self

    @property
    def token_dim(self) -> int:
        return self.channels * math.prod(self.token_shape)

    @property
    def ndim(self) -> int:
        return len(self.extent)


class EncoderConfig(Base):
    """A ViT preset (``relpos models``) plus overrides; position settings come from the task."""

    preset: str = "vit_eeg_mini"
    dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    drop: float | None = None
    attn_drop: float | None = None
    drop_path: float | None = None
    class_token: bool | None = None

    def build(self, **task: Any) -> ViT:
        overrides = {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}
        return create_model(self.preset, **{**overrides, **task})


class PretextConfig(Base):
    """PART pretraining: spans, pairs, relative head, targets."""

    sampler: SamplerConfig = WindowsConfig()
    num_pairs: int = 128
    head: str = "cross_attention"
    head_kwargs: dict[str, Any] = {}
    scale: Literal["ratio", "log"] | None = None
    pos_embed: Literal["none", "sincos"] = "none"
    pos_drop: float = 0.0
    pos_unit: float = 1.0


class FinetuneConfig(Base):
    """Supervised finetuning on on-grid tokens with a [CLS] classifier."""

    num_classes: int = 5
    grid: GridConfig = GridConfig()
    pos_embed: Literal["none", "learned", "sincos"] = "learned"
    pos_drop: float = 0.0  # fraction of tokens whose position encoding is dropped in training
    linear_probe: bool = False  # freeze the encoder, train only the classifier
    label_smoothing: float = 0.0
    class_balanced: bool = False  # weight the loss by inverse class frequency
    augment: list[str] = []  # image augmentations: "flip", "crop"
    init: str | None = None  # checkpoint or safetensors export of a pretrained encoder


class OptimConfig(Base):
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 1.0
    epochs: int = 10
    batch_size: int = 128
    accum_steps: int = 1
    clip_grad: float | None = 1.0
    max_steps: int | None = None  # stop early after this many optimiser steps (budgets, tests)


class RuntimeConfig(Base):
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    amp: Literal["none", "bf16", "fp16", "auto"] = "auto"  # auto: bf16 on GPUs that have it
    compile: bool = False
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 500  # optimiser steps; 0: only at epoch ends
    keep_checkpoints: int = 2
    log_every: int = 20
    progress: bool = True


class TrainConfig(Base):
    """One training run: ``task="pretrain"`` (PART) or ``task="finetune"``."""

    task: Literal["pretrain", "finetune"] = "pretrain"
    modality: ModalityConfig = ModalityConfig()
    encoder: EncoderConfig = EncoderConfig()
    pretext: PretextConfig = PretextConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    optim: OptimConfig = OptimConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    def pretext_sampler(self) -> SpanSampler:
        return build_sampler(self.pretext.sampler, tuple(self.modality.token_shape))

    def grid_sampler(self) -> Grid:
        return self.finetune.grid.build(tuple(self.modality.token_shape))


def build_model(cfg: TrainConfig) -> PART | ViT:
    """The model a config describes: a :class:`~relpos.core.part.PART` for pretraining, a
    :class:`~relpos.nn.vit.ViT` classifier for finetuning."""
    m = cfg.modality
    if cfg.task == "pretrain":
        p = cfg.pretext
        encoder = cfg.encoder.build(
            token_dim=m.token_dim,
            pos_embed=p.pos_embed,
            pos_drop=p.pos_drop,
            pos_unit=p.pos_unit,
            num_classes=0,
        )
        out_dim = m.ndim * (2 if p.scale else 1)
        kwargs = dict(p.head_kwargs)
        if p.head == "mlp":
            kwargs.setdefault("num_tokens", cfg.pretext_sampler().num_spans(tuple(m.extent)))
        head = create_head(p.head, encoder.dim, out_dim, **kwargs)
        return PART(encoder, head, p.num_pairs, scale=p.scale)
    f = cfg.finetune
    n = cfg.grid_sampler().num_spans(tuple(m.extent))
    return cfg.encoder.build(
        token_dim=m.token_dim,
        pos_embed=f.pos_embed,
        num_tokens=n if f.pos_embed == "learned" else None,
        pos_drop=f.pos_drop,
        pos_unit=cfg.pretext.pos_unit,
        num_classes=f.num_classes,
    )


# ---------------------------------------------------------------------- files
def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot parse config: {exc}") from exc
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
        raise ValueError(f"{path}: invalid {cls.__name__}:\n{exc}") from exc


def save_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write a config as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    path = Path(path)
    data = cfg.model_dump(mode="json")
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if path.suffix in (".yaml", ".yml")
        else json.dumps(data, indent=2)
    )
    path.write_text(text)
    return path


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
    data = _merge(data, overrides or {})
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"preset {name!r}: invalid {cls.__name__}:\n{exc}") from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "runtime.amp=bf16"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out
