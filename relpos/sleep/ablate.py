"""``relpos ablate sleep``: a named grid of pretext variants on one subject split, several seeds.

Each variant is a set of overrides of a sleep preset (its ``pretrain``/``finetune`` sections
and its epoch ``context``) plus the method it runs (``part`` pretrains, then finetunes;
``supervised_pos`` trains from scratch). For every variant and seed the ablation

1. pretrains (PART variants), then scores the held-out pretext error per target component
   against the no-information prediction (:func:`relpos.train.pretext_eval.pretext_scores`,
   on the test subjects' epochs, with the same seeded draws for every variant);
2. finetunes with the same step budget for every variant;
3. evaluates Cohen's kappa and macro-F1 on the held-out test subjects.

It also scores the spectral floor: LDA on log relative band powers (no training, no seed). Every
finished (variant, seed) writes ``OUT/<variant>/seed<k>/result.json`` and is skipped when the
command runs again; runs killed midway resume from their checkpoints. ``OUT/ablation.json``
holds every result and the table, ``OUT/ablation.png`` plots kappa per variant (mean ± sd).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from relpos.core.atomic import atomic_write_json
from relpos.core.checks import check_names
from relpos.core.workers import worker_pool
from relpos.sleep.evaluation import evaluate_checkpoint
from relpos.sleep.experiment import (
    METHODS,
    SleepConfig,
    SleepMethod,
    datasets,
    finetune_config,
    load_sleep_config,
    prepare_data,
    pretrain_config,
    pretrain_data,
    run_finetune,
    run_pretrain,
)
from relpos.sleep.spectrogram import replace_samplers, spectrogram_overrides
from relpos.sleep.store import EpochStore
from relpos.train.checkpoint import load_model
from relpos.train.config import Base, list_presets, merge
from relpos.train.pretext_eval import headline, mean_headline, pretext_scores
from relpos.train.recipes import get_method, quiet

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GRID",
    "GRIDS",
    "METHODS_GRID",
    "QUICK_ABLATION",
    "SPECTROGRAM_GRID",
    "AblationConfig",
    "Variant",
    "format_ablation",
    "run_ablation",
]


class Variant(Base):
    """One row of the ablation.

    Attributes:
        name: the row's directory and key (letters, digits, ``_`` and ``-``).
        label: the row label in the table.
        method: a sleep method (:data:`relpos.sleep.experiment.METHODS`): those that pretrain
            (``part``, ``mae``, ``rp``, ...) pretrain, then finetune; ``supervised_pos`` and
            ``supervised_nopos`` train from scratch.
        score: the target component its pretext is judged on (``"t"``, ``"s_t"``,
            ``"t@dropped"``); ``None`` for methods without pretraining.
        paper: whether the variant follows the paper's setting (others are named departures).
        overrides: nested overrides of the sleep preset (``pretrain``, ``finetune``,
            ``context``).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)]
    label: str
    method: SleepMethod = "part"
    score: str | None = None
    paper: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, v: Any) -> Any:
        return check_names([v], METHODS, "method")[0] if isinstance(v, str) else v


#: the rhythm-only multi-scale pretext (docs/research/issue10-pretext-spike.md): windows of
#: 0.5-2 s, anti-aliased band-limited resize, per-token standardisation, (Δt, log size) targets
#: weighed equally (Δt in window units has a variance near 190 here, log size about 0.3)
RHYTHM: dict[str, Any] = {
    "modality": {"tokenizer": {"oversample": 4, "band": 14.0, "standardize": True}},
    "pretext": {
        "sampler": {"kind": "windows", "length": 100, "count": 40, "scale": [0.5, 2.0]},
        "scale": "log",
        "normalize": True,
    },
}
RHYTHM_FINETUNE: dict[str, Any] = {"modality": RHYTHM["modality"]}
PAPER_POS: dict[str, Any] = {"pretext": {"pos_embed": "sincos", "pos_drop": 0.2, "pos_unit": 100}}

