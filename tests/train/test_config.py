"""Configs: YAML/JSON in and out, presets, overrides, model building, clear errors."""

from __future__ import annotations

import pytest

from relpos import PART, ViT
from relpos.sleep.experiment import SleepConfig, finetune_config, pretrain_config
from relpos.train.config import (
    TrainConfig,
    build_model,
    list_presets,
    load_config,
    load_preset,
    parse_overrides,
    save_config,
)
from relpos.vision.experiment import ImageConfig


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    cfg = TrainConfig.model_validate({"optim": {"lr": 3e-4}, "pretext": {"scale": "log"}})
    path = save_config(cfg, tmp_path / f"c{suffix}")
    assert load_config(path) == cfg


def test_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: invalid TrainConfig[\s\S]*optim.lrr"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope", SleepConfig)
    with pytest.raises(ValueError, match="extent"):
        TrainConfig.model_validate({"modality": {"extent": [10], "token_shape": [100]}})
    with pytest.raises(ValueError, match="key.path=value"):
        parse_overrides(["lr"])


def test_presets_load_and_build():
    assert {
        "physionet2018-demo",
        "physionet2018-paper",
        "mnist5k-demo",
        "cifar100-paper",
        "imagenet1k-paper",
    } <= set(list_presets())
    paper = load_preset("physionet2018-paper", SleepConfig)
    assert (
        paper.splits.n_test == 200
        and paper.splits.n_finetune == 10
        and paper.splits.n_pretrain == 1653
    )
    assert paper.pretrain.optim.epochs == 1000 and paper.finetune.optim.epochs == 100
    model = build_model(finetune_config(paper, "supervised_pos"))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 12.9e6) < 0.1e6
    pt = pretrain_config(paper, "part")
    assert pt.pretext.sampler.count == 40 and pt.pretext.sampler.length == 100
    for name in ("mnist5k-demo", "cifar100-paper", "imagenet1k-paper"):
        load_preset(name, ImageConfig)


def test_methods_configs():
    demo = load_preset(
        "physionet2018-demo", SleepConfig, parse_overrides(["pretrain.optim.epochs=2"])
    )
    assert demo.pretrain.optim.epochs == 2
    grid = pretrain_config(demo, "part_grid")
    assert grid.pretext.sampler.kind == "grid" and grid.pretext_sampler().num_spans((3000,)) == 30
    assert finetune_config(demo, "supervised_nopos").finetune.pos_embed == "none"
    assert finetune_config(demo, "part", "enc.safetensors").finetune.init == "enc.safetensors"
    assert finetune_config(demo, "supervised_pos").finetune.init is None
    with pytest.raises(ValueError, match="unknown method"):
        finetune_config(demo, "mae")
    with pytest.raises(ValueError, match="no pretraining"):
        pretrain_config(demo, "supervised_pos")


def test_build_model_variants():
    cfg = TrainConfig.model_validate(
        {
            "modality": {"channels": 3, "extent": [16, 16], "token_shape": [4, 4]},
            "encoder": {"preset": "vit_mini", "depth": 1},
            "pretext": {
                "sampler": {"kind": "boxes", "size": 4, "count": 9},
                "head": "mlp",
                "scale": "ratio",
            },
        }
    )
    model = build_model(cfg)
    assert isinstance(model, PART) and model.head.num_tokens == 9 and model.head.out_dim == 4
    cfg.task = "finetune"
    clf = build_model(cfg)
    assert isinstance(clf, ViT) and clf.pos_embed.shape[1] == 16 and clf.token_dim == 48
