"""The sleep-staging commands of ``relpos``: ``synth``, ``prepare``, ``splits``, ``evaluate`` and
``demo sleep`` and ``ablate sleep`` (mounted by :mod:`relpos.cli`; imports are deferred to the command run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relpos.cli_args import count, int_list, positive_float, preset_arg, set_arg

__all__ = ["COMMANDS", "demo"]


def _sleep_preset(args: argparse.Namespace) -> Any:
    from relpos.sleep.experiment import load_sleep_config
    from relpos.train.config import parse_overrides

    return load_sleep_config(args.preset, parse_overrides(getattr(args, "set", None) or []))


# ---------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="directory to write the records into")
    p.add_argument("--records", type=count(0), default=60, help="labelled records (default 60)")
    p.add_argument("--unlabelled", type=count(0), default=0, help="extra records without .arousal")
    p.add_argument(
        "--max-hours",
        type=positive_float,
        default=None,
        help="crop each night to a window of this length",
    )
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--jobs", type=count(1, 256), default=2)
    p.add_argument("--layout", choices=["nested", "flat"], default="nested")
    p.add_argument(
        "--report", action="store_true", help="print per-stage band powers next to real EEG"
    )


def synth(args: argparse.Namespace) -> int:
    """Write synthetic PSG records in the PhysioNet/CinC 2018 format (.hea/.mat/.arousal)."""
    from relpos.sleep.synthetic import synthesize_dataset

    paths = synthesize_dataset(
        args.out, args.records, seed=args.seed, max_hours=args.max_hours, layout=args.layout,
        unlabelled=args.unlabelled, jobs=args.jobs,
    )  # fmt: skip
    print(f"{len(paths)} records in {args.out}")
    if args.report:
        from relpos.sleep.synthetic.realism import band_power_table, format_table

        print(format_table(band_power_table(args.out)))
    return 0


# ---------------------------------------------------------------------- prepare
def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src", help="directory of records: PhysioNet 2018 (.hea/.mat/.arousal) or EDF + hypnograms"
    )
    p.add_argument("store", help="store directory to create or complete")
    preset_arg(p)
    p.add_argument(
        "--format",
        choices=["auto", "physionet2018", "edf"],
        default="auto",
        help="source format (default auto: the one whose files SRC holds)",
    )
    p.add_argument(
        "--channels",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        default=None,
        help="comma-separated channel names to keep, e.g. 'EEG Fpz-Cz,EEG Pz-Oz' (default: the "
        "preset's; EDF recordings need them named)",
    )
    p.add_argument(
        "--psg", default=None, help="EDF: glob of the recordings (default '*-PSG.edf', Sleep-EDF)"
    )
    p.add_argument(
        "--hypnogram",
        default=None,
        help="EDF: the hypnogram next to a PSG, a glob template with {stem} (PSG name without "
        ".edf) and {id}; default '{stem:.7}?-Hypnogram.edf' (Sleep-EDF); then --psg is '*.edf'",
    )
    p.add_argument(
        "--subject",
        default=None,
        help="EDF: regex whose first group in the record id is the subject (default: Sleep-EDF's "
        "SC4ss/ST7ss, else the record id)",
    )
    p.add_argument(
        "--jobs",
        type=count(1, 256),
        default=None,
        help="parallel records (default: from the preset)",
    )
    p.add_argument("--dtype", choices=["float16", "float32"], default=None)
    p.add_argument("--iir", action="store_true", help="IIR (Butterworth) bandpass instead of FIR")
    p.add_argument(
        "--require-labels",
        action="store_true",
        help="skip records without stage labels (.arousal, hypnogram) instead of storing them "
        "unlabelled",
    )
    p.add_argument("--limit", type=count(1), default=None, help="only the first N records")
    p.add_argument("--retry-skipped", action="store_true", help="retry records skipped before")


def prepare(args: argparse.Namespace) -> int:
    """Filter, resample and epoch records into a memory-mapped store (resumable, parallel)."""
    from relpos.sleep.edf import EdfNaming
    from relpos.sleep.format import EEG_CHANNELS
    from relpos.sleep.preprocess import Bandpass
    from relpos.sleep.store import prepare_store

    spec = _sleep_preset(args).prepare
    names = {k: getattr(args, k) for k in ("psg", "hypnogram", "subject") if getattr(args, k)}
    naming = EdfNaming(**names)
    # the preset's channels, unless it keeps the PhysioNet default (then: the format's default)
    channels = args.channels or (None if spec.channels == list(EEG_CHANNELS) else spec.channels)
    pipeline = spec.pipeline
    if args.iir:
        steps = [
            Bandpass(**{**s.model_dump(), "method": "iir"}) if s.name == "bandpass" else s
            for s in pipeline.steps
        ]
        pipeline = pipeline.model_copy(update={"steps": steps})
    summary = prepare_store(
        args.src, args.store, pipeline=pipeline, channels=channels, dtype=args.dtype or spec.dtype,
        jobs=args.jobs or spec.jobs, require_labels=args.require_labels, limit=args.limit,
        retry_skipped=args.retry_skipped, source_format=args.format, naming=naming,
    )  # fmt: skip
    print(summary.format())
    return 0


# ---------------------------------------------------------------------- splits
def _splits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    preset_arg(p)
    p.add_argument("--finetune", type=count(0), default=None, help="finetuning subjects")
    p.add_argument("--test", type=count(0), default=None, help="held-out test subjects")
    p.add_argument("--val", type=count(0), default=None, help="validation subjects")
    p.add_argument("--pretrain", type=count(1), default=None, help="cap on pretraining subjects")
    p.add_argument("--seed", type=count(0), default=None)
    p.add_argument("--out", default=None, help="splits file (default STORE/splits.json)")
    p.add_argument(
        "--force", action="store_true", help="replace an existing splits file that differs"
    )


def splits(args: argparse.Namespace) -> int:
    """Seeded subject-level splits (pretrain / finetune / val / test), saved as JSON."""
    from relpos.sleep.experiment import write_splits
    from relpos.sleep.store import EpochStore

    spec = _sleep_preset(args).splits
    for field, value in (("n_finetune", args.finetune), ("n_test", args.test), ("n_val", args.val),
                         ("n_pretrain", args.pretrain), ("seed", args.seed)):  # fmt: skip
        if value is not None:
            setattr(spec, field, value)
    out = Path(args.out or Path(args.store) / "splits.json")
    made = write_splits(EpochStore(args.store), spec, out, force=args.force)
    print(f"{out}: " + ", ".join(f"{k} {len(v)} subjects" for k, v in made.items()))
    return 0


# ---------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a finetuned checkpoint (final.pt or checkpoints/ckpt-*.pt)")
    p.add_argument("--store", required=True)
    p.add_argument("--splits", default=None)
    p.add_argument("--split", default="test")
    p.add_argument(
        "--out",
        default=None,
        help="write metrics.json, confusion.png, hypnogram.png, per_subject_kappa.png here",
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--hypnograms",
        default="4",
        metavar="N|all|ID,ID",
        help="hypnogram.png: N subjects spread from the best kappa to the worst (default 4), "
        "'all', or comma-separated subject ids",
    )
    p.add_argument("--batch-size", type=count(1), default=512)
    p.add_argument("--no-progress", action="store_true")


def evaluate(args: argparse.Namespace) -> int:
    """Cohen's kappa, accuracy, macro-F1, per-class F1 and confusion on held-out subjects."""
    from relpos.sleep.evaluation import evaluate_checkpoint
    from relpos.sleep.sources import store_dataset
    from relpos.train.metrics import format_report

    data = store_dataset(args.store, args.split, True, args.splits)
    report = evaluate_checkpoint(
        args.checkpoint, data, Path(args.out) if args.out else None,
        batch_size=args.batch_size, plots=not args.no_plots, hypnograms=args.hypnograms,
        progress=not args.no_progress,
    )  # fmt: skip
    print(format_report(report))
    if args.out and not args.no_plots:
        print(f"plots: {args.out}/confusion.png, hypnogram.png, per_subject_kappa.png")
    return 0


