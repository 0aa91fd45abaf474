"""Sleep data path, measured side by side in one run on this machine:

1. `prepare` of one 8-hour, 13-signal, 200 Hz record (synthetic, official format): the whole
   record in a fresh process (`relpos prepare`, imports included) and in a warm process, against
   the FIR bandpass alone on the same six channels (the floor we aim to stay close to);
2. store read throughput in epochs/s with a torch DataLoader (batch 256, shuffled), plain and
   with the training loop's chunked per-record order, against the pretraining consumption of
   the paper's ViT-1D.

    python examples/bench_sleep_data.py [--records 12] [--hours 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def _prepare_times(tmp: Path) -> dict[str, float]:
    from relpos.sleep.physionet2018 import find_records, read_signals
    from relpos.sleep.preprocess import Bandpass
    from relpos.sleep.store import prepare_store
    from relpos.sleep.synthetic import write_record

    src = tmp / "night"
    write_record(src, "tr90-0001", 0, max_hours=8.0, hypnogram="tr04-0887")
    write_record(src, "tr90-0002", 1, max_hours=8.0, hypnogram="tr04-0887")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "relpos", "prepare", str(src), str(tmp / "cold"), "--jobs", "1", "--limit", "1"],
                   check=True, capture_output=True)  # fmt: skip
    cold = time.perf_counter() - t0
    prepare_store(src, tmp / "warm0", jobs=1, progress=False, limit=1)  # warm up this process
    shutil.rmtree(tmp / "warm0")
    t0 = time.perf_counter()
    prepare_store(src, tmp / "warm", jobs=1, progress=False, limit=1)
    warm = time.perf_counter() - t0
    rec = find_records(src)[0]
    signal, fs = read_signals(rec)
    fir = []
    for _ in range(3):
        t0 = time.perf_counter()
        Bandpass().apply(signal, fs)
        fir.append(time.perf_counter() - t0)
    hours = signal.shape[1] / fs / 3600
    return {"hours": hours, "cold_s": cold, "warm_s": warm, "fir_s": statistics.median(fir)}


def _read_throughput(tmp: Path, records: int, hours: float) -> dict[str, float]:
    from relpos.sleep.store import EpochDataset, prepare_store
    from relpos.sleep.synthetic import synthesize_dataset
    from relpos.train.order import EpochSampler

    synthesize_dataset(tmp / "recs", records, seed=0, max_hours=hours, jobs=2, progress=False)
    prepare_store(tmp / "recs", tmp / "store", jobs=2, progress=False)
    ds = EpochDataset(tmp / "store")
    out = {"epochs": len(ds)}
    loaders = {
        "plain": DataLoader(ds, batch_size=256, shuffle=True, drop_last=True),
        "chunked": DataLoader(
            ds,
            batch_size=256,
            sampler=EpochSampler(len(ds), groups=ds.record_index),
            drop_last=True,
        ),
        "chunked_2workers": DataLoader(
            ds,
            batch_size=256,
            sampler=EpochSampler(len(ds), groups=ds.record_index),
            drop_last=True,
            num_workers=2,
        ),
    }
    for name, loader in loaders.items():
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            n = sum(x.shape[0] for x, _, _ in loader)
            rates.append(n / (time.perf_counter() - t0))
        out[name] = statistics.median(rates)
    return out


def _model_rate(batch: int = 64) -> float:
    """Pretraining consumption of the paper's ViT-1D (vit_eeg) on this machine, epochs/s."""
    import relpos

    enc = relpos.create_model("vit_eeg")
    model = relpos.PART(enc, relpos.CrossAttentionHead(enc.dim, 1), 512)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, 6, 3000)
    sampler = relpos.RandomWindows(100, 40, snap=True)
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        out = model.forward_raw(x, sampler, 100)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=16)
    p.add_argument("--hours", type=float, default=4.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prep = _prepare_times(tmp)
        read = _read_throughput(tmp, args.records, args.hours)
    model = _model_rate()
    print(f"prepare one {prep['hours']:.2f}-h 13-signal 200 Hz record:")
    print(f"  fresh process (relpos prepare, imports included) {prep['cold_s']:6.2f} s")
    print(f"  warm process                                     {prep['warm_s']:6.2f} s")
    print(
        f"  FIR bandpass alone (6 channels)                  {prep['fir_s']:6.2f} s   warm prepare / FIR = {prep['warm_s'] / prep['fir_s']:.1f}x"
    )
    print(f"store read throughput ({read['epochs']} epochs, float16, batch 256):")
    for k in ("plain", "chunked", "chunked_2workers"):
        print(
            f"  DataLoader {k:<18} {read[k]:9.0f} epochs/s   = {read[k] / model:6.1f}x the vit_eeg pretraining rate"
        )
    print(f"  vit_eeg PART pretraining step on this CPU: {model:.0f} epochs/s")


if __name__ == "__main__":
    main()
