"""The image experiment on a tiny budget: PART / PART-grid / PART+scale, few-label finetuning,
linear probes, pretext errors, capability figures; the head ablation."""

from __future__ import annotations

import json

import pytest
import torch

from relpos.cli import main
from relpos.train.config import merge
from relpos.vision.experiment import QUICK, finetune_config, load_image_config, pretrain_config


def test_image_demo_quick(tmp_path, capsys):
    assert main(["demo", "image", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["accuracy"]) == {
        "part", "part_grid", "part_scale", "supervised_pos", "supervised_nopos",
        "part+linear_probe", "part_grid+linear_probe",
    }  # fmt: skip
    for e in res["pretext"].values():
        assert e["euclidean"] > 0 and e["baseline_euclidean"] > 0
    assert "s_x" in res["pretext"]["part_scale"]  # the 4-target variant
    for method in ("part", "part_scale"):
        for png in res["analysis"][method]["figures"]:
            assert (tmp_path / png.split(str(tmp_path) + "/")[-1]).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "test accuracy by labels per class" in out and "Euclidean error" in out


def test_method_configs():
    cfg = load_image_config("mnist5k-demo")
    modality = {"channels": 1, "extent": [28, 28]}
    scale = pretrain_config(cfg, "part_scale", modality)
    assert scale.pretext.scale == "ratio" and scale.pretext.sampler.height == (2.0, 8.0)
    assert pretrain_config(cfg, "part_grid", modality).pretext_sampler().num_spans((28, 28)) == 49
    ft = finetune_config(cfg, "supervised_nopos", 100, modality, None, probe=False)
    assert ft.finetune.pos_embed == "none" and ft.optim.max_steps == cfg.finetune_steps
    assert ft.optim.epochs * (100 // ft.optim.batch_size) >= cfg.finetune_steps
    probe = finetune_config(cfg, "part", 500, modality, "x.safetensors", probe=True)
    assert probe.finetune.linear_probe and probe.finetune.init == "x.safetensors"
    with pytest.raises(
        ValueError, match="unknown method .rp.; known: part, part_grid, part_scale, mae"
    ):
        pretrain_config(cfg, "rp", modality)  # a 1-D method
    for method, pos in (("mae", "sincos"), ("mp3", "none"), ("droppos", "sincos")):
        grid = pretrain_config(cfg, method, modality)
        assert grid.pretext.method == method and grid.pretext.pos_embed == pos
        assert grid.pretext_sampler().num_spans((28, 28)) == 49 and grid.pretext.pos_unit == 4.0


def test_image_methods_over_seeds(tmp_path, capsys):
    """``--methods ... --seeds 0,1``: one run per seed, accuracy mean ± sd, every pretext
    against its chance level, wall time per row; finished seeds are read back."""
    args = ["demo", "image", "--quick", "--methods", "mae,mp3,droppos,supervised_pos",
            "--seeds", "0,1", "--set", "linear_probe=[]", "--set", "figures=false",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    rows = res["summary"]["rows"]
    assert list(rows) == ["mae", "mp3", "droppos", "supervised_pos"]
    for key in ("mae", "mp3", "droppos"):
        assert rows[key]["seeds"] == 2 and rows[key]["wall_s"] > 0
        assert rows[key]["accuracy_sd"]["5"] >= 0
    assert rows["mae"]["pretext"]["name"] == "reconstruction MSE"
    assert rows["mp3"]["pretext"]["chance"] == pytest.approx(1 / 16)  # 4 x 4 cells of 2 x 2
    seeds = [json.loads((tmp_path / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    assert seeds[0]["config"]["pretrain"]["runtime"]["seed"] == 0
    assert seeds[1]["config"]["finetune"]["runtime"]["seed"] == 1
    out = capsys.readouterr().out
    assert "mean ± sd over seeds [0, 1]" in out and "position accuracy" in out
    before = (tmp_path / "seed0" / "results.json").stat().st_mtime_ns
    assert main(args) == 0  # read back, not rerun
    assert (tmp_path / "seed0" / "results.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_head_ablation_quick(tmp_path, capsys):
    overrides = merge(QUICK, {"dataset": {"max_train": 200}})
    assert main(["demo", "heads", "--quick", "--out", str(tmp_path), "--no-progress",
                 "--set", f"dataset.max_train={overrides['dataset']['max_train']}"]) == 0  # fmt: skip
    res = json.loads((tmp_path / "heads.json").read_text())
    assert set(res["rows"]) == {"cross_attention", "pairwise_mlp", "mlp"}
    params = {h: r["head_parameters"] for h, r in res["rows"].items()}
    assert params["mlp"] > params["cross_attention"]
    assert "Head ablation" in capsys.readouterr().out
    assert torch.isfinite(torch.tensor([r["accuracy"] for r in res["rows"].values()])).all()
