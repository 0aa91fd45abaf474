"""``relpos demo image`` and ``relpos demo heads`` (mounted by :mod:`relpos.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["demo"]


def demo(args: argparse.Namespace, out: Path, overrides: dict[str, Any]) -> int:
    """The image experiment (``image``) or the relative-head ablation (``heads``)."""
    from relpos.train.config import merge
    from relpos.vision.experiment import (
        METHODS,
        QUICK,
        load_image_config,
        run_head_ablation,
        run_image_demo,
    )

    if args.quick:
        overrides = merge(QUICK, overrides)
    if args.methods:
        methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
        overrides = merge(overrides, {"methods": methods})
    cfg = load_image_config(args.preset or "mnist5k-demo", overrides)
    if args.what == "heads":
        res = run_head_ablation(cfg, out, progress=not args.no_progress)
    elif args.seeds:
        from relpos.vision.comparison import run_image_seeds

        res = run_image_seeds(cfg, out, args.seeds, progress=not args.no_progress)
    else:
        res = run_image_demo(cfg, out, progress=not args.no_progress)
    print()
    print(res["table"])
    print(f"\nresults: {out}")
    return 0
