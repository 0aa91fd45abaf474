"""Sleep staging on PhysioNet/CinC 2018: records -> prepared store -> subject splits ->
pretraining (PART, PART-grid, MAE, MP3, DropPos, RP: ``SleepConfig.methods``) -> finetuning ->
Cohen's kappa on held-out subjects, against supervised baselines with and without position
embeddings and the spectral floor. ``relpos demo sleep`` runs it all on synthetic records in
the official format.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from relpos.core.atomic import atomic_write_json
from relpos.core.checks import Jobs, Seed, check_names
from relpos.sleep.edf import EdfNaming
from relpos.sleep.evaluation import evaluate_checkpoint
from relpos.sleep.format import EEG_CHANNELS, SIGNAL_NAMES, STAGES
from relpos.sleep.preprocess import Pipeline, default_pipeline
from relpos.sleep.sources import provenance
from relpos.sleep.spectrogram import check_store_input, context_extent
from relpos.sleep.store import (
    EpochDataset,
    EpochStore,
    make_splits,
    prepare_store,
    save_splits,
)
from relpos.train import recipes
from relpos.train.api import train
from relpos.train.config import Base, GridConfig, TrainConfig, load_preset
from relpos.train.data import class_weights
from relpos.train.recipes import Column, describe, method_label, quiet

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "ContextSpec",
    "SleepConfig",
    "datasets",
    "evaluate_checkpoint",
    "finetune_config",
    "prepare_data",
    "pretrain_config",
    "pretrain_context",
    "pretrain_data",
    "run_demo",
    "run_methods",
    "write_splits",
]

SleepMethod = Literal[
    "part", "part_grid", "mae", "mp3", "droppos", "rp", "supervised_pos", "supervised_nopos"
]
#: the methods of the sleep comparison (registered in relpos.train.methods), in table order
METHODS: tuple[SleepMethod, ...] = (
    "part",
    "part_grid",
    "mae",
    "mp3",
    "droppos",
    "rp",
    "supervised_pos",
    "supervised_nopos",
)
#: the rows ``relpos demo sleep`` runs by default (``--methods all``: every one of METHODS)
DEFAULT_METHODS: tuple[SleepMethod, ...] = (
    "part",
    "part_grid",
    "supervised_pos",
    "supervised_nopos",
)


#: ``relpos demo sleep --quick``: the whole path on a budget of seconds (tests, smoke checks)
QUICK: dict[str, Any] = {
    "synth": {"records": 8, "unlabelled": 2, "max_hours": 0.5},
    "splits": {"n_finetune": 2, "n_test": 2},
    "pretrain": {
        "encoder": {"dim": 32, "depth": 1, "heads": 2},
        "optim": {"epochs": 1, "batch_size": 32},
        "runtime": {"log_every": 5},
    },
    "finetune": {
        "encoder": {"dim": 32, "depth": 1, "heads": 2},
        "optim": {"epochs": 1, "batch_size": 32},
        "runtime": {"log_every": 5},
    },
}


class SynthSpec(Base):
    """Synthetic records for the demo (``relpos.sleep.synthetic``)."""

    records: Annotated[int, Field(ge=1, le=100_000)] = 60
    unlabelled: Annotated[int, Field(ge=0, le=100_000)] = 10
    max_hours: Annotated[float, Field(gt=0, le=1000)] | None = 2.0
    seed: Seed = 0
    jobs: Jobs = 2
    layout: Literal["nested", "flat"] = "nested"


class PrepareSpec(Base):
    """How records become the store: ``source_format`` auto/physionet2018/edf (``edf``: the
    channels are the EDF's names, e.g. ``[EEG Fpz-Cz, EEG Pz-Oz]``; ``edf`` names the files,
    default Sleep-EDF's)."""

    dtype: Literal["float16", "float32"] = "float16"
    jobs: Jobs = 2
    source_format: Literal["auto", "physionet2018", "edf"] = "auto"
    edf: EdfNaming = Field(default_factory=EdfNaming)
    channels: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: list(EEG_CHANNELS)
    )
    pipeline: Pipeline = default_pipeline()

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("source_format") == "edf":  # any EDF channel names
            return check_names(v, v, "channel")
        try:
            return check_names(v, SIGNAL_NAMES, "channel")
        except ValueError as e:
            raise ValueError(f"{e} (for EDF names set prepare.source_format=edf)") from None