# ---------------------------------------------------------------------- demo sleep
def demo(args: argparse.Namespace, out: Path, overrides: dict[str, Any]) -> int:
    """``relpos demo sleep``: the whole experiment; prints its table, paths and timings."""
    from relpos.sleep.experiment import METHODS, QUICK, load_sleep_config, run_demo
    from relpos.sleep.spectrogram import DEMO_METHODS, run_side_by_side
    from relpos.train.config import merge

    def _methods(text: str) -> list[str]:
        return list(METHODS) if text == "all" else text.split(",")

    if args.quick:
        overrides = merge(QUICK, overrides)
    spectrogram = getattr(args, "modality", None) == "spectrogram"
    if args.methods or spectrogram:
        rows = _methods(args.methods) if args.methods else list(DEMO_METHODS)
        overrides = merge(overrides, {"methods": rows})
    cfg = load_sleep_config(args.preset or "physionet2018-demo", overrides)
    if spectrogram:  # the rows on the raw signal and on spectrograms, one store and split
        res = run_side_by_side(cfg, out, data_dir=args.data, progress=not args.no_progress)
    else:
        res = run_demo(cfg, out, data_dir=args.data, progress=not args.no_progress)
    print()
    print(res["table"])
    plots = f"{out}/{'{,spectrogram/}' if spectrogram else ''}eval-*/confusion.png, hypnogram.png"
    print(f"\nresults: {out / 'results.json'}; plots: {plots}")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in res["timings_s"].items()))
    return 0


