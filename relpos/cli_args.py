"""Arguments shared by the ``relpos`` commands, checked as argparse parses them: bounded counts,
positive numbers, seed lists, ``--set`` overrides and ``--preset``. A bad value is a one-line
error naming the option and the value (exit status 2), before any work starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["count", "int_list", "positive_float", "preset_arg", "set_arg"]


def count(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi]`` (``hi=None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    parse.__name__ = "count"  # argparse names the type in its messages
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse ``type``: comma-separated integers >= 0 (seeds), e.g. ``0,1,2``."""
    items = [s.strip() for s in text.split(",")]
    if not all(s.isdigit() for s in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return [int(s) for s in items]


def set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help=f"override, e.g. {example}"
    )


def preset_arg(p: argparse.ArgumentParser, default: str | None = "physionet2018-demo") -> None:
    helptext = "sleep preset name or YAML/JSON file"
    if default is None:
        helptext = (
            "preset name or YAML/JSON file (default: the modality's, physionet2018-demo for "
            "the default signal modality)"
        )
    p.add_argument("--preset", default=default, help=helptext)