class SplitSpec(Base):
    """Subject counts of the splits. ``val_from_finetune`` of the ``n_finetune`` subjects are
    moved (seeded) to the validation split, for early stopping on subjects the finetuning never
    trains on (``finetune.finetune.early_stopping``)."""

    n_finetune: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    n_test: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    n_val: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    val_from_finetune: Annotated[int, Field(ge=0, le=10_000)] = 0
    # cap the pretraining pool (None: every remaining subject)
    n_pretrain: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    seed: Seed = 0

    @model_validator(mode="after")
    def _carve(self) -> SplitSpec:
        if self.val_from_finetune >= max(1, self.n_finetune):
            raise ValueError(
                f"splits.val_from_finetune ({self.val_from_finetune}) must leave at least one of "
                f"the {self.n_finetune} finetuning subjects for training"
            )
        return self


class ContextSpec(Base):
    """Epochs per input: ``pretrain`` consecutive epochs of one record per pretraining example
    (complete windows only), ``finetune`` epochs centred on the scored epoch when finetuning and
    evaluating (sequence staging; neighbours missing at record edges or dropped epochs are
    zeros, so the same epochs are scored as with 1). 1 and 1: one epoch, the paper protocol."""

    pretrain: Annotated[int, Field(ge=1, le=41)] = 1
    finetune: Annotated[int, Field(ge=1, le=41)] = 1

    @field_validator("finetune")
    @classmethod
    def _centred(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(
                f"context.finetune must be odd (the scored epoch at the centre), got {v}"
            )
        return v


class SleepConfig(Base):
    """A whole sleep-staging experiment; the presets ``physionet2018-paper`` and
    ``physionet2018-demo`` are instances of it."""

    name: str = "physionet2018"
    synth: SynthSpec | None = None
    prepare: PrepareSpec = PrepareSpec()
    splits: SplitSpec = SplitSpec()
    pretrain: TrainConfig
    finetune: TrainConfig
    part_grid: GridConfig = GridConfig()
    methods: Annotated[list[SleepMethod], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_METHODS)
    )
    eval_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    context: ContextSpec = ContextSpec()
    spectral_floor: bool = True  # score band powers + LDA on the same split (the table's last row)

    @field_validator("methods", mode="before")
    @classmethod
    def _known_methods(cls, v: Any) -> Any:
        return check_names(v, METHODS, "method") if isinstance(v, list) else v

    @model_validator(mode="after")
    def _fits_the_store(self) -> SleepConfig:
        """Both runs read every prepared channel (after their modality's transform, e.g. a
        spectrogram), and finetuning scores the sleep stages."""
        for section in ("pretrain", "finetune"):
            modality = getattr(self, section).modality
            check_store_input(modality, section, len(self.prepare.channels), self.prepare.pipeline)
        if self.finetune.finetune.num_classes != len(STAGES):
            raise ValueError(
                f"finetune.finetune.num_classes is {self.finetune.finetune.num_classes}; the "
                f"sleep stages are {len(STAGES)} ({', '.join(STAGES)})"
            )
        return self


def load_sleep_config(name: str, overrides: dict[str, Any] | None = None) -> SleepConfig:
    return load_preset(name, SleepConfig, overrides)


# ---------------------------------------------------------------------- configs per method
def _context_modality(cfg: SleepConfig, base: TrainConfig, k: int) -> dict[str, Any] | None:
    """The modality fields of a ``k``-epoch input: extent ``[k * epoch samples]``, or what the
    modality's transform makes of ``k`` epochs (None for 1)."""
    if k == 1:
        return None
    n = len(cfg.prepare.channels)
    return {"extent": context_extent(base.modality, k, n, cfg.prepare.pipeline)}


def pretrain_context(cfg: SleepConfig, method: str) -> int:
    """Epochs per pretraining input of ``method``: its own context (RP pairs windows of one
    longer input), else ``cfg.context.pretrain``."""
    return recipes.get_method(method, METHODS).context or cfg.context.pretrain


def pretrain_config(cfg: SleepConfig, method: str = "part") -> TrainConfig:
    """The pretraining run of ``method`` (PART on off-grid windows, PART-grid, MAE, MP3, DropPos
    on the grid, RP on windows of a longer input), on inputs of
    :func:`pretrain_context` epochs."""
    return recipes.pretrain_config(
        cfg.pretrain,
        method,
        samplers={"grid": cfg.part_grid},
        modality=_context_modality(cfg, cfg.pretrain, pretrain_context(cfg, method)),
        known=METHODS,
    )


def finetune_config(cfg: SleepConfig, method: str, init: str | Path | None = None) -> TrainConfig:
    """The finetuning run of ``method`` (with the pretrained encoder ``init`` for PART ones) on
    inputs of ``cfg.context.finetune`` epochs; position embeddings as the preset's ``finetune``
    section says (a learned table gets one row per token of the longer input), none for
    supervised_nopos."""
    return recipes.finetune_config(
        cfg.finetune,
        method,
        init,
        modality=_context_modality(cfg, cfg.finetune, cfg.context.finetune),
        known=METHODS,
    )