#: the default grid: the paper's setting and today's, the content-identifiable targets, the
#: encoder and loss options, and context in finetuning (rows of their own)
DEFAULT_GRID: list[Variant] = [
    Variant(name="supervised", label="supervised, with positions", method="supervised_pos",
            paper=True),
    Variant(name="supervised-rhythm", label="supervised, rhythm tokenizer",
            method="supervised_pos", overrides={"finetune": RHYTHM_FINETUNE}),
    Variant(name="supervised-rhythm-conv", label="supervised, rhythm tokenizer, conv stem",
            method="supervised_pos",
            overrides={"finetune": merge(RHYTHM_FINETUNE, {"encoder": {"embed": "conv"}})}),
    Variant(name="part-1s", label="PART 1-s windows, no positions (previous default)",
            score="t"),
    Variant(name="part-paper", label="PART sin-cos, 20% dropped (paper)", score="t@dropped",
            paper=True, overrides={"pretrain": PAPER_POS}),
    Variant(name="part-droppos", label="PART sin-cos, 20% dropped, scored on dropped",
            score="t@dropped",
            overrides={"pretrain": merge(PAPER_POS, {"pretext": {"score": "dropped_target"}})}),
    Variant(name="part-rhythm", label="PART rhythm multi-scale", score="s_t",
            overrides={"pretrain": RHYTHM, "finetune": RHYTHM_FINETUNE}),
    Variant(name="part-rhythm-plainft", label="PART rhythm multi-scale, plain finetuning tokens",
            score="s_t", overrides={"pretrain": RHYTHM}),
    Variant(name="part-rhythm-nll", label="PART rhythm multi-scale, Gaussian NLL", score="s_t",
            overrides={"pretrain": merge(RHYTHM, {"pretext": {"loss": "gaussian_nll"}}),
                       "finetune": RHYTHM_FINETUNE}),
    Variant(name="part-rhythm-conv", label="PART rhythm multi-scale, conv stem", score="s_t",
            overrides={"pretrain": merge(RHYTHM, {"encoder": {"embed": "conv"}}),
                       "finetune": merge(RHYTHM_FINETUNE, {"encoder": {"embed": "conv"}})}),
    Variant(name="part-rhythm-pctx3", label="PART rhythm, pretrained on 3-epoch inputs",
            score="s_t",
            overrides={"pretrain": RHYTHM, "finetune": RHYTHM_FINETUNE,
                       "context": {"pretrain": 3}}),
    Variant(name="supervised-ctx3", label="supervised, 3-epoch context (sequence)",
            method="supervised_pos", overrides={"context": {"finetune": 3}}),
    Variant(name="part-rhythm-ctx3", label="PART rhythm, 3-epoch context (sequence)",
            score="s_t",
            overrides={"pretrain": RHYTHM, "finetune": RHYTHM_FINETUNE,
                       "context": {"finetune": 3}}),
]  # fmt: skip

#: PART as ``relpos demo sleep`` runs it: sin-cos positions, 20% dropped, scored on the pairs
#: whose target lost its position (the issue-10 ablation's best PART row)
PART_DEMO: dict[str, Any] = {"pretrain": merge(PAPER_POS, {"pretext": {"score": "dropped_target"}})}

