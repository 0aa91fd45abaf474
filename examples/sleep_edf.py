"""Sleep staging on your own EDF recordings: EDF + hypnograms -> store -> subject splits -> PART
pretraining -> finetuning -> Cohen's kappa on held-out subjects.

Point ``--data`` at a folder of EDF recordings with their hypnograms. Sleep-EDF's naming works
as it is (``SC4001E0-PSG.edf`` + ``SC4001EC-Hypnogram.edf``; the two nights of subject 00,
``SC4001``/``SC4002``, stay in one split); other namings take ``--psg`` and ``--hypnogram``
(``relpos prepare --help``). Without ``--data`` the script first writes a few synthetic nights
as Sleep-EDF pairs (needs ``edfio``; the signals are synthetic stand-ins under Sleep-EDF's
channel names), so it runs anywhere.

    python examples/sleep_edf.py --data ~/sleep-edf/sleep-cassette --out runs/sleep-edf

The same steps on the command line (the input's channels come from the store):

    relpos prepare DATA runs/sleep-edf/store --channels "EEG Fpz-Cz,EEG Pz-Oz"
    relpos splits runs/sleep-edf/store --finetune 2 --test 2
    relpos pretrain --store runs/sleep-edf/store --out runs/pt
    relpos finetune --data-source eeg_store --data runs/sleep-edf/store \\
        --init runs/pt/encoder.safetensors --out runs/ft
    relpos evaluate runs/ft/final.pt --store runs/sleep-edf/store --out runs/eval
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import relpos
from relpos.sleep.edf import EdfNaming, write_edf
from relpos.sleep.evaluation import evaluate_checkpoint
from relpos.sleep.experiment import (
    datasets,
    finetune_config,
    load_sleep_config,
    pretrain_config,
    write_splits,
)
from relpos.sleep.physionet2018 import find_records, read_record
from relpos.sleep.sources import provenance
from relpos.sleep.store import EpochStore, prepare_store

CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")  # Sleep-EDF's two EEG derivations (100 Hz)


def make_sleep_edf(folder: Path, nights: int = 6, minutes: float = 60, seed: int = 0) -> Path:
    """``nights`` synthetic nights as Sleep-EDF pairs, two nights per subject: the generator's
    records (real hypnograms, synthetic EEG) with two of its EEG channels renamed."""
    from relpos.sleep.synthetic import synthesize_dataset

    with tempfile.TemporaryDirectory() as tmp:
        synthesize_dataset(tmp, nights, seed=seed, max_hours=minutes / 60, progress=False)
        for i, files in enumerate(find_records(tmp)):
            rec = read_record(files, ["F3-M2", "C4-M1"])
            name = f"SC4{i // 2:02d}{i % 2 + 1}"  # SC4ssN: subject ss, night N
            write_edf(
                folder / f"{name}E0-PSG.edf", rec.signal, rec.fs, CHANNELS, labels=rec.labels,
                onset=rec.onset, hypnogram=folder / f"{name}EC-Hypnogram.edf",
            )  # fmt: skip
    return folder


def main(
    data: str | None = None,
    out: str = "runs/sleep-edf",
    channels: tuple[str, ...] = CHANNELS,
    nights: int = 12,
    minutes: float = 120,
    n_finetune: int = 3,
    n_test: int = 2,
    pretrain_epochs: int = 5,
    finetune_epochs: int = 15,
    max_steps: int | None = None,
    dim: int = 64,
    depth: int = 2,
    naming: EdfNaming | None = None,
    plots: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the test report (kappa, accuracy, macro-F1, ...)."""
    t0 = time.perf_counter()
    root = Path(out)
    src = Path(data) if data else make_sleep_edf(root / "edf", nights, minutes)

    # 1. EDF -> the epoch store: bandpass, resample to 100 Hz, 30-s epochs, R&K -> AASM labels
    summary = prepare_store(
        src, root / "store", channels=channels, source_format="edf", naming=naming,
        progress=progress,
    )  # fmt: skip
    print(summary.format())

    # 2. the sleep preset, fitted to these channels and this budget
    net = {"dim": dim, "depth": depth, "heads": 4}
    steps = {} if max_steps is None else {"max_steps": max_steps}
    run = {"modality": {"channels": len(channels)}, "encoder": net}
    cfg = load_sleep_config(
        "physionet2018-demo",
        {
            "prepare": {"source_format": "edf", "channels": list(channels)},  # as in step 1
            "splits": {"n_finetune": n_finetune, "n_test": n_test},
            "pretrain": {**run, "optim": {"epochs": pretrain_epochs, **steps}},
            "finetune": {**run, "optim": {"epochs": finetune_epochs, **steps}},
        },
    )

    # 3. subject-level splits: no subject's nights on both sides
    store = EpochStore(root / "store")
    splits = write_splits(store, cfg.splits, root / "splits.json")
    sets = datasets(store, splits, cfg.context)
    print("subjects: " + ", ".join(f"{k} {v}" for k, v in splits.items()))

    # 4. PART pretraining on every epoch of the pretraining subjects (no labels)
    pt = pretrain_config(cfg, "part")
    pt.runtime.progress = progress
    pool = sets["pretrain"]
    _, res = relpos.train(
        pt, pool, root / "pretrain", groups=pool.record_index, provenance=provenance(pool)
    )

    # 5. finetune the pretrained encoder on the labelled finetuning subjects
    ft = finetune_config(cfg, "part", res.encoder_path)
    ft.runtime.progress = progress
    relpos.train(ft, sets["finetune"], root / "finetune", provenance=provenance(sets["finetune"]))

    # 6. kappa on the held-out subjects; plots in out/eval (confusion, hypnograms, per subject)
    ckpt = root / "finetune" / "final.pt"
    report = evaluate_checkpoint(ckpt, sets["test"], root / "eval", plots=plots)
    print(
        f"test subjects {splits['test']}: kappa {report['kappa']:.3f}, accuracy "
        f"{report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return report


if __name__ == "__main__":
    raw_help = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(description=__doc__, formatter_class=raw_help)
    p.add_argument("--data", default=None, help="folder of EDF recordings + hypnograms")
    p.add_argument("--out", default="runs/sleep-edf")
    p.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated EDF channels")
    p.add_argument("--psg", default=None, help="glob of the recordings (default '*-PSG.edf')")
    p.add_argument("--hypnogram", default=None, help="hypnogram template, e.g. '{stem}.txt'")
    p.add_argument("--nights", type=int, default=12, help="synthetic nights without --data")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--finetune-epochs", type=int, default=15)
    a = p.parse_args()
    names = {k: v for k, v in (("psg", a.psg), ("hypnogram", a.hypnogram)) if v}
    main(
        a.data, a.out, tuple(a.channels.split(",")), a.nights, naming=EdfNaming(**names),
        pretrain_epochs=a.pretrain_epochs, finetune_epochs=a.finetune_epochs, progress=True,
    )  # fmt: skip