# ---------------------------------------------------------------------- steps
def write_splits(
    store: EpochStore, spec: SplitSpec, path: Path, *, force: bool = False
) -> dict[str, list[str]]:
    """Subject splits over the labelled subjects; unlabelled subjects join the pretraining pool.
    An existing ``path`` with a different split is replaced only with ``force``
    (:func:`relpos.sleep.store.save_splits`); the same split is left as it is."""
    subjects = np.asarray(store.subjects)
    labelled_subjects = sorted(set(subjects[store.subject_index[store.labels >= 0]].tolist()))
    unlabelled = sorted(set(subjects.tolist()) - set(labelled_subjects))
    splits = make_splits(labelled_subjects, spec.n_finetune, spec.n_test, spec.n_val, spec.seed)
    pool = sorted(splits["pretrain"] + unlabelled)
    if spec.n_pretrain is not None and len(pool) > spec.n_pretrain:
        rng = np.random.default_rng([spec.seed, 1])
        pool = sorted(rng.choice(pool, spec.n_pretrain, replace=False).tolist())
    splits["pretrain"] = pool
    if spec.val_from_finetune:
        rng = np.random.default_rng([spec.seed, 2])
        carved = set(rng.choice(splits["finetune"], spec.val_from_finetune, replace=False).tolist())
        splits["val"] = sorted(splits.get("val", []) + sorted(carved))
        splits["finetune"] = [s for s in splits["finetune"] if s not in carved]
    save_splits(splits, path, force=force)
    return splits


def datasets(
    store: EpochStore, splits: dict[str, list[str]], context: ContextSpec | None = None
) -> dict[str, EpochDataset]:
    """The pretraining pool (every epoch; with ``context.pretrain`` > 1 the anchors of complete
    windows) and the labelled finetune / test (/ val) epochs (with ``context.finetune`` > 1,
    windows centred on each, zero-filled where a neighbour is missing: the same epochs as
    with one)."""
    ctx = context or ContextSpec()

    def labelled(split: str) -> EpochDataset:
        return EpochDataset(store, splits[split], labelled_only=True, context=ctx.finetune)

    return {
        "pretrain": EpochDataset(store, splits["pretrain"], context=ctx.pretrain, complete=True),
        "finetune": labelled("finetune"),
        "test": labelled("test"),
        **({"val": labelled("val")} if splits.get("val") else {}),
    }


def pretrain_data(
    cfg: SleepConfig, method: str, data: dict[str, EpochDataset], split: str = "pretrain"
) -> EpochDataset:
    """The pretraining examples of ``method``: ``data[split]`` when its context is the
    experiment's, else complete windows of the method's own context on the same subjects."""
    k = pretrain_context(cfg, method)
    if k == cfg.context.pretrain and split == "pretrain":
        return data[split]
    base = data[split]
    return EpochDataset(base.store, base.subjects, context=k, complete=True)


def run_pretrain(cfg: TrainConfig, data: EpochDataset, out: Path) -> tuple[Path, dict[str, Any]]:
    _, result = train(cfg, data, out, groups=data.record_index, provenance=provenance(data))
    assert result.encoder_path is not None
    return result.encoder_path, describe(result)


def run_finetune(
    cfg: TrainConfig, data: EpochDataset, out: Path, val: EpochDataset | None = None
) -> tuple[Path, dict[str, Any]]:
    """Finetune on ``data``; with ``finetune.early_stopping`` the run stops on ``val`` (the
    validation subjects) and keeps its best weights."""
    weights = class_weights(data.labels, len(STAGES)) if cfg.finetune.class_balanced else None
    if cfg.finetune.early_stopping is not None and val is None:
        raise ValueError(
            "finetune.early_stopping needs validation subjects: set splits.val_from_finetune "
            "(or splits.n_val)"
        )
    stop = cfg.finetune.early_stopping is not None
    _, result = train(
        cfg, data, out, groups=data.record_index, class_weights=weights,
        val_dataset=val if stop else None, provenance=provenance(data),
    )  # fmt: skip
    assert result.final_checkpoint is not None
    return result.final_checkpoint, describe(result)


FLOOR_LABEL = "spectral floor: band powers + LDA"


def format_table(
    results: dict[str, dict[str, Any]], seed: int, floor: dict[str, Any] | None = None
) -> str:
    """Kappa, accuracy, macro-F1 and per-stage F1 of every method (and of the spectral floor,
    the last row, when given)."""
    columns = [Column("kappa", 6), Column("acc", 6), Column("mF1", 6)] + [
        Column(s, 5, ".2f", "  " if i == 0 else " ") for i, s in enumerate(STAGES)
    ]
    rows = [
        (
            method_label(method),
            [r["kappa"], r["accuracy"], r["macro_f1"], *(r["per_class"][s]["f1"] for s in STAGES)],
        )
        for method, r in [*results.items(), *([(FLOOR_LABEL, floor)] if floor else [])]
    ]
    title = f"Sleep staging on held-out subjects (seed {seed})"
    return recipes.format_table(title, columns, rows, label_width=42)