#: the method comparison (``--grid methods``): the paper's table's rows and the
#: relative-positioning baseline on one split and budget; every method's own pretext settings
#: (relpos.train.methods), PART and PART-grid as the demo runs them
METHODS_GRID: list[Variant] = [
    Variant(name="part", label="PART (off-grid, relative)", method="part", score="t@dropped",
            paper=True, overrides=PART_DEMO),
    Variant(name="part_grid", label="PART-grid (on-grid, relative)", method="part_grid",
            score="t@dropped", paper=True, overrides=PART_DEMO),
    Variant(name="mae", label="MAE (75% masked)", method="mae", score="recon", paper=True),
    Variant(name="mae-raw", label="MAE, raw targets (no per-token normalisation)",
            method="mae", score="recon",
            overrides={"pretrain": {"pretext": {"method": "mae", "options": {"norm_targets": False}}}}),
    Variant(name="mp3", label="MP3 (75% out of keys/values)", method="mp3", score="pos_acc",
            paper=True),
    Variant(name="droppos", label="DropPos (75% masked, 75% positions dropped)",
            method="droppos", score="pos_acc", paper=True),
    Variant(name="rp", label="RP (Banville; 10-epoch inputs)", method="rp", score="rp_acc",
            paper=True),
    Variant(name="supervised_pos", label="supervised, with positions", method="supervised_pos",
            paper=True),
    Variant(name="supervised_nopos", label="supervised, without positions",
            method="supervised_nopos", paper=True),
]  # fmt: skip

#: the spectrogram modality beside the raw signal (``--grid spectrogram``): PART and supervised
#: on the raw signal (as the demo runs them), on spectrogram boxes over frequency x time
#: (targets Δf, Δt) and, for PART, on time strips spanning every frequency (targets Δt)
SPECTROGRAM_GRID: list[Variant] = [
    Variant(name="supervised", label="supervised, raw signal", method="supervised_pos",
            paper=True),
    Variant(name="part", label="PART, raw signal (as the demo)", method="part",
            score="t@dropped", paper=True, overrides=PART_DEMO),
    Variant(name="supervised-spectrogram", label="supervised, spectrogram boxes",
            method="supervised_pos", overrides=spectrogram_overrides("boxes", pretrain=False)),
    Variant(name="part-spectrogram", label="PART, spectrogram boxes (Δf, Δt)",
            score="euclidean", overrides=merge(PART_DEMO, spectrogram_overrides("boxes"))),
    Variant(name="part-spectrogram-strips", label="PART, spectrogram time strips (Δt)",
            score="t@dropped", overrides=merge(PART_DEMO, spectrogram_overrides("strips"))),
]  # fmt: skip

#: the named grids ``relpos ablate sleep --grid NAME`` runs (or a YAML/JSON AblationConfig)
GRIDS: dict[str, list[Variant]] = {
    "pretext": DEFAULT_GRID, "methods": METHODS_GRID, "spectrogram": SPECTROGRAM_GRID,
}  # fmt: skip

#: what every variant shares: the model size and step budget (CPU-sized: the default grid
#: fits about an hour on 2 cores) and the pretext every variant departs from (1-s windows, no
#: positions, every pair scored), whatever the preset's own pretext is
BUDGET: dict[str, Any] = {
    "pretrain": {
        "encoder": {"dim": 64, "depth": 2, "heads": 4},
        "pretext": {"pos_embed": "none", "pos_drop": 0.0, "pos_unit": 1.0, "score": "all"},
        "optim": {"batch_size": 32, "max_steps": 600, "epochs": 10, "warmup_epochs": 0.2},
        "runtime": {"checkpoint_every": 200, "log_every": 50},
    },
    "finetune": {
        "encoder": {"dim": 64, "depth": 2, "heads": 4},
        "optim": {"batch_size": 64, "max_steps": 1000, "epochs": 40, "warmup_epochs": 1.0},
        "runtime": {"checkpoint_every": 200, "log_every": 50},
    },
}


#: ``relpos ablate sleep --quick``: every code path on a budget of seconds (tests, smoke checks)
QUICK_BUDGET: dict[str, Any] = {
    s: {
        "encoder": {"dim": 32, "depth": 1, "heads": 2},
        "optim": {"batch_size": 16, "max_steps": 6, "epochs": 1, "warmup_epochs": 0.0},
        "runtime": {"checkpoint_every": 0, "log_every": 2},
    }
    for s in ("pretrain", "finetune")
}


