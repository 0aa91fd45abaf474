"""Band-power LDA baseline: how separable are the sleep stages from spectra alone?

The spectral floor (:func:`relpos.sleep.spectral.band_power_lda`, also a row of
``relpos ablate sleep``) on the subjects of a splits file. Without ``--splits`` the demo preset's subject split is drawn
(``relpos.sleep.experiment.write_splits``) and written next to the store.

Usage::

    python benchmarks/band_power_lda.py STORE [--splits SPLITS.json] [--preset physionet2018-demo]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--splits", default=None, help="splits JSON (default: draw the preset's)")
    p.add_argument("--preset", default="physionet2018-demo")
    args = p.parse_args(argv)
    if args.splits:
        from relpos.sleep.store import load_splits

        splits = load_splits(args.splits)
    else:
        from relpos.sleep.experiment import load_sleep_config, write_splits
        from relpos.sleep.store import EpochStore

        cfg = load_sleep_config(args.preset, {})
        path = Path(args.store).parent / "band_power_lda_splits.json"
        splits = write_splits(EpochStore(args.store), cfg.splits, path)
    from relpos.sleep.spectral import band_power_lda

    print(json.dumps(band_power_lda(args.store, splits), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
