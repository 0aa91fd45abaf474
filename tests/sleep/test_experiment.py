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
    DEFAULT_METHODS,
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
    assert set(res["results"]) == set(DEFAULT_METHODS)
    for method in DEFAULT_METHODS:
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
    for method in DEFAULT_METHODS:
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


@pytest.mark.parametrize("method", ["mae", "rp"])
def test_cli_pretrains_every_method_by_name(demo, tmp_path, method):
    out, _, _ = demo
    common = ["--store", str(out / "store"), "--splits", str(out / "splits.json"), "--set", "optim.max_steps=2",
              "--set", "encoder.dim=32", "--set", "encoder.depth=1", "--set", "encoder.heads=2", "--set", "optim.batch_size=8"]  # fmt: skip
    assert main(["pretrain", *common, "--method", method, "--out", str(tmp_path / "pt")]) == 0
    cfg = torch.load(tmp_path / "pt" / "final.pt", weights_only=True)["config"]
    assert cfg["pretext"]["method"] == method and cfg["pretext"]["sampler"]["kind"] == "grid"
    # RP pairs windows of ten consecutive epochs: its inputs are ten epochs long
    assert cfg["modality"]["extent"] == [3000 * (10 if method == "rp" else 1)]
    assert (tmp_path / "pt" / "encoder.safetensors").exists()


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


# ---------------------------------------------------------------------- multi-epoch context
def test_context_spec_bounds_and_centred():
    from pydantic import ValidationError

    from relpos.sleep.experiment import ContextSpec

    assert ContextSpec() == ContextSpec(pretrain=1, finetune=1)
    assert ContextSpec(pretrain=4, finetune=5).pretrain == 4  # pretraining windows may be even
    for bad in ({"finetune": 4}, {"finetune": 0}, {"pretrain": 42}, {"finetune": 43}):
        with pytest.raises(ValidationError):
            ContextSpec(**bad)
    with pytest.raises(ValueError, match="odd"):  # the preset loader's one-line error
        load_sleep_config("physionet2018-demo", {"context": {"finetune": 2}})


def test_context_configs_extent_and_position_table():
    from relpos.sleep.experiment import finetune_config, pretrain_config
    from relpos.train.config import build_model

    base = load_sleep_config("physionet2018-demo", QUICK)
    assert base.context.pretrain == base.context.finetune == 1
    for method in ("part", "part_grid"):  # defaults: the preset's runs, unchanged
        assert pretrain_config(base, method).modality == base.pretrain.modality
    assert finetune_config(base, "supervised_pos").modality == base.finetune.modality
    cfg = load_sleep_config(
        "physionet2018-demo", merge(QUICK, {"context": {"pretrain": 4, "finetune": 3}})
    )
    assert pretrain_config(cfg, "part").modality.extent == [4 * 3000]
    assert pretrain_config(cfg, "part_grid").modality.extent == [4 * 3000]
    ft = finetune_config(cfg, "supervised_pos")
    assert ft.modality.extent == [3 * 3000] and ft.finetune.pos_embed == "learned"
    table = build_model(ft).pos_embed
    assert isinstance(table, torch.Tensor) and table.shape[1] == 3 * 30  # a row per 1-s token
    assert cfg.pretrain.modality.extent == [3000]  # the preset sections are left alone


def test_context_datasets_and_short_runs(demo, tmp_path):
    from relpos.sleep.experiment import (
        ContextSpec,
        datasets,
        finetune_config,
        pretrain_config,
        run_finetune,
        run_pretrain,
    )

    out, _, _ = demo
    store, splits = EpochStore(out / "store"), load_splits(out / "splits.json")
    one, ctx = datasets(store, splits), datasets(store, splits, ContextSpec(pretrain=3, finetune=5))
    assert set(one) == set(ctx)
    for split in ("finetune", "test"):  # the same scored epochs, zero-filled at the edges
        np.testing.assert_array_equal(one[split].indices, ctx[split].indices)
        assert ctx[split].context == 5 and not ctx[split].complete
        assert ctx[split][0][0].shape == (6, 5 * 3000)
    pt = ctx["pretrain"]
    assert (
        pt.complete
        and (pt.context_index >= 0).all()
        and set(pt.indices) < set(one["pretrain"].indices)
    )
    cfg = load_sleep_config(
        "physionet2018-demo",
        merge(QUICK, {"context": {"pretrain": 3, "finetune": 5},
                      "pretrain": {"optim": {"max_steps": 2}}, "finetune": {"optim": {"max_steps": 2}}}),
    )  # fmt: skip
    enc, _ = run_pretrain(pretrain_config(cfg, "part"), pt, tmp_path / "pt")
    ckpt, _ = run_finetune(finetune_config(cfg, "part", enc), ctx["finetune"], tmp_path / "ft")
    rep = evaluate_checkpoint(ckpt, ctx["test"], plots=False)
    assert rep["n"] == len(one["test"])


