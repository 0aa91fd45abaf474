"""Sampler configs: the pydantic side of :mod:`relpos.core.samplers`, and their registry.

A config names its sampler by ``kind`` (``{kind: boxes, size: 4, count: 64}``) and builds it
with ``build(token_shape)``. Registering a config class makes a new sampler nameable from every
config, with no edit to :mod:`relpos.train.config`::

    class RingsConfig(SamplerConfig):
        kind: Literal["rings"] = "rings"
        count: int = 32
        def build(self, token_shape): return Rings(self.count)
        def axes(self): return 2

    register_sampler("rings", RingsConfig)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relpos.core.checks import Dim, OrderedRange
from relpos.core.registry import Registry
from relpos.core.samplers import (
    Grid,
    RandomBoxes,
    RandomCuboids,
    RandomSpans,
    RandomWindows,
    SpanSampler,
)

__all__ = [
    "SAMPLERS",
    "BoxesConfig",
    "CuboidsConfig",
    "GridConfig",
    "ModalitySamplerConfig",
    "SamplerConfig",
    "SpansConfig",
    "WindowsConfig",
    "list_samplers",
    "parse_sampler",
    "register_sampler",
]

PositiveRange = OrderedRange  # (min, max), both > 0, min <= max
Count = Annotated[int, Field(ge=2, le=1_000_000)]
Side = Annotated[float, Field(gt=0)]
Cells = Annotated[list[Dim], Field(min_length=1)]


class SamplerConfig(BaseModel):
    """Base of every sampler config: ``kind`` names it in the :data:`SAMPLERS` registry."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    kind: str

    def build(self, token_shape: tuple[int, ...]) -> SpanSampler:
        """The sampler, for a modality whose tokens are ``token_shape``."""
        raise NotImplementedError

    def axes(self) -> int | None:
        """D of the spans it draws (``None``: any, taken from the input)."""
        return None


class WindowsConfig(SamplerConfig):
    """1D random windows (:class:`~relpos.core.samplers.RandomWindows`).

    ``scale: [lo, hi]`` multiplies the fixed ``length`` by a log-uniform factor per window
    (multi-scale windows; pair with ``pretext.scale: log``).
    """

    kind: Literal["windows"] = "windows"
    length: Side | PositiveRange = 100
    count: Count = 40
    snap: bool = False
    scale: PositiveRange | None = None

    @model_validator(mode="after")
    def _check_scale(self) -> WindowsConfig:
        if self.scale is not None and isinstance(self.length, tuple):
            raise ValueError("windows sampler: scale needs a fixed length, not a range")
        return self

    def build(self, token_shape: tuple[int, ...] = ()) -> SpanSampler:
        return RandomWindows(self.length, self.count, snap=self.snap, scale=self.scale)

    def axes(self) -> int:
        return 1


class BoxesConfig(SamplerConfig):
    """2D random boxes (:class:`~relpos.core.samplers.RandomBoxes`)."""

    kind: Literal["boxes"] = "boxes"
    size: Side | tuple[Side, Side] | None = 16
    count: Count = 196
    scale: PositiveRange | None = None
    ratio: PositiveRange | None = None
    height: PositiveRange | None = None
    width: PositiveRange | None = None
    snap: bool = False

    def build(self, token_shape: tuple[int, ...] = ()) -> SpanSampler:
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

    def axes(self) -> int:
        return 2


class SpansConfig(SamplerConfig):
    """N-D random spans (:class:`~relpos.core.samplers.RandomSpans`)."""

    kind: Literal["spans"] = "spans"
    size: Side | list[Side] | None = None  # None: the token shape
    count: Count = 64
    ranges: list[PositiveRange] | None = None
    scale: PositiveRange | None = None
    ratio: PositiveRange | None = None
    snap: bool = False

    def build(self, token_shape: tuple[int, ...] = ()) -> SpanSampler:
        size = self.size
        if size is None and self.ranges is None:
            size = [float(t) for t in token_shape]
        return RandomSpans(
            size, self.count, ranges=self.ranges, scale=self.scale, ratio=self.ratio,
            snap=self.snap,
        )  # fmt: skip

    def axes(self) -> int | None:
        if isinstance(self.size, list):
            return len(self.size)
        return None if self.ranges is None else len(self.ranges)


class CuboidsConfig(SamplerConfig):
    """3D random cuboids for videos (:class:`~relpos.core.samplers.RandomCuboids`)."""

    kind: Literal["cuboids"] = "cuboids"
    size: tuple[Side, Side, Side] | None = None  # None: the token shape
    count: Count = 196

    def build(self, token_shape: tuple[int, ...] = ()) -> SpanSampler:
        return RandomCuboids(self.size or tuple(token_shape), self.count)

    def axes(self) -> int:
        return 3


class GridConfig(SamplerConfig):
    """On-grid spans (:class:`~relpos.core.samplers.Grid`); ``token_shape`` defaults to the modality's."""

    kind: Literal["grid"] = "grid"
    token_shape: Cells | None = None
    stride: Cells | None = None
    size: Cells | None = None

    def build(self, token_shape: tuple[int, ...] | None = None) -> Grid:
        ts = self.token_shape or token_shape
        if ts is None:
            raise ValueError("grid sampler: token_shape is not set")
        return Grid(tuple(ts), stride=self.stride, size=self.size)

    def axes(self) -> int | None:
        for v in (self.token_shape, self.size, self.stride):
            if v is not None:
                return len(v)
        return None


class ModalitySamplerConfig(SamplerConfig):
    """The registered modality's own pretext sampler (built by ``TrainConfig.pretext_sampler``)."""

    kind: Literal["modality"] = "modality"

    def build(self, token_shape: tuple[int, ...] = ()) -> SpanSampler:
        raise ValueError("the 'modality' sampler is built from the modality: use "
                         "TrainConfig.pretext_sampler()")  # fmt: skip


#: sampler kind -> its config class (a :class:`SamplerConfig` subclass)
SAMPLERS: Registry[type[SamplerConfig]] = Registry("sampler")
for _cls in (
    WindowsConfig,
    BoxesConfig,
    SpansConfig,
    CuboidsConfig,
    GridConfig,
    ModalitySamplerConfig,
):
    SAMPLERS.register(_cls.model_fields["kind"].default, _cls)


def register_sampler(kind: str, config: type[SamplerConfig]) -> None:
    """Make ``config`` (a :class:`SamplerConfig` subclass) nameable as ``{kind: <kind>, ...}``."""
    if not (isinstance(config, type) and issubclass(config, SamplerConfig)):
        raise ValueError(f"sampler {kind!r}: the config must subclass SamplerConfig")
    SAMPLERS.register(kind, config)


def list_samplers() -> list[str]:
    return SAMPLERS.names()


def parse_sampler(value: Any) -> Any:
    """A sampler config from ``{kind: name, **fields}`` (or an already built config)."""
    if isinstance(value, SamplerConfig) or not isinstance(value, dict):
        return value
    if "kind" not in value:
        raise ValueError(f"a sampler needs a kind; known: {', '.join(list_samplers())}")
    return SAMPLERS.get(value["kind"]).model_validate(value)
