"""The one derivation of the compared methods' training runs, and the results tables.

The methods themselves (PART, PART-grid, MAE, MP3, DropPos, RP, the supervised baselines, ...)
are registered in :mod:`relpos.train.methods` (re-exported here): a :class:`Method` says which
span sampler its pretraining uses (none: no pretraining), what its model is and whether its
finetuning keeps position embeddings. :func:`pretrain_config` and :func:`finetune_config` turn an experiment's two preset sections
(``pretrain``, ``finetune``) into the run of a method; what a domain does differently is passed
in as arguments (its samplers, input shape, a forced position embedding, a step budget), never
as a second code path. :func:`format_table` prints every results table; :func:`quiet` and
:func:`describe` are the small run helpers the experiments share.

This module knows neither domain: the sleep and image experiments call it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from relpos.train.config import SamplerConfig, TrainConfig
from relpos.train.methods import (
    METHOD_LABELS,
    Method,
    get_method,
    list_methods,
    method_label,
    register_method,
)

if TYPE_CHECKING:
    from relpos.train.state import FitResult

__all__ = [
    "METHOD_LABELS",
    "Column",
    "Method",
    "describe",
    "finetune_config",
    "format_table",
    "get_method",
    "list_methods",
    "method_label",
    "pretrain_config",
    "quiet",
    "register_method",
]


# ---------------------------------------------------------------------- configs per method
def _with_modality(cfg: TrainConfig, modality: Mapping[str, Any] | None) -> None:
    if modality:
        cfg.modality = cfg.modality.model_validate({**cfg.modality.model_dump(), **modality})


def pretrain_config(
    base: TrainConfig,
    method: str,
    *,
    samplers: Mapping[str, SamplerConfig] | None = None,
    modality: Mapping[str, Any] | None = None,
    known: Sequence[str] | None = None,
) -> TrainConfig:
    """The pretraining run of ``method``, derived from the preset section ``base``.

    Args:
        base: the experiment's ``pretrain`` section (left unchanged; a deep copy is returned).
        method: a registered method that pretrains (:attr:`Method.sampler` set).
        samplers: the samplers methods name (``{"grid": ..., "scale": ...}``); ``"pretext"``
            keeps ``base``'s own sampler.
        modality: fields of the input that replace ``base``'s (e.g. ``channels``, ``extent``).
        known: the method names the experiment accepts (default: every registered one).

    Raises:
        ValueError: unknown method, a method without pretraining, or a sampler not given.
    """
    m = get_method(method, known)
    if not m.pretrains:
        names = known if known is not None else list_methods()
        use = [n for n in names if n in list_methods() and get_method(n).pretrains]
        raise ValueError(f"method {method!r} has no pretraining (use {' or '.join(use)})")
    pt = base.model_copy(deep=True)
    pt.task = "pretrain"
    _with_modality(pt, modality)
    if m.sampler != "pretext":
        chosen = (samplers or {}).get(m.sampler or "")
        if chosen is None:
            raise ValueError(f"method {method!r} needs a {m.sampler!r} sampler; none was given")
        pt.pretext.sampler = chosen.model_copy()
    if m.scale is not None:
        pt.pretext.scale = m.scale
    pt.pretext.method = m.name
    if m.configure is not None:
        m.configure(pt)
    return pt


def finetune_config(
    base: TrainConfig,
    method: str,
    init: str | Path | None = None,
    *,
    modality: Mapping[str, Any] | None = None,
    pos_embed: Literal["none", "learned", "sincos"] | None = None,
    linear_probe: bool | None = None,
    max_steps: int | None = None,
    examples: int | None = None,
    known: Sequence[str] | None = None,
) -> TrainConfig:
    """The finetuning run of ``method``, derived from the preset section ``base``.

    Args:
        base: the experiment's ``finetune`` section (left unchanged; a deep copy is returned).
        method: a registered method; one without positions finetunes with ``pos_embed="none"``.
        init: the pretrained encoder (checkpoint or ``encoder.safetensors``), or ``None``.
        modality: fields of the input that replace ``base``'s.
        pos_embed: the position embedding of methods with positions (``None``: ``base``'s).
        linear_probe: freeze the encoder (``None``: ``base``'s setting).
        max_steps: an optimiser-step budget: the run stops after ``max_steps`` steps and gets
            enough epochs of ``examples`` labelled examples to reach it.
        examples: the number of training examples (needed with ``max_steps``).
        known: the method names the experiment accepts (default: every registered one).

    Raises:
        ValueError: unknown method, or ``max_steps`` without ``examples``.
    """
    m = get_method(method, known)
    ft = base.model_copy(deep=True)
    ft.task = "finetune"
    _with_modality(ft, modality)
    if not m.positions:
        ft.finetune.pos_embed = "none"
    elif pos_embed is not None:
        ft.finetune.pos_embed = pos_embed
    ft.finetune.init = str(init) if init is not None else None
    if linear_probe is not None:
        ft.finetune.linear_probe = linear_probe
    if max_steps is not None:
        if examples is None:
            raise ValueError("finetune_config: max_steps needs examples (the training-set size)")
        steps_per_epoch = max(1, examples // ft.optim.batch_size)
        ft.optim.epochs = max(1, math.ceil(max_steps / steps_per_epoch))
        ft.optim.max_steps = max_steps
    return ft


# ---------------------------------------------------------------------- runs
def quiet(cfg: TrainConfig, progress: bool) -> TrainConfig:
    """A copy of ``cfg`` with progress bars off unless both it and ``progress`` want them."""
    cfg = cfg.model_copy(deep=True)
    cfg.runtime.progress = cfg.runtime.progress and progress
    return cfg


def describe(result: FitResult) -> dict[str, Any]:
    """A run's summary for ``results.json``: where, how long, how fast, last metrics."""
    return {
        "out_dir": str(result.out_dir),
        "steps": result.steps,
        "epochs": result.epochs,
        "samples_per_s": result.samples_per_s,
        **({"best_step": result.best_step, "best_metric": result.best_metric}
           if result.best_step is not None else {}),
        **{f"last_{k}": v for k, v in result.last_metrics.items()},
    }  # fmt: skip


# ---------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """One numeric column of :func:`format_table`: header, width, format, text before it."""

    header: str
    width: int
    fmt: str = ".3f"
    gap: str = " "


def format_table(
    title: str,
    columns: Sequence[Column],
    rows: Iterable[tuple[str, Sequence[float]]],
    *,
    label_width: int,
    key: str = "method",
) -> str:
    """A plain-text table: ``title``, a header line, then one line per ``(label, values)``.

    Labels are left-aligned in ``label_width`` characters; each value is right-aligned in its
    column's width after the column's ``gap``.
    """
    head = f"{key:<{label_width}}" + "".join(f"{c.gap}{c.header:>{c.width}}" for c in columns)
    lines = [title, head]
    for label, values in rows:
        if len(values) != len(columns):
            raise ValueError(f"row {label!r}: {len(values)} values for {len(columns)} columns")
        cells = "".join(f"{c.gap}{v:>{c.width}{c.fmt}}" for c, v in zip(columns, values))
        lines.append(f"{label:<{label_width}}" + cells)
    return "\n".join(lines)
