"""The ``relpos`` command line.

Generic commands live here: ``pretrain``/``finetune`` train any registered modality from any
registered data source (``--modality``, ``--data``, ``--data-source``, ``--plugin``), plus
``models``, ``bench``, ``report`` and ``demo``. The sleep commands (``synth``, ``prepare``,
``splits``, ``evaluate``) are mounted from :mod:`relpos.sleep.cli`, the image demos from
:mod:`relpos.vision.cli`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from relpos.cli_args import int_list, preset_arg, set_arg
from relpos.errors import INTERRUPTED, one_line
from relpos.sleep import cli as sleep_cli

if TYPE_CHECKING:
    from relpos.train.config import TrainConfig
    from relpos.train.data import SourceData

log = logging.getLogger("relpos")

__all__ = ["build_parser", "load_plugins", "main"]

Command = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], None]


# ---------------------------------------------------------------------- bench / models
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer repeats")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


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


def _models(args: argparse.Namespace) -> int:
    """List the encoder presets with their parameter counts."""
    from relpos.nn.vit import count_parameters, create_model, list_models

    print(f"{'preset':<14} {'token_dim':>9} {'dim':>5} {'depth':>5} {'heads':>5} {'params':>12}")
    for name in list_models():
        model = create_model(name)
        cfg = model.config
        print(
            f"{name:<14} {cfg['token_dim']:>9} {cfg['dim']:>5} {cfg['depth']:>5} {cfg['heads']:>5} "
            f"{count_parameters(model):>12,}"
        )
    return 0


# ---------------------------------------------------------------------- plugins
def load_plugins(names: Sequence[str]) -> None:
    """Import each plugin (a module name, or a ``.py`` file) so that it registers its
    modalities, samplers, heads and data sources."""
    for name in names:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise FileNotFoundError(f"--plugin {name}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            continue
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # as `python -m`: modules in the working directory
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"--plugin {name}: cannot import it ({exc})") from exc


# ---------------------------------------------------------------------- pretrain / finetune
def _train_args(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument(
        "--data", default=None, help="what the data source reads (a store, image folder, .npz, ...)"
    )
    p.add_argument(
        "--data-source", default=None, help="a registered data source (default: the modality's)"
    )
    p.add_argument(
        "--store", default=None, help="prepared store directory (--data-source eeg_store --data S)"
    )
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE",
        help="keyword argument of the data source, e.g. size=64 (image folders)",
    )  # fmt: skip
    p.add_argument("--modality", default=None, help="a registered modality (default: the config's)")
    p.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="import MODULE (or a .py file) first; it may register modalities, samplers, sources",
    )  # fmt: skip
    p.add_argument(
        "--splits", default=None, help="eeg_store: splits file (default STORE/splits.json)"
    )
    p.add_argument("--split", default=split, help=f"which split to train on (default {split})")
    preset_arg(p, default=None)
    p.add_argument(
        "--config", default=None, help="a TrainConfig YAML/JSON (instead of the preset's section)"
    )
    p.add_argument(
        "--out", required=True, help="run directory (checkpoints, metrics.jsonl, encoder)"
    )
    set_arg(p, "optim.epochs=5")
    p.add_argument(
        "--no-resume", action="store_true", help="refuse to start if OUT already has checkpoints"
    )
    p.add_argument(
        "--force-new",
        action="store_true",
        help="start over in place: remove OUT's checkpoints, metrics and exports first (needed "
        "when the config changed in a way a resume cannot continue)",
    )


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    _train_args(p, "pretrain")
    p.add_argument(
        "--method",
        default="part",
        help="a registered pretraining method: part, part_grid, mae, mp3, droppos, rp, "
        "part_scale, or one a --plugin registers (default: part)",
    )


def _finetune_args(p: argparse.ArgumentParser) -> None:
    _train_args(p, "finetune")
    p.add_argument(
        "--init",
        default=None,
        help="pretrained encoder: checkpoint, encoder.safetensors or a relpos export folder",
    )
    p.add_argument(
        "--no-pos", action="store_true", help="no position embeddings (supervised w/o pos)"
    )


def _base_config(args: argparse.Namespace, section: str, method: str, init: str | None):
    """The run's config before ``--set``: ``--config``, or the preset's section for ``method``,
    or (a modality without a preset) one built from the registered modality."""
    from relpos.core.modality import get_modality
    from relpos.train import recipes
    from relpos.train.config import PresetSections, TrainConfig, load_config, load_preset, merge

    if args.config:
        cfg = load_config(args.config, TrainConfig)
        if args.modality and args.modality != cfg.modality.name:
            cfg = TrainConfig.model_validate(
                merge(cfg.model_dump(mode="json"), {"modality": {"name": args.modality}})
            )
        return cfg
    preset = args.preset
    if preset is None:
        preset = get_modality(args.modality).preset if args.modality else "physionet2018-demo"
    if preset is None:
        m = get_modality(args.modality)
        base = TrainConfig.model_validate({
            "task": section,
            "modality": {"name": m.name, "channels": m.channels, "extent": list(m.token_shape),
                         "token_shape": list(m.token_shape)},
            "pretext": {"sampler": {"kind": "modality"}},
        })  # fmt: skip
        sections = PresetSections(pretrain=base, finetune=base)
    else:
        over = {s: {"modality": {"name": args.modality}} for s in ("pretrain", "finetune")}
        sections = load_preset(preset, PresetSections, over if args.modality else None)
    if section == "pretrain":
        return recipes.pretrain_config(
            sections.pretrain, method, samplers={"grid": sections.part_grid}
        )
    return recipes.finetune_config(sections.finetune, method, init)


def _load_train_config(
    args: argparse.Namespace, section: str, method: str, init: str | None = None
) -> TrainConfig:
    from relpos.train.config import TrainConfig, merge, parse_overrides

    cfg = _base_config(args, section, method, init)
    if args.set:
        cfg = TrainConfig.model_validate(
            merge(cfg.model_dump(mode="json"), parse_overrides(args.set))
        )
    if init is not None:
        cfg.finetune.init = init
    return cfg


def _source(args: argparse.Namespace, cfg: TrainConfig) -> tuple[str, str | None]:
    """``(data source, path)`` from ``--store`` / ``--data-source`` / ``--data``."""
    from relpos.train.data import list_data_sources

    if args.store is not None:
        if args.data is not None or args.data_source not in (None, "eeg_store"):
            raise ValueError("--store S is --data-source eeg_store --data S: give one of them")
        return "eeg_store", args.store
    name = args.data_source or cfg.modality.registered().data_source
    if name is None:
        raise ValueError(
            f"modality {cfg.modality.name!r} names no data source: give --data-source "
            f"(known: {', '.join(list_data_sources())})"
        )
    if args.data is None:
        raise ValueError("give --data (what the data source reads) or --store")
    return name, args.data


def _data(args: argparse.Namespace, cfg: TrainConfig, labelled: bool) -> SourceData:
    import yaml

    from relpos.train.data import load_data
    from relpos.train.methods import get_method

    name, path = _source(args, cfg)
    kwargs: dict[str, Any] = {"splits": args.splits} if name == "eeg_store" else {}
    context = get_method(cfg.pretext.method).context if cfg.task == "pretrain" else None
    if context and name == "eeg_store":  # RP: windows of several consecutive epochs
        kwargs.update(context=context, complete=True)
    for item in args.data_option:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--data-option {item!r} must look like key=value")
        kwargs[key] = yaml.safe_load(value)
    return load_data(name, path, args.split, labelled, **kwargs)


def _fit_to_data(cfg: TrainConfig, data: SourceData) -> TrainConfig:
    """``cfg`` with the input's channels and extent as the data (after the modality's transform)
    has them; unchanged when they already agree."""

    from relpos.train.config import TrainConfig, merge

    if len(data.dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the data source yielded no examples for this split")
    x = _first_input(data.dataset[0])[None].float()
    shape = tuple(cfg.modality.registered().prepare(x).shape[1:])
    m = cfg.modality
    if shape == (m.channels, *m.extent):
        return cfg
    log.info("input (C, *extent) from the data: %s (config had %s)", shape, (m.channels, *m.extent))
    if len(shape) - 1 != m.ndim:
        raise ValueError(_axes_hint(m.name, m.ndim, shape))
    change = {"modality": {"channels": shape[0], "extent": list(shape[1:])}}
    return TrainConfig.model_validate(merge(cfg.model_dump(mode="json"), change))


def _axes_hint(name: str, ndim: int, shape: tuple[int, ...]) -> str:
    """Why the data do not fit modality ``name``, and the presets that make them fit."""
    from relpos.train.config import PresetSections, list_presets, load_preset

    fitting = []
    for preset in list_presets():
        try:
            sections = load_preset(preset, PresetSections)
        except ValueError:
            continue
        if sections.pretrain.modality.name == name:
            fitting.append(preset)
    hint = f"; its presets set the transform: --preset {' or '.join(fitting)}" if fitting else ""
    return (
        f"modality {name!r} takes {ndim}-D inputs (C, *extent) but the data give {shape} "
        f"(C, *extent){hint}"
    )


def _first_input(item: Any) -> Any:
    """``x`` of one dataset item: ``x``, ``(x, y, ...)`` or ``{"x": ...}``."""
    import torch

    if isinstance(item, dict):
        item = item["x"]
    elif isinstance(item, (tuple, list)):
        item = item[0]
    return torch.as_tensor(item)


def _train(args: argparse.Namespace, section: str, method: str, init: str | None = None):
    from relpos.train.api import train
    from relpos.train.data import class_weights
    from relpos.train.recipes import describe

    load_plugins(args.plugin)
    cfg = _load_train_config(args, section, method, init)
    data = _data(args, cfg, labelled=section == "finetune")
    cfg = _fit_to_data(cfg, data)
    weights = None
    if section == "finetune" and cfg.finetune.class_balanced:
        if data.labels is None:
            raise ValueError("finetune.class_balanced needs a data source that gives labels")
        weights = class_weights(data.labels, cfg.finetune.num_classes)
    _, result = train(
        cfg, data.dataset, _out(args), groups=data.groups, class_weights=weights,
        force_new=args.force_new, provenance=data.provenance,
    )  # fmt: skip
    return result, describe(result)


def _pretrain(args: argparse.Namespace) -> int:
    """PART (or PART-grid) pretraining of any registered modality (default: EEG in a store)."""
    result, info = _train(args, "pretrain", args.method)
    if _is_rank0():
        print(f"pretrained encoder: {result.encoder_path}\n{info}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    """Supervised finetuning on on-grid tokens (from scratch or from --init)."""
    method = "supervised_nopos" if args.no_pos else ("part" if args.init else "supervised_pos")
    result, info = _train(args, "finetune", method, init=args.init)
    if _is_rank0():
        print(f"finetuned model: {result.final_checkpoint}\n{info}")
    return 0


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if args.no_resume and (out / "checkpoints").exists():
        raise FileExistsError(
            f"{out} already holds checkpoints; choose another --out or drop --no-resume"
        )
    return out


# ---------------------------------------------------------------------- demo / report
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
    set_arg(p, "pretrain.optim.epochs=2")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated rows (part, part_grid, mae, mp3, droppos, rp [sleep], part_scale "
        "[image], supervised_pos, supervised_nopos) or 'all' (default: the preset's rows)",
    )
    p.add_argument(
        "--seeds",
        type=int_list,
        default=None,
        help="image: comma-separated seeds; one run per seed, then mean and sd per row "
        "(sleep: relpos ablate sleep --grid methods --seeds ...)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a tiny budget (seconds): checks the whole path"
    )
    p.add_argument(
        "--modality",
        choices=["signal", "spectrogram"],
        default=None,
        help="sleep: spectrogram also runs the rows on the EEG's spectrograms (STFT in dB, "
        "boxes over frequency x time), beside the raw signal's, on one split",
    )
    p.add_argument("--no-progress", action="store_true")


def _demo(args: argparse.Namespace) -> int:
    """End-to-end demos: `sleep` (PhysioNet-2018 format, kappa), `image` (MNIST-5k, accuracy),
    `heads` (the relative-head ablation, paper Table 5)."""
    from relpos.train.config import parse_overrides

    out = Path(args.out or f"runs/demo-{args.what}")
    overrides = parse_overrides(args.set)
    if args.modality and args.what != "sleep":
        raise ValueError(f"--modality is a sleep demo option; relpos demo {args.what} has none")
    if args.what == "sleep":
        if args.seeds:
            raise ValueError(
                "relpos demo sleep runs one seed; for several: relpos ablate sleep --grid "
                "methods --seeds 0,1,2"
            )
        return sleep_cli.demo(args, out, overrides)
    from relpos.vision import cli as vision_cli

    return vision_cli.demo(args, out, overrides)


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (holds metrics.jsonl)")
    p.add_argument("--no-plot", action="store_true", help="print only")


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


# ---------------------------------------------------------------------- export
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run directory (its final.pt) or a checkpoint (.pt)")
    p.add_argument(
        "out", help="the model folder to write (config.json, model.safetensors, README.md)"
    )
    p.add_argument(
        "--results",
        default=None,
        help="measured results for the card, e.g. relpos evaluate's metrics.json",
    )
    p.add_argument(
        "--license", default="other", help="license in the card's front matter (default other)"
    )
    p.add_argument("--name", default=None, help="the model card's title")


def _export(args: argparse.Namespace) -> int:
    """Write a model folder with a model card (Hugging Face layout) from a run or checkpoint."""
    from relpos.train.checkpoint import read_provenance
    from relpos.train.export import resolve_checkpoint, save_pretrained

    ckpt = resolve_checkpoint(args.source)
    extra: dict[str, Any] = {"license": args.license, "name": args.name}
    store = read_provenance(ckpt).get("store")
    if store and (Path(store) / "store.json").is_file():  # an EEG store: its preprocessing
        from relpos.sleep.store import EpochStore

        try:
            cfg = EpochStore(store).config
        except (OSError, ValueError) as exc:
            log.warning("the card leaves out the preprocessing: %s", one_line(exc))
        else:
            keys = ("channels", "fs", "epoch_seconds", "pipeline")
            extra["preprocessing"] = {k: cfg.get(k) for k in keys}
    out = save_pretrained(ckpt, args.out, results=args.results, extra=extra)
    print(f"model folder: {out} (from {ckpt}); load it with relpos.load_encoder({str(out)!r})")
    return 0


# ---------------------------------------------------------------------- entry point
_SLEEP = sleep_cli.COMMANDS
#: command name -> (argument setup, run), in the order ``relpos --help`` lists them
COMMANDS: dict[str, tuple[Setup, Command]] = {
    "bench": (_bench_args, _bench),
    "models": (_models_args, _models),
    "synth": _SLEEP["synth"],
    "prepare": _SLEEP["prepare"],
    "splits": _SLEEP["splits"],
    "pretrain": (_pretrain_args, _pretrain),
    "finetune": (_finetune_args, _finetune),
    "evaluate": _SLEEP["evaluate"],
    "demo": (_demo_args, _demo),
    "ablate": _SLEEP["ablate"],
    "report": (_report_args, _report),
    "export": (_export_args, _export),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (``relpos: error: ...``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"relpos: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="relpos",
        description="Self-supervised pretraining by relative position prediction (PART).",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (also with -v)"
    )
    parser.add_argument("--version", action="version", version=f"relpos {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (setup, fn) in COMMANDS.items():
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else None
        p = sub.add_parser(name, help=doc, description=doc)
        setup(p)
        p.add_argument(  # also after the command; SUPPRESS keeps the top-level value
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        p.set_defaults(_fn=fn)
    return parser


def _version() -> str:
    from relpos.train.export import relpos_version

    return relpos_version()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Any error ends as one line, ``relpos: error: <what> (<where>)``, with
    exit status 2 (the traceback only with ``-v`` or ``--debug``); Ctrl-C as "interrupted;
    rerun the same command to continue" with exit status 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return int(args._fn(args) or 0)
    except KeyboardInterrupt:
        print(f"\nrelpos: {INTERRUPTED}", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or args.verbose:
            traceback.print_exc()
        hint = "" if args.debug or args.verbose else " [--debug shows the traceback]"
        cause = "" if isinstance(exc, _EXPECTED) else hint
        print(f"relpos: error: {one_line(exc)}{cause}", file=sys.stderr)
        return 2


#: errors whose message is the whole story (the rest may be a bug: the hint offers a traceback)
_EXPECTED = (ValueError, OSError, LookupError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