class AblationConfig(Base):
    """The grid, its seeds, the shared budget and how the pretext is scored."""

    preset: str = "physionet2018-demo"
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0, 1, 2]
    )
    budget: dict[str, Any] = Field(default_factory=lambda: merge(BUDGET, {}))
    variants: Annotated[list[Variant], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_GRID)
    )
    eval_batches: Annotated[int, Field(ge=1, le=10_000)] = 20
    eval_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    spectral_floor: bool = True

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        path = Path(v)
        if not (path.suffix in (".yaml", ".yml", ".json") and path.exists()):
            check_names([v], list_presets(), "preset")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> AblationConfig:
        check_names(self.seeds, self.seeds, "seed")
        names = [v.name for v in self.variants]
        check_names(names, names, "variant")
        return self


#: fields of :class:`AblationConfig` that ``--quick`` replaces
QUICK_ABLATION: dict[str, Any] = {
    "seeds": [0, 1], "budget": QUICK_BUDGET, "eval_batches": 2, "eval_batch_size": 8,
}  # fmt: skip


def variant_config(
    base: SleepConfig, ab: AblationConfig, variant: Variant, seed: int
) -> SleepConfig:
    """The sleep config of one (variant, seed): preset + budget + variant overrides + seed."""
    data = merge(merge(base.model_dump(mode="json"), ab.budget), variant.overrides)
    data = replace_samplers(data, variant.overrides)  # a sampler of another kind: replaced
    data = merge(data, {s: {"runtime": {"seed": seed}} for s in ("pretrain", "finetune")})
    return SleepConfig.model_validate(data)


def _variant_config(
    base: SleepConfig, ab: AblationConfig, variant: Variant, seed: int
) -> SleepConfig:
    """:func:`variant_config`, its errors naming the variant."""
    try:
        return variant_config(base, ab, variant, seed)
    except ValueError as exc:  # pydantic's ValidationError included
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ValueError(f"ablation variant {variant.name!r}: {text}") from exc