def prepare_data(
    cfg: SleepConfig, out: Path, data_dir: str | Path | None, progress: bool
) -> tuple[dict[str, list[str]], dict[str, EpochDataset], dict[str, float]]:
    """Records (synthesised unless ``data_dir`` is given) -> ``out/store`` -> subject splits
    (``out/splits.json``, reused when there) -> datasets; returns splits, datasets, timings."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    src = Path(data_dir) if data_dir is not None else out / "records"
    if data_dir is None:
        if cfg.synth is None:
            raise ValueError("no data_dir given and the config has no synth section")
        from relpos.sleep.synthetic import synthesize_dataset

        s = cfg.synth
        synthesize_dataset(
            src, s.records, seed=s.seed, max_hours=s.max_hours, layout=s.layout,
            unlabelled=s.unlabelled, jobs=s.jobs, progress=progress,
        )  # fmt: skip
        timings["synth"] = time.perf_counter() - t0

    t = time.perf_counter()
    p = cfg.prepare
    summary = prepare_store(
        src,
        out / "store",
        pipeline=p.pipeline,
        channels=p.channels,
        dtype=p.dtype,
        jobs=p.jobs,
        progress=progress,
        source_format=p.source_format,
        naming=p.edf,
    )
    print(summary.format())
    timings["prepare"] = time.perf_counter() - t
    store = EpochStore(out / "store")
    split_path = out / "splits.json"
    splits = write_splits(store, cfg.splits, split_path)  # refuses to change an existing split
    data = datasets(store, splits, cfg.context)
    print(
        "splits (subjects): "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        + " | epochs: "
        + ", ".join(f"{k} {len(d)}" for k, d in data.items())
    )
    return splits, data, timings


def run_methods(
    cfg: SleepConfig, data: dict[str, EpochDataset], out: Path, progress: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, float]]:
    """Pretrain the PART methods, finetune and evaluate every method of ``cfg.methods``;
    returns the evaluation reports, the run summaries and the timings."""
    timings: dict[str, float] = {}
    encoders: dict[str, Path] = {}
    runs: dict[str, Any] = {}
    for method in [m for m in METHODS if m in cfg.methods and recipes.get_method(m).pretrains]:
        t = time.perf_counter()
        encoders[method], runs[f"pretrain-{method}"] = run_pretrain(
            quiet(pretrain_config(cfg, method), progress),
            pretrain_data(cfg, method, data),
            out / f"pretrain-{method}",
        )
        timings[f"pretrain-{method}"] = time.perf_counter() - t
    results: dict[str, dict[str, Any]] = {}
    for method in cfg.methods:
        t = time.perf_counter()
        ft = quiet(finetune_config(cfg, method, encoders.get(method)), progress)
        ckpt, runs[f"finetune-{method}"] = run_finetune(
            ft, data["finetune"], out / f"finetune-{method}", data.get("val")
        )
        timings[f"finetune-{method}"] = time.perf_counter() - t
        results[method] = evaluate_checkpoint(
            ckpt,
            data["test"],
            out / f"eval-{method}",
            batch_size=cfg.eval_batch_size,
            progress=progress,
        )
    return results, runs, timings


def run_demo(
    cfg: SleepConfig,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the experiment end to end; each step resumes from what ``out`` already holds.

    Writes ``out/records`` (synthetic, unless ``data_dir`` is given), ``out/store``,
    ``out/splits.json``, ``out/pretrain-<method>``, ``out/finetune-<method>``,
    ``out/eval-<method>`` and ``out/results.json`` (every method, and the spectral floor on the
    same split); returns the results.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits, data, timings = prepare_data(cfg, out, data_dir, progress)
    results, runs, run_timings = run_methods(cfg, data, out, progress)
    timings.update(run_timings)
    floor = None
    if cfg.spectral_floor:
        from relpos.sleep.spectral import band_power_lda

        t = time.perf_counter()
        floor = band_power_lda(data["test"].store, splits)
        timings["spectral_floor"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    table = format_table(results, cfg.finetune.runtime.seed, floor)
    summary_out = {
        "config": cfg.model_dump(mode="json"),
        "splits": {k: len(v) for k, v in splits.items()},
        "epochs": {k: len(d) for k, d in data.items()},
        "results": {
            m: {k: r[k] for k in ("kappa", "accuracy", "macro_f1", "per_class", "confusion")}
            for m, r in results.items()
        },
        "runs": runs,
        "spectral_floor": floor,
        "timings_s": timings,
        "table": table,
    }
    atomic_write_json(out / "results.json", summary_out)
    return summary_out
