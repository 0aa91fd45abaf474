"""The spectrogram modality on the EEG store: the preset, the checks, the ablation rows and the
side-by-side demo (pretrain, finetune and evaluate on spectrograms beside the raw signal)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from relpos.cli import main
from relpos.sleep.ablate import SPECTROGRAM_GRID, AblationConfig, variant_config
from relpos.sleep.experiment import finetune_config, load_sleep_config, pretrain_config
from relpos.sleep.spectrogram import modality_fields, with_spectrogram
from relpos.train.api import predict, train

TINY = {
    s: {
        "encoder": {"dim": 16, "depth": 1, "heads": 2},
        "optim": {"epochs": 1, "max_steps": 2, "batch_size": 4, "warmup_epochs": 0.0},
        "runtime": {"progress": False, "checkpoint_every": 0, "log_every": 1, "device": "cpu"},
    }
    for s in ("pretrain", "finetune")
}


def test_preset_is_the_demo_on_spectrograms():
    demo = load_sleep_config("physionet2018-demo")
    preset = load_sleep_config("physionet2018-spectrogram").model_dump(mode="json")
    twin = with_spectrogram(demo).model_dump(mode="json")
    assert {**preset, "name": ""} == {**twin, "name": ""}
    m = load_sleep_config("physionet2018-spectrogram").pretrain.modality
    assert (m.channels, m.extent, m.token_shape) == (6, [32, 121], [8, 8])
    strips = modality_fields("strips")
    assert (strips["channels"], strips["extent"], strips["token_shape"]) == (192, [121], [4])


def test_store_checks_name_the_section_and_shapes():
    with pytest.raises(ValueError, match=r"pretrain.modality: the store's epochs \(6 signals, "
                       r"3000 samples\) become \[6, 32, 121\] .* say \[6, 32, 120\]"):  # fmt: skip
        load_sleep_config(
            "physionet2018-spectrogram", {"pretrain": {"modality": {"extent": [32, 120]}}}
        )
    with pytest.raises(ValueError, match="options.fs is 128.0 Hz but the store's epochs are at"):
        load_sleep_config(
            "physionet2018-spectrogram", {"finetune": {"modality": {"options": {"fs": 128.0}}}}
        )
    with pytest.raises(ValueError, match="finetune.modality.channels is 3 but prepare.channels"):
        load_sleep_config("physionet2018-demo", {"finetune": {"modality": {"channels": 3}}})


def test_context_inputs_take_the_transformed_extent():
    cfg = load_sleep_config("physionet2018-spectrogram", {"context": {"pretrain": 3}})
    assert pretrain_config(cfg, "part").modality.extent == [32, 1 + 9000 // 25]
    strips = with_spectrogram(load_sleep_config("physionet2018-demo"), "strips")
    rp = pretrain_config(strips, "rp")  # RP: ten epochs end to end, 1-D strips
    assert rp.modality.extent == [1 + 30000 // 25] and rp.modality.channels == 192


def test_ablation_rows_replace_the_sampler_and_keep_the_budget():
    base = load_sleep_config("physionet2018-demo")
    ab = AblationConfig(variants=SPECTROGRAM_GRID)
    cfgs = {v.name: variant_config(base, ab, v, 1) for v in SPECTROGRAM_GRID}
    boxes, strips = cfgs["part-spectrogram"], cfgs["part-spectrogram-strips"]
    assert boxes.pretrain.pretext.sampler.kind == "boxes" and boxes.pretrain.pretext.pos_unit == 8
    assert strips.pretrain.pretext.sampler.kind == "windows" and strips.pretrain.modality.ndim == 1
    assert cfgs["supervised-spectrogram"].finetune.modality.name == "spectrogram"
    steps = {c.pretrain.optim.max_steps for c in cfgs.values()}
    assert steps == {ab.budget["pretrain"]["optim"]["max_steps"]}
    for c in cfgs.values():
        assert c.pretrain.pretext.pos_drop == (
            0.0 if c.pretrain.pretext.pos_embed == "none" else 0.2
        )


@pytest.mark.parametrize("spans", ["boxes", "strips"])
def test_pretrain_finetune_predict_on_spectrograms(spans, tmp_path):
    cfg = with_spectrogram(load_sleep_config("physionet2018-demo", TINY), spans)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 6, 3000, generator=g), torch.randint(0, 5, (8,), generator=g)
    _, pre = train(pretrain_config(cfg, "part"), TensorDataset(x), tmp_path / "pt")
    ft = finetune_config(cfg, "part", pre.encoder_path)
    model, _ = train(ft, TensorDataset(x, y), tmp_path / "ft")
    out = predict(model, ft, TensorDataset(x, y), batch_size=4)
    assert out["prob"].shape == (8, 5)


@pytest.mark.slow
def test_demo_side_by_side_and_evaluate(tmp_path):
    """``relpos demo sleep --quick --modality spectrogram``: both inputs on one split, one
    table; ``relpos evaluate`` reads the spectrogram checkpoint."""
    out = tmp_path / "demo"
    assert main(["demo", "sleep", "--quick", "--modality", "spectrogram", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]) == set(res["spectrogram_results"]) == {"part", "supervised_pos"}
    assert "PART, spectrogram (boxes)" in res["table"] and "PART, raw signal" in res["table"]
    ckpt = out / "spectrogram" / "finetune-part" / "final.pt"
    assert main(["evaluate", str(ckpt), "--store", str(out / "store"), "--splits",
                 str(out / "splits.json"), "--no-plots"]) == 0  # fmt: skip