def test_paper_preset_has_sincos_positions_with_20_percent_dropped():
    """The paper's EEG paragraph: "we randomly mask out 20% of the position embeddings"."""
    from relpos.core.part import PART
    from relpos.sleep.experiment import pretrain_config
    from relpos.train.config import build_model

    cfg = load_sleep_config("physionet2018-paper")
    pretext = cfg.pretrain.pretext
    assert (pretext.pos_embed, pretext.pos_drop, pretext.score) == ("sincos", 0.2, "all")
    assert pretext.pos_unit == 100  # centres in seconds of 100-Hz samples
    small = cfg.pretrain.model_copy(deep=True)
    small.encoder.dim, small.encoder.depth, small.encoder.heads = 32, 1, 2
    model = build_model(pretrain_config(cfg.model_copy(update={"pretrain": small}), "part"))
    assert isinstance(model, PART) and model.drops_positions
    keep = model.draw_pos_keep(64, 40, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert 0.15 < 1 - keep.float().mean().item() < 0.25


def test_demo_reports_the_spectral_floor_on_the_same_split(demo):
    from relpos.sleep.experiment import FLOOR_LABEL
    from relpos.sleep.spectral import band_power_lda

    out, _cfg, res = demo
    floor = res["spectral_floor"]
    assert -1.0 <= floor["kappa"] <= 1.0 and floor["test_epochs"] == res["epochs"]["test"]
    assert np.asarray(floor["confusion"]).sum() == res["epochs"]["test"]
    assert res["table"].splitlines()[-1].startswith(FLOOR_LABEL)
    # the same number from the module on the split the demo wrote
    again = band_power_lda(out / "store", load_splits(out / "splits.json"))
    assert again["kappa"] == floor["kappa"]


def test_early_stopping_on_validation_subjects_carved_from_finetuning(tmp_path):
    """splits.val_from_finetune moves finetuning subjects to a validation split; finetuning
    with early stopping scores them, keeps the best weights and reports the best step."""
    over = merge(
        QUICK,
        {
            "splits": {"n_finetune": 3, "val_from_finetune": 1},
            "methods": ["supervised_pos"],
            "finetune": {
                "finetune": {"early_stopping": {"metric": "kappa", "mode": "max", "patience": 1}},
                "optim": {"min_steps": 12},
            },
        },
    )
    cfg = load_sleep_config("physionet2018-demo", over)
    res = run_demo(cfg, tmp_path, progress=False)
    splits = load_splits(tmp_path / "splits.json")
    assert len(splits["val"]) == 1 and len(splits["finetune"]) == 2
    assert not set(splits["val"]) & set(splits["finetune"])
    run = res["runs"]["finetune-supervised_pos"]
    assert run["best_step"] is not None and run["best_step"] <= run["steps"]
    assert (tmp_path / "finetune-supervised_pos" / "best.pt").exists()
    lines = (tmp_path / "finetune-supervised_pos" / "metrics.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("split") == "val" for line in lines)


def test_carving_must_leave_finetuning_subjects():
    with pytest.raises(ValueError, match="val_from_finetune"):
        load_sleep_config(
            "physionet2018-demo", {"splits": {"n_finetune": 2, "val_from_finetune": 2}}
        )


def test_demo_rows_are_selectable(tmp_path, capsys):
    """``--methods``: any of the sleep methods as rows (RP pretrains on ten-epoch windows);
    ``--seeds`` belongs to the ablation command."""
    out = tmp_path / "demo"
    args = ["demo", "sleep", "--quick", "--methods", "rp,mp3", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["results"]) == ["rp", "mp3"] and res["config"]["methods"] == ["rp", "mp3"]
    rp = torch.load(out / "pretrain-rp" / "final.pt", weights_only=True)["config"]
    assert rp["modality"]["extent"] == [30000] and rp["pretext"]["method"] == "rp"
    assert "RP (relative positioning, Banville)" in capsys.readouterr().out
    assert main(["demo", "sleep", "--quick", "--seeds", "0,1", "--out", str(out)]) == 2
    assert "relpos ablate sleep --grid methods" in capsys.readouterr().err
