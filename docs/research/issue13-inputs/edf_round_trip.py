"""EDF round trip: synthetic nights (real hypnograms) -> Sleep-EDF pairs -> store, against the
same records prepared from their PhysioNet files."""
import json, time, numpy as np
from pathlib import Path
from edfio import read_edf as read_header
from relpos.sleep.synthetic import synthesize_dataset
from relpos.sleep.physionet2018 import find_records, read_record
from relpos.sleep.edf import write_edf, find_edf_records
from relpos.sleep.format import EEG_CHANNELS
from relpos.sleep.store import prepare_store

root = Path("/tmp/edfmeasure/run"); root.mkdir(parents=True, exist_ok=True)
synthesize_dataset(root / "phys", 4, seed=1, max_hours=2.0, progress=False)
recs = find_records(root / "phys")
names = [f"EEG {c}" for c in EEG_CHANNELS]
raw_err, raw_steps = [], []
for i, f in enumerate(recs):
    r = read_record(f, EEG_CHANNELS)
    name = f"SC4{i // 2:02d}{i % 2 + 1}"
    psg = root / "edf" / f"{name}E0-PSG.edf"
    write_edf(psg, r.signal, r.fs, names, labels=r.labels, onset=r.onset, hypnogram=root / "edf" / f"{name}EC-Hypnogram.edf")
t = time.perf_counter()
a = prepare_store(root / "phys", root / "store_phys", dtype="float32", progress=False)
b = prepare_store(root / "edf", root / "store_edf", channels=names, dtype="float32", progress=False)
print("prepare edf s", time.perf_counter() - t)
edf_recs = find_edf_records(root / "edf")
max_abs, max_rel, n_lab, n_eq, n_ep = 0.0, 0.0, 0, 0, 0
for f, e in zip(recs, edf_recs):
    r = read_record(f, EEG_CHANNELS)
    re_ = e.read(names)
    steps = np.array([np.ptp(s.physical_range) / np.ptp(s.digital_range) for s in read_header(e.psg).signals])
    d = np.abs(re_.signal[:, : r.signal.shape[1]] - r.signal).max(axis=1)
    raw_err.append(d.max()); raw_steps.append((d / steps).max())
    ma = json.loads((root / "store_phys/records" / f"{f.record_id}.json").read_text())
    mb = json.loads((root / "store_edf/records" / f"{e.record_id}.json").read_text())
    xa = np.load(root / "store_phys/records" / f"{f.record_id}.npy")
    xb = np.load(root / "store_edf/records" / f"{e.record_id}.npy")
    assert ma["epoch_index"] == mb["epoch_index"] and xa.shape == xb.shape, (ma["n_epochs"], mb["n_epochs"])
    la, lb = np.array(ma["labels"]), np.array(mb["labels"])
    n_ep += len(la); n_eq += int((la == lb).sum()); n_lab += int((la >= 0).sum())
    max_abs = max(max_abs, float(np.abs(xa - xb).max()))
    max_rel = max(max_rel, float((np.abs(xa - xb).max(axis=(0, 2)) / steps).max()))
    print(e.record_id, e.subject_id, "epochs", len(la), "raw max|d| uV", d.max().round(5), "step uV", steps.max().round(5), "store max|d| uV", np.abs(xa - xb).max().round(5), "std uV", xa.std().round(2))
print(f"records {len(recs)}, epochs {n_ep} (labelled {n_lab}), label agreement {100 * n_eq / n_ep:.2f}%")
print(f"raw: max |EDF - original| {max(raw_err):.5f} uV = {max(raw_steps):.3f} digital steps")
print(f"store (bandpass 0.1-30 Hz, resample 100 Hz, float32): max |EDF - original| {max_abs:.5f} uV = {max_rel:.3f} steps")