# ---------------------------------------------------------------------- ablate sleep
def _ablate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["sleep"], help="the experiment whose pretext is ablated")
    p.add_argument("--out", default="runs/ablate-sleep", help="output directory (resumable)")
    p.add_argument(
        "--grid",
        default=None,
        help="a named grid (pretext: the pretext variants, the default; methods: PART, "
        "PART-grid, MAE, MP3, DropPos, RP and the supervised rows; spectrogram: PART and "
        "supervised on the raw signal and on spectrograms) or a YAML/JSON AblationConfig",
    )
    p.add_argument("--preset", default=None, help="sleep preset (default: the grid's)")
    p.add_argument("--seeds", type=int_list, default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--only", default=None, help="comma-separated variant names to run")
    p.add_argument("--data", default=None, help="a directory of real records instead of synthetic")
    p.add_argument(
        "--jobs",
        type=count(1, 64),
        default=None,
        help="runs at a time, one thread each (default: 2 on a CPU machine, 1 with a GPU)",
    )
    set_arg(p, "splits.n_test=20")
    p.add_argument("--quick", action="store_true", help="tiny data and budget (seconds)")
    p.add_argument("--list", action="store_true", help="print the grid's variants and exit")
    p.add_argument("--no-progress", action="store_true")


def default_jobs() -> int:
    """Ablation runs at a time: 1 with a GPU, else up to 2 (one thread each)."""
    import os

    import torch

    return 1 if torch.cuda.is_available() else max(1, min(2, os.cpu_count() or 1))


def ablate(args: argparse.Namespace) -> int:
    """Pretext ablation: a grid of variants x seeds -> pretext error, kappa, macro-F1, time."""
    from relpos.sleep.ablate import GRIDS, QUICK_ABLATION, AblationConfig, run_ablation
    from relpos.sleep.experiment import QUICK
    from relpos.train.config import load_config, merge, parse_overrides

    if args.grid is None or args.grid in GRIDS:
        ab = AblationConfig(variants=list(GRIDS[args.grid or "pretext"]))
    else:
        ab = load_config(args.grid, AblationConfig)
    overrides = parse_overrides(args.set)
    if args.quick:
        ab = AblationConfig.model_validate({**ab.model_dump(), **QUICK_ABLATION})
        overrides = merge(QUICK, overrides)
    if args.preset:
        ab.preset = args.preset
    if args.seeds:
        ab.seeds = args.seeds
    if args.list:
        for v in ab.variants:
            print(f"{v.name:<24} {v.label}")
        return 0
    only = args.only.split(",") if args.only else None
    jobs = args.jobs if args.jobs is not None else default_jobs()
    res = run_ablation(
        ab, args.out, data_dir=args.data, overrides=overrides, only=only, jobs=jobs,
        progress=not args.no_progress,
    )  # fmt: skip
    print()
    print(res["table"])
    print(f"\nresults: {Path(args.out) / 'ablation.json'}; plot: {Path(args.out) / 'ablation.png'}")
    return 0


#: command name -> (argument setup, run)
COMMANDS = {
    "synth": (_synth_args, synth),
    "prepare": (_prepare_args, prepare),
    "splits": (_splits_args, splits),
    "evaluate": (_evaluate_args, evaluate),
    "ablate": (_ablate_args, ablate),
}