def _run_one(
    cfg: SleepConfig,
    variant: Variant,
    seed: int,
    ab: AblationConfig,
    store_data: tuple[Any, dict[str, list[str]]],
    out: Path,
    progress: bool,
) -> dict[str, Any]:
    store, splits = store_data
    data = datasets(store, splits, context=cfg.context)
    result: dict[str, Any] = {"variant": variant.name, "seed": seed}
    t0 = time.perf_counter()
    init = None
    if get_method(variant.method).pretrains:
        pt = quiet(pretrain_config(cfg, variant.method), progress)
        init, result["pretrain"] = run_pretrain(
            pt, pretrain_data(cfg, variant.method, data), out / "pretrain"
        )
        model, _ = load_model(out / "pretrain" / "final.pt")
        held_out = pretrain_data(cfg, variant.method, data, "test")
        # the same held-out examples (subset seed 0) and draws (seed 1) for every variant
        scores = pretext_scores(
            model, pt, held_out, batch_size=ab.eval_batch_size,
            max_examples=ab.eval_batches * ab.eval_batch_size, seed=1, subset_seed=0,
        )  # fmt: skip
        result["pretext"] = scores
    result["pretrain_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    ft = quiet(finetune_config(cfg, variant.method, init), progress)
    ckpt, result["finetune"] = run_finetune(ft, data["finetune"], out / "finetune", data.get("val"))
    result["finetune_s"] = time.perf_counter() - t1
    report = evaluate_checkpoint(ckpt, data["test"], batch_size=cfg.eval_batch_size, plots=False)
    result["eval"] = {k: report[k] for k in ("kappa", "accuracy", "macro_f1", "per_class")}
    result["wall_s"] = time.perf_counter() - t0
    return result


def _spectral_floor(store: Any, splits: dict[str, list[str]], out: Path) -> dict[str, Any]:
    from relpos.sleep.spectral import band_power_lda

    path = out / "spectral-floor.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    res = band_power_lda(store, splits)
    res["wall_s"] = time.perf_counter() - t0
    atomic_write_json(path, res)
    return res


def run_ablation(
    ab: AblationConfig,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    only: Sequence[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the grid; returns and writes ``OUT/ablation.json``.

    Args:
        ab: the grid, seeds and budget.
        out: output directory (records, store, splits and one directory per variant and seed).
        data_dir: real PhysioNet 2018 records instead of the preset's synthetic ones.
        overrides: nested overrides of the preset, applied before the budget.
        only: run only these variant names (the table still shows every finished row).
        jobs: (variant, seed) runs at a time, each in its own process with one thread (``1``:
            one after the other in this process, with torch's default threads).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_sleep_config(ab.preset, overrides)
    names = [v.name for v in ab.variants]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"ablation: unknown variant(s) {unknown}; known: {', '.join(names)}")
    # every run's config is checked before any data is prepared
    todo = [
        (_variant_config(base, ab, v, seed), v, seed, out / v.name / f"seed{seed}")
        for v in ab.variants
        for seed in ab.seeds
        if not (out / v.name / f"seed{seed}" / "result.json").exists()
        and (not only or v.name in only)
    ]
    splits, data, _ = prepare_data(base, out, data_dir, progress)
    store = data["test"].store
    _run_all(todo, ab, store, splits, jobs, progress)
    rows = {
        v.name: [
            json.loads(path.read_text())
            for seed in ab.seeds
            if (path := out / v.name / f"seed{seed}" / "result.json").exists()
        ]
        for v in ab.variants
    }
    floor = _spectral_floor(store, splits, out) if ab.spectral_floor else None
    summary = summarize(ab, rows, floor)
    table = format_ablation(summary)
    payload = {"config": ab.model_dump(mode="json"), "rows": summary, "runs": rows, "table": table}
    atomic_write_json(out / "ablation.json", payload)
    _plot(summary, out / "ablation.png")
    return payload


def _job(
    cfg: SleepConfig,
    variant: Variant,
    seed: int,
    ab: AblationConfig,
    store: EpochStore | str,
    splits: dict[str, list[str]],
    run_dir: Path,
    threads: int | None,
    progress: bool,
) -> None:
    """One (variant, seed) run; writes ``run_dir/result.json`` when it has finished. ``store``
    is the open store (in this process) or its directory (in a worker process)."""
    if threads is not None:
        torch.set_num_threads(threads)
    log.info("ablation: %s seed %d", variant.name, seed)
    store = store if isinstance(store, EpochStore) else EpochStore(store)
    res = _run_one(cfg, variant, seed, ab, (store, splits), run_dir, progress)
    atomic_write_json(run_dir / "result.json", res)


def _run_all(
    todo: list[tuple[SleepConfig, Variant, int, Path]],
    ab: AblationConfig,
    store: EpochStore,
    splits: dict[str, list[str]],
    jobs: int,
    progress: bool,
) -> None:
    """Run the pending (config, variant, seed, directory) jobs, ``jobs`` at a time."""
    if jobs < 1:
        raise ValueError(f"ablation: jobs must be >= 1; got {jobs}")
    if jobs == 1:
        for cfg, v, seed, run_dir in todo:
            _job(cfg, v, seed, ab, store, splits, run_dir, None, progress)
        return
    with worker_pool(jobs, "spawn") as pool:
        futures = [
            pool.submit(_job, cfg, v, seed, ab, str(store.root), splits, run_dir, 1, False)
            for cfg, v, seed, run_dir in todo
        ]
        for future in futures:
            future.result()  # re-raises the first failure here


def summarize(
    ab: AblationConfig, rows: dict[str, list[dict[str, Any]]], floor: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One summary per variant: pretext ratios (mean, sd), kappa and macro-F1 (mean, sd), wall
    time; the spectral floor last."""
    out: list[dict[str, Any]] = []
    for v in ab.variants:
        runs = rows.get(v.name, [])
        kappa = np.array([r["eval"]["kappa"] for r in runs], dtype=float)
        mf1 = np.array([r["eval"]["macro_f1"] for r in runs], dtype=float)
        ratios: dict[str, list[float]] = {}
        for r in runs:
            for k, val in r.get("pretext", {}).get("ratio", {}).items():
                ratios.setdefault(k, []).append(val)
        heads = [h for r in runs if (h := headline(r.get("pretext", {}).get("errors", {})))]
        out.append({
            "name": v.name, "label": v.label, "paper": v.paper, "score": v.score,
            "seeds": len(runs),
            "ratio": {k: float(np.mean(x)) for k, x in ratios.items()},
            "ratio_sd": {k: float(np.std(x)) for k, x in ratios.items()},
            "pretext": mean_headline(heads),
            "kappa": float(kappa.mean()) if len(runs) else float("nan"),
            "kappa_sd": float(kappa.std(ddof=1)) if len(runs) > 1 else float("nan"),
            "macro_f1": float(mf1.mean()) if len(runs) else float("nan"),
            "wall_s": float(np.mean([r["wall_s"] for r in runs])) if runs else float("nan"),
        })  # fmt: skip
    if floor is not None:
        out.append({
            "name": "spectral-floor", "label": "spectral floor: band powers + LDA", "paper": False,
            "score": None, "seeds": 0, "ratio": {}, "ratio_sd": {}, "kappa": floor["kappa"],
            "kappa_sd": float("nan"), "macro_f1": floor["macro_f1"], "wall_s": floor["wall_s"],
        })  # fmt: skip
    return out


def _ratios_text(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    head = row.get("pretext")
    if head is not None and head["key"] in ("recon", "pos_acc", "rp_acc"):
        short = {"recon": "recon", "pos_acc": "pos acc", "rp_acc": "RP acc"}[head["key"]]
        return f"*{short} {head['value']:.3f} ({head['chance_name']} {head['chance']:.3f})"
    if not ratio:
        return "-"
    # 1-D targets by component; 2-D ones (a spectrogram's Δf, Δt) by their Euclidean error
    keys = [k for k in ("t", "t@dropped", "s_t") if k in ratio]
    keys = keys or [k for k in ("euclidean",) if k in ratio]
    return ", ".join(f"{'*' if k == row['score'] else ''}{k} {ratio[k]:.3f}" for k in keys)


def format_ablation(summary: list[dict[str, Any]]) -> str:
    """The ablation table: pretext error / predict-zero per component (``*``: the scored one),
    kappa mean ± sd over seeds, macro-F1, seeds and mean wall time per seed."""
    head = (
        f"{'variant':<52} {'pretext / zero':<34} {'kappa':>15} {'mF1':>6} {'seeds':>5} "
        f"{'wall s':>7}"
    )
    lines = [head]
    for r in summary:
        label = r["label"] + ("" if r["paper"] or r["name"] == "spectral-floor" else " †")
        sd = "" if np.isnan(r["kappa_sd"]) else f" ± {r['kappa_sd']:.3f}"
        lines.append(
            f"{label[:52]:<52} {_ratios_text(r):<34} {r['kappa']:>7.3f}{sd:<8} "
            f"{r['macro_f1']:>6.3f} {r['seeds']:>5} {r['wall_s']:>7.0f}"
        )
    lines.append(
        "† departs from the paper's setting; * the component the pretext is judged on (PART: "
        "error / predict-zero; MAE: masked-token MSE vs the token mean; MP3, DropPos: position "
        "accuracy vs 1/N; RP: close/far accuracy vs the majority label)"
    )
    return "\n".join(lines)


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("ablation plot skipped: matplotlib missing (pip install relpos[plot])")
        return
    rows = [r for r in summary if not np.isnan(r["kappa"])]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))
    err = [0.0 if np.isnan(r["kappa_sd"]) else r["kappa_sd"] for r in rows]
    ax.barh(y, [r["kappa"] for r in rows], xerr=err, color="tab:blue", alpha=0.7, capsize=3)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Cohen's kappa on held-out subjects (mean ± sd over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
