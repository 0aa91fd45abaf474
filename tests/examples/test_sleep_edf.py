"""examples/sleep_edf.py: synthetic Sleep-EDF pairs -> store -> splits -> PART -> kappa."""

import json

import pytest


@pytest.mark.slow  # ~13 s on 2 shared CPU cores
def test_sleep_edf_example_runs_end_to_end(tmp_path, load_example):
    example = load_example("sleep_edf")
    small = {"nights": 6, "minutes": 20, "n_finetune": 1, "n_test": 1, "max_steps": 3}
    report = example.main(out=str(tmp_path), dim=16, depth=1, **small)
    assert -1 <= report["kappa"] <= 1 and report["n"] > 0
    edf = sorted(p.name for p in (tmp_path / "edf").iterdir())
    assert edf[:2] == ["SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"] and len(edf) == 12
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert splits["test"] == ["SC402"]  # both nights of a subject on one side
    cfg = json.loads((tmp_path / "store" / "store.json").read_text())
    assert cfg["channels"] == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert (tmp_path / "eval" / "confusion.png").is_file()
