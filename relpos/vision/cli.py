"""``relpos demo image`` and ``relpos demo heads`` (mounted by :mod:`relpos.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["demo"]


def demo(args: argparse.Namespace, out: Path, overrides: dict[str, Any]) -> int:
    """The image experiment (``image``) or the relative-head ablation (``heads``)."""
    from relpos.train.config import merge
    from relpos.vision.experiment import QUICK, load_image_config, run_head_ablation, run_image_demo

    if args.quick:
        overrides = merge(QUICK, overrides)
    cfg = load_image_config(args.preset or "mnist5k-demo", overrides)
    run = run_head_ablation if args.what == "heads" else run_image_demo
    res = run(cfg, out, progress=not args.no_progress)
    print()
    print(res["table"])
    print(f"\nresults: {out}")
    return 0
