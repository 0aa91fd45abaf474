"""The methods the experiments compare, as named, registered units: the one method registry.

A :class:`Method` is what it samples (its pretraining span sampler), what its encoder sees
(:attr:`Method.configure` sets the pretraining encoder's positions), its model with head and
loss (:attr:`Method.build`, from the config and the encoder; ``None``: PART), the options that
model takes (a pydantic model validating ``pretext.options``) and whether its finetuning keeps
position embeddings. A method without a sampler does not pretrain (the supervised baselines).

``pretext.method`` in a :class:`~relpos.train.config.TrainConfig` names the method whose model
:func:`relpos.train.config.build_model` builds; ``relpos pretrain --method NAME`` and the demos'
rows use the same names. A user's method registers the same way::

    register_method(Method("mine", "my pretext", sampler="grid", build=build_mine,
                           options=MyOptions))

Shipped: ``part``, ``part_grid``, ``mae``, ``mp3``, ``droppos``, ``rp``, ``part_scale`` (PART with
size targets, on boxes of varying size), ``supervised_pos`` and ``supervised_nopos``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from relpos.core.mae import MAE
from relpos.core.part import PART, head_out_dim
from relpos.core.positions import MP3, DropPos
from relpos.core.pretext import as_encoder
from relpos.core.registry import unknown_name
from relpos.core.rp import RelativePositioning
from relpos.nn.decoders import MAEDecoder
from relpos.nn.heads import create_head

if TYPE_CHECKING:
    from relpos.train.config import TrainConfig

__all__ = [
    "METHOD_LABELS",
    "DropPosOptions",
    "MAEOptions",
    "MP3Options",
    "Method",
    "NoOptions",
    "RPOptions",
    "get_method",
    "list_methods",
    "method_label",
    "pretraining_methods",
    "register_method",
]

Builder = Callable[["TrainConfig", nn.Module], nn.Module]


class NoOptions(BaseModel):
    """The options of a method that takes none (``pretext.options`` must be empty)."""

    model_config = ConfigDict(extra="forbid")


Ratio = Annotated[float, Field(gt=0.0, lt=1.0)]


class MAEOptions(NoOptions):
    """MAE: the masked share, the light decoder (``decoder_dim`` None: half the encoder's
    width, at least 16), per-token normalised targets."""

    mask_ratio: Ratio = 0.75
    decoder_dim: Annotated[int, Field(ge=8, le=4096)] | None = None
    decoder_depth: Annotated[int, Field(ge=1, le=24)] = 2
    decoder_heads: Annotated[int, Field(ge=1, le=64)] = 4
    norm_targets: bool = True


class MP3Options(NoOptions):
    """MP3: the share of tokens left out of attention's keys and values."""

    mask_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.75


class DropPosOptions(NoOptions):
    """DropPos: masked share, dropped-position share of the visible tokens, position smoothing
    width (grid cells; 0: hard labels; default 1 cell), attentive reconstruction weight (0: off,
    the default) and temperature."""

    mask_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.75
    pos_mask_ratio: Ratio = 0.75
    sigma: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0
    attentive: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    attentive_tau: Annotated[float, Field(gt=0.0, le=100.0)] = 0.1


class RPOptions(NoOptions):
    """Relative positioning: the input holds ``context`` windows end to end; close pairs start
    at most ``tau_pos`` windows apart, far ones at least ``tau_neg``; ``pairs`` per example."""

    context: Annotated[int, Field(ge=3, le=256)] = 10
    tau_pos: Annotated[float, Field(gt=0.0, le=256.0)] = 1.0
    tau_neg: Annotated[float, Field(gt=0.0, le=256.0)] = 3.0
    pairs: Annotated[int, Field(ge=1, le=64)] = 2


