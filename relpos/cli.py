"""The ``relpos`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("relpos")

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn`` as ``relpos <name>`` with ``setup`` adding its arguments."""

    def wrap(fn: Command) -> Command:
        _COMMANDS[name] = (setup, fn)
        return fn

    return wrap


# ---------------------------------------------------------------------- bench / models
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer repeats")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Side-by-side speed ratios: extract vs loop, extract vs clone, PART vs encoder step."""
    import torch

    from relpos.bench import format_results, run

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device or 'auto'}"
    )
    print(format_results(run(quick=args.quick, device=args.device)))
    return 0


def _models_args(p: argparse.ArgumentParser) -> None:
    pass


@command("models", _models_args)
def _models(args: argparse.Namespace) -> int:
    """List the encoder presets with their parameter counts."""
    from relpos.nn.vit import _PRESETS, count_parameters, create_model

    print(f"{'preset':<14} {'token_dim':>9} {'dim':>5} {'depth':>5} {'heads':>5} {'params':>12}")
    for name in sorted(_PRESETS):
        model = create_model(name)
        cfg = model.config
        print(
            f"{name:<14} {cfg['token_dim']:>9} {cfg['dim']:>5} {cfg['depth']:>5} {cfg['heads']:>5} "
            f"{count_parameters(model):>12,}"
        )
    return 0


# ---------------------------------------------------------------------- sleep staging
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="directory to write the records into")
    p.add_argument("--records", type=int, default=60, help="labelled records (default 60)")
    p.add_argument("--unlabelled", type=int, default=0, help="extra records without .arousal")
    p.add_argument(
        "--max-hours", type=float, default=None, help="crop each night to a window of this length"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--layout", choices=["nested", "flat"], default="nested")


@command("synth", _synth_args)
def _synth(args: argparse.Namespace) -> int:
    """Write synthetic PSG records in the PhysioNet/CinC 2018 format (.hea/.mat/.arousal)."""
    from relpos.sleep.synthetic import synthesize_dataset

    paths = synthesize_dataset(
        args.out, args.records, seed=args.seed, max_hours=args.max_hours, layout=args.layout,
        unlabelled=args.unlabelled, jobs=args.jobs,
    )  # fmt: skip
    print(f"{len(paths)} records in {args.out}")
    return 0


def _sleep_preset(args: argparse.Namespace):
    from relpos.sleep.experiment import load_sleep_config
    from relpos.train.config import parse_overrides

    return load_sleep_config(args.preset, parse_overrides(getattr(args, "set", None) or []))


def _set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help=f"override, e.g. {example}"
    )


def _preset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default="physionet2018-demo", help="sleep preset name or YAML/JSON file"
    )


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="directory of records (challenge layout or flat)")
    p.add_argument("store", help="store directory to create or complete")
    _preset_arg(p)
    p.add_argument(
        "--jobs", type=int, default=None, help="parallel records (default: from the preset)"
    )
    p.add_argument("--dtype", choices=["float16", "float32"], default=None)
    p.add_argument("--iir", action="store_true", help="IIR (Butterworth) bandpass instead of FIR")
    p.add_argument("--require-labels", action="store_true", help="skip records without .arousal")
    p.add_argument("--limit", type=int, default=None, help="only the first N records")
    p.add_argument("--retry-skipped", action="store_true", help="retry records skipped before")


@command("prepare", _prepare_args)
def _prepare(args: argparse.Namespace) -> int:
    """Filter, resample and epoch records into a memory-mapped store (resumable, parallel)."""
    from relpos.sleep.preprocess import Bandpass
    from relpos.sleep.store import prepare_store

    spec = _sleep_preset(args).prepare
    pipeline = spec.pipeline
    if args.iir:
        steps = [
            Bandpass(**{**s.model_dump(), "method": "iir"}) if s.name == "bandpass" else s
            for s in pipeline.steps
        ]
        pipeline = pipeline.model_copy(update={"steps": steps})
    summary = prepare_store(
        args.src, args.store, pipeline=pipeline, channels=spec.channels, dtype=args.dtype or spec.dtype,
        jobs=args.jobs or spec.jobs, require_labels=args.require_labels, limit=args.limit,
        retry_skipped=args.retry_skipped,
    )  # fmt: skip
    print(summary.format())
    return 0


