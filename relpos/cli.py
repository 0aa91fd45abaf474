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

    from .bench import format_results, run

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
    from .nn.vit import _PRESETS, count_parameters, create_model

    print(f"{'preset':<14} {'token_dim':>9} {'dim':>5} {'depth':>5} {'heads':>5} {'params':>12}")
    for name in sorted(_PRESETS):
        model = create_model(name)
        cfg = model.config
        print(
            f"{name:<14} {cfg['token_dim']:>9} {cfg['dim']:>5} {cfg['depth']:>5} {cfg['heads']:>5} "
            f"{count_parameters(model):>12,}"
        )
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