@dataclass(frozen=True)
class Method:
    """One method of the comparisons.

    Attributes:
        name: the name configs, the CLI and results use (``"part"``, ``"mae"``, ...).
        label: the row label in results tables.
        short: a shorter label, for tables with one column per label budget (default ``label``).
        sampler: the span sampler of its pretraining: ``"pretext"`` (the preset's own off-grid
            sampler) or the key of a sampler the experiment passes to
            :func:`relpos.train.recipes.pretrain_config` (``"grid"``, ``"scale"``); ``None``: no
            pretraining (trained from scratch).
        scale: relative size targets added to PART's pretext (``"ratio"`` or ``"log"``).
        positions: whether its finetuning keeps position embeddings (``False``: ``"none"``).
        build: the pretraining model from the config and its encoder (``None``: PART).
        options: the pydantic model of ``pretext.options``.
        configure: adjusts a derived pretraining config (the encoder's positions, options).
        context: each pretraining input spans this many finetuning inputs along the last axis
            (``None``: the experiment's own); the experiment builds its data to match.
    """

    name: str
    label: str
    short: str | None = None
    sampler: str | None = None
    scale: Literal["ratio", "log"] | None = None
    positions: bool = True
    build: Builder | None = None
    options: type[NoOptions] = NoOptions
    configure: Callable[[TrainConfig], None] | None = None
    context: int | None = None

    @property
    def pretrains(self) -> bool:
        return self.sampler is not None

    def parse_options(self, options: dict[str, Any]) -> NoOptions:
        """``pretext.options`` validated (defaults filled in); errors name the method."""
        try:
            return self.options.model_validate(options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                for e in exc.errors()
            )
            raise ValueError(f"pretext.options of method {self.name!r}: {problems}") from None


_METHODS: dict[str, Method] = {}

#: method name -> table label, for every registered method (kept in step by register_method)
METHOD_LABELS: dict[str, str] = {}


def register_method(method: Method) -> None:
    """Make ``method`` known to configs, the CLI, the derivations and the tables."""
    _METHODS[method.name] = method
    METHOD_LABELS[method.name] = method.label


def list_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_METHODS)


def pretraining_methods() -> list[str]:
    """Names of the registered methods that pretrain."""
    return [n for n, m in _METHODS.items() if m.pretrains]


def get_method(name: str, known: Sequence[str] | None = None) -> Method:
    """The registered method ``name``; ``known`` restricts the names an experiment accepts.

    Raises:
        ValueError: ``name`` is not registered (or not in ``known``), listing the known names.
    """
    names = list(known) if known is not None else list_methods()
    if name not in names or name not in _METHODS:
        raise unknown_name("method", name, names)
    return _METHODS[name]


def method_label(name: str, *, short: bool = False) -> str:
    """The table label of ``name`` (the name itself for unregistered ones)."""
    method = _METHODS.get(name)
    if method is None:
        return name
    return (method.short or method.label) if short else method.label


# ---------------------------------------------------------------------- builders
def _grid_size(cfg: TrainConfig, name: str) -> int:
    """N, the grid cells of the pretraining input (grid methods need the grid sampler)."""
    if cfg.pretext.sampler.kind != "grid":
        raise ValueError(
            f"method {name!r} predicts grid positions: it needs pretext.sampler kind 'grid'; "
            f"got {cfg.pretext.sampler.kind!r}"
        )
    return cfg.pretext_sampler().num_spans(tuple(cfg.modality.extent))