def _splits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    _preset_arg(p)
    p.add_argument("--finetune", type=int, default=None, help="finetuning subjects")
    p.add_argument("--test", type=int, default=None, help="held-out test subjects")
    p.add_argument("--val", type=int, default=None, help="validation subjects")
    p.add_argument("--pretrain", type=int, default=None, help="cap on pretraining subjects")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="splits file (default STORE/splits.json)")


@command("splits", _splits_args)
def _splits(args: argparse.Namespace) -> int:
    """Seeded subject-level splits (pretrain / finetune / val / test), saved as JSON."""
    from pathlib import Path

    from relpos.sleep.experiment import write_splits
    from relpos.sleep.store import EpochStore

    spec = _sleep_preset(args).splits
    for field, value in (("n_finetune", args.finetune), ("n_test", args.test), ("n_val", args.val),
                         ("n_pretrain", args.pretrain), ("seed", args.seed)):  # fmt: skip
        if value is not None:
            setattr(spec, field, value)
    out = Path(args.out or Path(args.store) / "splits.json")
    splits = write_splits(EpochStore(args.store), spec, out)
    print(f"{out}: " + ", ".join(f"{k} {len(v)} subjects" for k, v in splits.items()))
    return 0


def _train_args(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument("--store", required=True, help="prepared store directory")
    p.add_argument("--splits", default=None, help="splits file (default STORE/splits.json)")
    p.add_argument("--split", default=split, help=f"which split to train on (default {split})")
    _preset_arg(p)
    p.add_argument(
        "--config", default=None, help="a TrainConfig YAML/JSON (instead of the preset's section)"
    )
    p.add_argument(
        "--out", required=True, help="run directory (checkpoints, metrics.jsonl, encoder)"
    )
    _set_arg(p, "optim.epochs=5")
    p.add_argument(
        "--no-resume", action="store_true", help="start afresh even if OUT has checkpoints"
    )


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    _train_args(p, "pretrain")
    p.add_argument("--method", choices=["part", "part_grid"], default="part")


def _load_train_config(
    args: argparse.Namespace, section: str, method: str, init: str | None = None
):
    from relpos.sleep.experiment import finetune_config, load_sleep_config, pretrain_config
    from relpos.train.config import TrainConfig, _merge, load_config, parse_overrides

    if args.config:
        cfg = load_config(args.config, TrainConfig)
    else:
        sleep = load_sleep_config(args.preset)
        cfg = (
            pretrain_config(sleep, method)
            if section == "pretrain"
            else finetune_config(sleep, method, init)
        )
    if args.set:
        cfg = TrainConfig.model_validate(
            _merge(cfg.model_dump(mode="json"), parse_overrides(args.set))
        )
    if init is not None:
        cfg.finetune.init = init
    return cfg


def _dataset(args: argparse.Namespace, labelled: bool):
    from pathlib import Path

    from relpos.sleep.store import EpochDataset, EpochStore, load_splits

    store = EpochStore(args.store)
    path = Path(args.splits or Path(args.store) / "splits.json")
    if not path.exists():
        raise FileNotFoundError(
            f"splits file {path} not found: run `relpos splits {args.store}` first"
        )
    splits = load_splits(path)
    if args.split not in splits:
        raise ValueError(f"split {args.split!r} not in {path}; it has {', '.join(splits)}")
    return EpochDataset(store, splits[args.split], labelled_only=labelled)


@command("pretrain", _pretrain_args)
def _pretrain(args: argparse.Namespace) -> int:
    """PART (or PART-grid) pretraining of a ViT-1D on a prepared store."""
    from relpos.sleep.experiment import run_pretrain

    cfg = _load_train_config(args, "pretrain", args.method)
    data = _dataset(args, labelled=False)
    path, info = run_pretrain(cfg, data, _out(args))
    if _is_rank0():
        print(f"pretrained encoder: {path}\n{info}")
    return 0


def _is_rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _out(args: argparse.Namespace):
    from pathlib import Path

    out = Path(args.out)
    if args.no_resume and (out / "checkpoints").exists():
        raise FileExistsError(
            f"{out} already holds checkpoints; choose another --out or drop --no-resume"
        )
    return out


def _finetune_args(p: argparse.ArgumentParser) -> None:
    _train_args(p, "finetune")
    p.add_argument(
        "--init", default=None, help="pretrained encoder: checkpoint or encoder.safetensors"
    )
    p.add_argument(
        "--no-pos", action="store_true", help="no position embeddings (supervised w/o pos)"
    )


@command("finetune", _finetune_args)
def _finetune(args: argparse.Namespace) -> int:
    """Supervised finetuning on on-grid tokens (from scratch or from --init)."""
    from relpos.sleep.experiment import run_finetune

    method = "supervised_nopos" if args.no_pos else ("part" if args.init else "supervised_pos")
    cfg = _load_train_config(args, "finetune", method, init=args.init)
    data = _dataset(args, labelled=True)
    path, info = run_finetune(cfg, data, _out(args))
    if _is_rank0():
        print(f"finetuned model: {path}\n{info}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a finetuned checkpoint (final.pt or checkpoints/ckpt-*.pt)")
    p.add_argument("--store", required=True)
    p.add_argument("--splits", default=None)
    p.add_argument("--split", default="test")
    p.add_argument(
        "--out", default=None, help="write metrics.json, confusion.png, hypnogram.png here"
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--batch-size", type=int, default=512)


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    """Cohen's kappa, accuracy, macro-F1, per-class F1 and confusion on held-out subjects."""
    from pathlib import Path

    from relpos.sleep.experiment import evaluate_checkpoint
    from relpos.train.metrics import format_report

    report = evaluate_checkpoint(
        args.checkpoint, _dataset(args, labelled=True), Path(args.out) if args.out else None,
        batch_size=args.batch_size, plots=not args.no_plots,
    )  # fmt: skip
    print(format_report(report))
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "what",
        choices=["sleep", "image", "heads"],
        help="sleep staging, images, or the head ablation",
    )
    p.add_argument("--out", default=None, help="output directory (default runs/demo-<what>)")
    p.add_argument("--preset", default=None, help="preset name or file (default: the demo preset)")
    p.add_argument(
        "--data", default=None, help="sleep: a directory of real records instead of synthetic ones"
    )
    _set_arg(p, "pretrain.optim.epochs=2")
    p.add_argument(
        "--quick", action="store_true", help="a tiny budget (seconds): checks the whole path"
    )
    p.add_argument("--no-progress", action="store_true")


@command("demo", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    """End-to-end demos: `sleep` (PhysioNet-2018 format, kappa), `image` (MNIST-5k, accuracy),
    `heads` (the relative-head ablation, paper Table 5)."""
    from pathlib import Path

    from relpos.train.config import _merge, parse_overrides

    out = Path(args.out or f"runs/demo-{args.what}")
    overrides = parse_overrides(args.set)
    if args.what == "sleep":
        from relpos.sleep.experiment import QUICK, load_sleep_config, run_demo

        if args.quick:
            overrides = _merge(QUICK, overrides)
        cfg = load_sleep_config(args.preset or "physionet2018-demo", overrides)
        res = run_demo(cfg, out, data_dir=args.data, progress=not args.no_progress)
        print()
        print(res["table"])
        print(
            f"\nresults: {out / 'results.json'}; plots: {out}/eval-*/confusion.png, hypnogram.png"
        )
        print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in res["timings_s"].items()))
        return 0
    from relpos.vision.experiment import QUICK as IQUICK
    from relpos.vision.experiment import load_image_config, run_head_ablation, run_image_demo

    if args.quick:
        overrides = _merge(IQUICK, overrides)
    cfg = load_image_config(args.preset or "mnist5k-demo", overrides)
    run = run_head_ablation if args.what == "heads" else run_image_demo
    res = run(cfg, out, progress=not args.no_progress)
    print()
    print(res["table"])
    print(f"\nresults: {out}")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (holds metrics.jsonl)")
    p.add_argument("--no-plot", action="store_true", help="print only")


@command("report", _report_args)
def _report(args: argparse.Namespace) -> int:
    """Summarise a run's metrics.jsonl and plot loss, learning rate and throughput."""
    from relpos.train.report import format_summary, plot_metrics, summarize

    print(format_summary(summarize(args.run_dir)))
    if not args.no_plot:
        try:
            print(f"plot: {plot_metrics(args.run_dir)}")
        except ImportError:
            print("plot skipped: matplotlib missing (pip install relpos[plot])")
    return 0


# ---------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relpos",
        description="Self-supervised pretraining by relative position prediction (PART).",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (setup, fn) in _COMMANDS.items():
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else None
        p = sub.add_parser(name, help=doc, description=doc)
        setup(p)
        p.set_defaults(_fn=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return int(args._fn(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        log.debug("error", exc_info=True)
        print(f"relpos {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
