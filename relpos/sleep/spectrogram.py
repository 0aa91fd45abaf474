"""The spectrogram modality on the EEG store: configs, checks and the side-by-side demo.

The store serves raw epochs ``(C, T)``; the ``spectrogram`` modality
(:mod:`relpos.core.stft`) turns each batch into STFT magnitudes in dB on the training device,
so the same store, splits, evaluation and plots serve both inputs. Two span layouts:

- ``boxes``: 2-D boxes of 8 Hz x 2 s over (frequency, time), PART targets ``(Δf, Δt)``;
- ``strips``: 1-s strips spanning every frequency (frequencies folded into channels), PART
  targets ``Δt`` alone.

:func:`with_spectrogram` turns a sleep config (the demo preset) into its spectrogram twin; the
preset ``physionet2018-spectrogram`` is that twin of ``physionet2018-demo``.
:func:`run_side_by_side` runs the raw-signal and the spectrogram rows on one store and split
(``relpos demo sleep --modality spectrogram``); ``relpos ablate sleep --grid spectrogram`` does
it over seeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from relpos.core.atomic import atomic_write_json
from relpos.core.stft import Spectrogram, SpectrogramConfig
from relpos.sleep.preprocess import Pipeline, Resample
from relpos.train.config import ModalityConfig, build_model, merge
from relpos.train.methods import get_method, method_label

if TYPE_CHECKING:
    from relpos.sleep.experiment import SleepConfig

__all__ = [
    "BOX",
    "DEMO_METHODS",
    "STORE_OPTIONS",
    "STRIP",
    "Spans",
    "check_store_input",
    "context_extent",
    "modality_fields",
    "replace_samplers",
    "run_side_by_side",
    "spectrogram_overrides",
    "store_epoch",
    "with_spectrogram",
]

Spans = Literal["boxes", "strips"]

#: a 30-s, 100-Hz store epoch (band-passed to 30 Hz) as a spectrogram: 1-s Hann windows every
#: 0.25 s, the 1-Hz bins of 0-31 Hz, dB standardised per epoch and channel: (32, 121)
STORE_OPTIONS: dict[str, Any] = {
    "fs": 100.0, "n_fft": 100, "hop": 25, "fmax": 31.0, "norm": "instance",
}  # fmt: skip
#: box tokens: 8 frequency bins (8 Hz) x 8 frames (2 s): a 4 x 15 grid of 60 tokens
BOX: tuple[int, int] = (8, 8)
#: strip tokens: 4 frames (1 s) of every frequency: 30 tokens, like the raw signal's 1-s windows
STRIP = 4
#: the rows ``relpos demo sleep --modality spectrogram`` runs on both inputs by default
DEMO_METHODS: tuple[str, ...] = ("part", "supervised_pos")


def store_epoch(pipeline: Pipeline) -> tuple[float, int] | None:
    """``(fs, samples)`` of the store's epochs when the pipeline fixes the rate (a resample
    step), else None (the records' own rate)."""
    rates = [s.sfreq for s in pipeline.continuous_steps if isinstance(s, Resample)]
    if not rates:
        return None
    fs = float(rates[-1])
    return fs, pipeline.epochs_step.samples(fs)


def _transform_shape(m: ModalityConfig, channels: int, samples: int) -> tuple[int, ...] | None:
    """``(C', *extent)`` the modality's transform makes of ``(channels, samples)`` epochs; None
    for a modality without a transform."""
    transform = m.registered().transform
    if transform is None:
        return None
    if isinstance(transform, Spectrogram):
        return transform.output_shape(channels, samples)
    return tuple(transform(torch.zeros(1, channels, samples)).shape[1:])


def check_store_input(m: ModalityConfig, section: str, channels: int, pipeline: Pipeline) -> None:
    """The store's epochs ``(channels, samples)``, after ``m``'s transform, are ``m``'s input
    ``(m.channels, *m.extent)`` (the extent checked where the pipeline fixes the rate).

    Raises:
        ValueError: naming ``section`` and both shapes.
    """
    epoch = store_epoch(pipeline)
    shape = _transform_shape(m, channels, epoch[1] if epoch else 3000)
    if shape is None:
        if m.channels != channels:
            raise ValueError(
                f"{section}.modality.channels is {m.channels} but prepare.channels lists "
                f"{channels} signals"
            )
        return
    transform = m.registered().transform
    if isinstance(transform, Spectrogram) and epoch and transform.config.fs != epoch[0]:
        raise ValueError(
            f"{section}.modality.options.fs is {transform.config.fs} Hz but the store's epochs "
            f"are at {epoch[0]} Hz"
        )
    want = shape if epoch else shape[:1]
    have = (m.channels, *m.extent) if epoch else (m.channels,)
    if tuple(have) != tuple(want):
        raise ValueError(
            f"{section}.modality: the store's epochs ({channels} signals"
            f"{f', {epoch[1]} samples' if epoch else ''}) become {list(want)} after the "
            f"{m.name} transform, but channels and extent say {list(have)}"
        )


def context_extent(m: ModalityConfig, k: int, channels: int, pipeline: Pipeline) -> list[int]:
    """The extent of a ``k``-epoch input: ``k`` times the epoch's samples, or, for a modality
    with a transform, what the transform makes of ``k`` epochs end to end."""
    epoch = store_epoch(pipeline)
    if epoch is not None:
        shape = _transform_shape(m, channels, k * epoch[1])
        if shape is not None:
            return list(shape[1:])
    elif m.registered().transform is not None:
        raise ValueError(
            f"modality {m.name!r}: inputs of {k} epochs need a pipeline with a resample step "
            "(the epoch's samples decide the transformed extent)"
        )
    return [k * m.extent[0]]


def modality_fields(
    spans: Spans = "boxes",
    *,
    channels: int = 6,
    samples: int = 3000,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``modality`` section of a run on the store's spectrograms: name, channels, extent
    (computed from ``samples`` per epoch), token shape and transform options."""
    opts = {**STORE_OPTIONS, **(options or {})}
    c, f, t = Spectrogram(SpectrogramConfig.model_validate(opts)).output_shape(channels, samples)
    if spans == "strips":
        return {
            "name": "spectrogram", "channels": c * f, "extent": [t], "token_shape": [STRIP],
            "options": {**opts, "spans": "strips"},
        }  # fmt: skip
    return {
        "name": "spectrogram", "channels": c, "extent": [f, t], "token_shape": list(BOX),
        "options": {**opts, "spans": "boxes"},
    }  # fmt: skip


def spectrogram_overrides(
    spans: Spans = "boxes", *, pretrain: bool = True, channels: int = 6, samples: int = 3000
) -> dict[str, Any]:
    """Overrides of a sleep config's ``pretrain`` (unless ``pretrain=False``) and ``finetune``
    sections that put them on spectrograms: the modality, the pretext sampler (60 boxes, or 40
    strips, on whole bins and frames) and the position unit (one token)."""
    fields = modality_fields(spans, channels=channels, samples=samples)
    sampler = (
        {"kind": "boxes", "size": list(BOX), "count": 60, "snap": True}
        if spans == "boxes"
        else {"kind": "windows", "length": STRIP, "count": 40, "snap": True}
    )
    unit = float(BOX[0] if spans == "boxes" else STRIP)
    out: dict[str, Any] = {"finetune": {"modality": fields}}
    if pretrain:
        out["pretrain"] = {"modality": fields, "pretext": {"sampler": sampler, "pos_unit": unit}}
    return out


def replace_samplers(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the pretext sampler of ``overrides`` (if any) in place of its own (a
    sampler of another kind replaces the old one instead of merging key by key)."""
    sampler = overrides.get("pretrain", {}).get("pretext", {}).get("sampler")
    if sampler is not None:
        data["pretrain"]["pretext"]["sampler"] = dict(sampler)
    return data


def with_spectrogram(cfg: SleepConfig, spans: Spans = "boxes") -> SleepConfig:
    """The spectrogram twin of a sleep config: same data, split, budget and pretext settings,
    its runs on the store's spectrograms."""
    epoch = store_epoch(cfg.prepare.pipeline)
    samples = epoch[1] if epoch else 3000
    over = spectrogram_overrides(spans, channels=len(cfg.prepare.channels), samples=samples)
    data = replace_samplers(merge(cfg.model_dump(mode="json"), over), over)
    return type(cfg).model_validate(data)


def run_side_by_side(
    cfg: SleepConfig,
    out: str | Path,
    *,
    spans: Spans = "boxes",
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``cfg``'s rows on the raw signal and on spectrograms, on one store and split.

    Writes what :func:`relpos.sleep.experiment.run_demo` writes (the raw rows), the spectrogram
    runs under ``out/spectrogram/``, and ``out/results.json`` with both; returns it.
    """
    from relpos.sleep import experiment

    t0 = time.perf_counter()
    spec_cfg = with_spectrogram(cfg, spans)
    for method in spec_cfg.methods:  # a method the input cannot take fails before any run
        if get_method(method).pretrains:
            build_model(experiment.pretrain_config(spec_cfg, method))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits, data, timings = experiment.prepare_data(cfg, out, data_dir, progress)
    raw, runs, t_raw = experiment.run_methods(cfg, data, out, progress)
    spec, spec_runs, t_spec = experiment.run_methods(spec_cfg, data, out / "spectrogram", progress)
    timings.update(t_raw)
    timings.update({f"spectrogram-{k}": v for k, v in t_spec.items()})
    floor = None
    if cfg.spectral_floor:
        from relpos.sleep.spectral import band_power_lda

        floor = band_power_lda(data["test"].store, splits)
    timings["total"] = time.perf_counter() - t0
    rows = {f"{_label(m)}, raw signal": r for m, r in raw.items()}
    rows.update({f"{_label(m)}, spectrogram ({spans})": r for m, r in spec.items()})
    table = experiment.format_table(rows, cfg.finetune.runtime.seed, floor)
    keep = ("kappa", "accuracy", "macro_f1", "per_class", "confusion")
    summary = {
        "config": cfg.model_dump(mode="json"),
        "spectrogram_config": spec_cfg.model_dump(mode="json"),
        "splits": {k: len(v) for k, v in splits.items()},
        "epochs": {k: len(d) for k, d in data.items()},
        "results": {m: {k: r[k] for k in keep} for m, r in raw.items()},
        "spectrogram_results": {m: {k: r[k] for k in keep} for m, r in spec.items()},
        "runs": {**runs, **{f"spectrogram/{k}": v for k, v in spec_runs.items()}},
        "spectral_floor": floor,
        "timings_s": timings,
        "table": table,
    }
    atomic_write_json(out / "results.json", summary)
    return summary


#: row labels of the side-by-side table (the input is appended)
LABELS = {"part": "PART", "part_grid": "PART-grid", "supervised_pos": "supervised",
          "supervised_nopos": "supervised w/o pos"}  # fmt: skip


def _label(method: str) -> str:
    return LABELS.get(method) or method_label(method, short=True)