def build_part(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    """PART: the relative head over the encoder, with the pretext section's pair settings."""
    p, m = cfg.pretext, cfg.modality
    out_dim = head_out_dim(m.ndim, p.scale, p.loss)
    kwargs = dict(p.head_kwargs)
    if p.head == "mlp":
        kwargs.setdefault("num_tokens", cfg.pretext_sampler().num_spans(tuple(m.extent)))
    head = create_head(p.head, as_encoder(encoder).dim, out_dim, **kwargs)
    return PART(
        encoder, head, p.num_pairs, scale=p.scale, score=p.score, loss=p.loss,
        normalize=p.normalize, ndim=m.ndim,
    )  # fmt: skip


def build_mae(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    o = get_method("mae").parse_options(cfg.pretext.options)
    assert isinstance(o, MAEOptions)
    _grid_size(cfg, "mae")
    width = as_encoder(encoder).dim
    dim = o.decoder_dim or max(16, width // 2 // o.decoder_heads * o.decoder_heads)
    decoder = MAEDecoder(
        width, cfg.modality.token_dim, dim, o.decoder_depth, o.decoder_heads,
        pos_unit=cfg.pretext.pos_unit,
    )  # fmt: skip
    return MAE(encoder, decoder, o.mask_ratio, o.norm_targets)


def build_mp3(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    o = get_method("mp3").parse_options(cfg.pretext.options)
    assert isinstance(o, MP3Options)
    return MP3(encoder, _grid_size(cfg, "mp3"), o.mask_ratio)


def build_droppos(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    o = get_method("droppos").parse_options(cfg.pretext.options)
    assert isinstance(o, DropPosOptions)
    return DropPos(
        encoder, _grid_size(cfg, "droppos"), o.mask_ratio, o.pos_mask_ratio, o.sigma,
        o.attentive, o.attentive_tau,
    )  # fmt: skip


def build_rp(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    o = get_method("rp").parse_options(cfg.pretext.options)
    assert isinstance(o, RPOptions)
    n = _grid_size(cfg, "rp")
    if cfg.modality.ndim != 1 or n % o.context:
        raise ValueError(
            f"method 'rp' cuts a 1-D input of {n} grid tokens into {o.context} windows "
            f"(pretext.options.context); modality extent {cfg.modality.extent} does not divide"
        )
    window = n // o.context
    tau_pos = max(1, round(o.tau_pos * window))
    tau_neg = max(tau_pos + 1, round(o.tau_neg * window))
    return RelativePositioning(encoder, window, tau_pos, tau_neg, o.pairs)


def _positions(pos_embed: Literal["none", "sincos"]) -> Callable[[TrainConfig], None]:
    """A configure hook: the pretraining encoder's positions (sin-cos in token units, or none),
    no random position dropping by the encoder, every example scored."""

    def configure(cfg: TrainConfig) -> None:
        cfg.pretext.score = "all"
        cfg.pretext.pos_drop = 0.0
        cfg.pretext.pos_embed = pos_embed
        cfg.pretext.pos_unit = float(cfg.modality.token_shape[0])

    return configure


#: RP's default: ten finetuning inputs per pretraining input (ten 30-s epochs: 5 minutes)
RP_CONTEXT = 10

register_method(Method("part", "PART (off-grid, relative)", short="PART", sampler="pretext"))
register_method(
    Method("part_grid", "PART-grid (on-grid, relative)", short="PART-grid", sampler="grid")
)
register_method(Method(
    "mae", "MAE (masked autoencoding)", short="MAE", sampler="grid", build=build_mae,
    options=MAEOptions, configure=_positions("sincos"),
))  # fmt: skip
register_method(Method(
    "mp3", "MP3 (masked position prediction)", short="MP3", sampler="grid", build=build_mp3,
    options=MP3Options, configure=_positions("none"),
))  # fmt: skip
register_method(Method(
    "droppos", "DropPos (dropped position reconstruction)", short="DropPos", sampler="grid",
    build=build_droppos, options=DropPosOptions, configure=_positions("sincos"),
))  # fmt: skip
register_method(Method(
    "rp", "RP (relative positioning, Banville)", short="RP", sampler="grid", build=build_rp,
    options=RPOptions, configure=_positions("sincos"), context=RP_CONTEXT,
))  # fmt: skip
#: PART with the scale/aspect extension: boxes of varying size (the experiment's ``"scale"``
#: sampler), and the relative size ratios predicted with the translation
register_method(Method(
    "part_scale", "PART + aspect ratio + scale (Δy, Δx, Δh, Δw)", short="PART+scale",
    sampler="scale", scale="ratio",
))  # fmt: skip
register_method(Method("supervised_pos", "supervised, with position embeddings"))
register_method(
    Method("supervised_nopos", "supervised, without position embeddings", positions=False)
)
