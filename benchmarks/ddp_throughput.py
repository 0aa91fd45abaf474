"""Pretraining throughput of the demo preset with 1 process vs 2 DDP processes (gloo, CPU),
measured side by side in one run.

    python examples/ddp_throughput.py                 # synthesises a small store first
    python examples/ddp_throughput.py --store runs/demo-sleep/store --steps 60

Each configuration runs `relpos pretrain` for the same number of optimiser steps with the same
global batch (one process: batch B; two processes: B/2 each) and reports the median samples/s
from its metrics.jsonl (summed over ranks). Both use the machine's cores: one process with
OMP_NUM_THREADS = cores, each of the two processes with cores / 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _store(tmp: Path) -> Path:
    from relpos.sleep.experiment import SplitSpec, write_splits
    from relpos.sleep.store import EpochStore, prepare_store
    from relpos.sleep.synthetic import synthesize_dataset

    synthesize_dataset(tmp / "records", 8, seed=0, max_hours=1.0, jobs=2, progress=False)
    prepare_store(tmp / "records", tmp / "store", jobs=2, progress=False)
    write_splits(
        EpochStore(tmp / "store"), SplitSpec(n_finetune=1, n_test=1), tmp / "store" / "splits.json"
    )
    return tmp / "store"


def _run(store: Path, out: Path, nproc: int, batch: int, steps: int, threads: int) -> float:
    args = ["pretrain", "--store", str(store), "--out", str(out), "--set", f"optim.batch_size={batch}",
            "--set", f"optim.max_steps={steps}", "--set", "runtime.log_every=5", "--set", "runtime.progress=false",
            "--set", "runtime.checkpoint_every=0"]  # fmt: skip
    if nproc == 1:
        cmd = [sys.executable, "-m", "relpos", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "relpos", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["samples_per_s"] for r in rows[1:] or rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    args = p.parse_args()
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Path(args.store) if args.store else _store(tmp)
        one = _run(store, tmp / "one", 1, args.batch, args.steps, cores)
        two = _run(store, tmp / "two", 2, args.batch // 2, args.steps, max(1, cores // 2))
    print(
        f"pretraining (physionet2018-demo preset, global batch {args.batch}, {args.steps} steps, {cores} cores)"
    )
    print(f"1 process : {one:8.0f} samples/s")
    print(f"2 processes (DDP, gloo): {two:8.0f} samples/s")
    print(f"ratio 2/1 : {two / one:8.2f}")


if __name__ == "__main__":
    main()
