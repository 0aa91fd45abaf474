"""The sleep-staging experiment end to end on a tiny synthetic budget (`relpos demo sleep --quick`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from relpos.cli import main
from relpos.sleep.experiment import (
    METHODS,
    QUICK,
    class_weights,
    evaluate_checkpoint,
    load_sleep_config,
    run_demo,
)
from relpos.sleep.store import EpochStore, load_splits
from relpos.train.config import merge


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-sleep")
    cfg = load_sleep_config("physionet2018-demo", QUICK)
    return out, cfg, run_demo(cfg, out, progress=False)


def test_demo_writes_everything(demo):
    out, _cfg, res = demo
    assert set(res["results"]) == set(METHODS)
    for method in METHODS:
        r = res["results"][method]
        assert -1.0 <= r["kappa"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
        assert np.asarray(r["confusion"]).sum() == res["epochs"]["test"]
        for png in ("confusion.png", "hypnogram.png"):
            assert (out / f"eval-{method}" / png).stat().st_size > 1000
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == res["table"] and "kappa" in res["table"]
    assert (out / "pretrain-part" / "encoder.safetensors").exists()
    assert (out / "finetune-part" / "final.pt").exists()


def test_splits_disjoint_and_unlabelled_in_pretraining(demo):
    out, cfg, _ = demo
    splits = load_splits(out / "splits.json")
    sets = [set(v) for v in splits.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    store = EpochStore(out / "store")
    subjects = np.asarray(store.subjects)
    unlabelled = {
        s for i, s in enumerate(subjects) if not (store.labels[store.subject_index == i] >= 0).any()
    }
    assert len(unlabelled) == cfg.synth.unlabelled
    assert unlabelled <= set(splits["pretrain"])
    assert len(splits["finetune"]) == 2 and len(splits["test"]) == 2


def _state(run: Path) -> dict[str, Any]:
    """What a finished run left: its log (bytes), its final weights and step, its encoder."""
    final = torch.load(run / "final.pt", weights_only=True)
    return {
        "log": hashlib.sha256((run / "metrics.jsonl").read_bytes()).hexdigest(),
        "step": final["step"],
        "model": final["model"],
        "encoder": load_file(run / "encoder.safetensors"),
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same_weights = all(
        a[k].keys() == b[k].keys() and all(torch.equal(a[k][n], b[k][n]) for n in a[k])
        for k in ("model", "encoder")
    )
    return a["log"] == b["log"] and a["step"] == b["step"] and same_weights


def test_rerun_resumes_without_retraining(demo):
    out, cfg, res = demo
    runs = ("pretrain-part", "finetune-part", "finetune-supervised_nopos")
    before = {r: _state(out / r) for r in runs}
    again = run_demo(cfg, out, progress=False)
    for method in METHODS:
        assert again["results"][method]["kappa"] == pytest.approx(res["results"][method]["kappa"])
    for r in runs:
        assert again["runs"][r]["steps"] == res["runs"][r]["steps"]
        # the finished run was skipped: no step logged, no weight changed
        assert _same(_state(out / r), before[r]), r


def test_cli_evaluate_and_errors(demo, capsys, tmp_path):
    out, _, _ = demo
    ckpt = out / "finetune-supervised_pos" / "final.pt"
    rc = main(
        [
            "evaluate",
            str(ckpt),
            "--store",
            str(out / "store"),
            "--splits",
            str(out / "splits.json"),
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert rc == 0
    assert "kappa" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] > 0
    # a pretraining checkpoint cannot be evaluated on stages: clear error, exit 2
    rc = main(
        [
            "evaluate",
            str(out / "pretrain-part" / "final.pt"),
            "--store",
            str(out / "store"),
            "--splits",
            str(out / "splits.json"),
        ]
    )
    assert rc == 2 and "pretraining checkpoint" in capsys.readouterr().err
    rc = main(
        [
            "pretrain",
            "--store",
            str(out / "store"),
            "--splits",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert rc == 2 and "none.json" in capsys.readouterr().err


def test_cli_pretrain_finetune_from_init(demo, tmp_path, capsys):
    out, _, _ = demo
    common = ["--store", str(out / "store"), "--splits", str(out / "splits.json"), "--set", "optim.max_steps=2",
              "--set", "encoder.dim=32", "--set", "encoder.depth=1", "--set", "encoder.heads=2", "--set", "optim.batch_size=16"]  # fmt: skip
    assert main(["pretrain", *common, "--out", str(tmp_path / "pt")]) == 0
    enc = tmp_path / "pt" / "encoder.safetensors"
    assert main(["finetune", *common, "--init", str(enc), "--out", str(tmp_path / "ft")]) == 0
    ckpt = torch.load(tmp_path / "ft" / "final.pt", weights_only=True)
    assert ckpt["config"]["finetune"]["init"] == str(enc)
    assert "finetuned model" in capsys.readouterr().out


def test_evaluate_checkpoint_report(demo):
    out, _, _ = demo
    from relpos.sleep.store import EpochDataset

    splits = load_splits(out / "splits.json")
    data = EpochDataset(out / "store", splits["test"], labelled_only=True)
    rep = evaluate_checkpoint(out / "finetune-part" / "final.pt", data)
    assert set(rep["per_subject_kappa"]) == set(splits["test"])
    assert rep["n"] == len(data)


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1, -1]), k=3)
    assert w[0] < w[1] and torch.isfinite(w).all()


def test_quick_overridesmerge():
    cfg = load_sleep_config("physionet2018-demo", merge(QUICK, {"splits": {"seed": 3}}))
    assert cfg.splits.seed == 3 and cfg.synth.records == QUICK["synth"]["records"]
