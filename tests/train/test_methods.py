"""The one method registry (relpos.train.methods): every shipped method pretrains with the one
training loop and exports an encoder that finetunes through the same path; options are
validated with bounds; a user's method registers and trains the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import Field
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from relpos.core.pretext import PretextOutput, as_encoder
from relpos.core.spans import Spans
from relpos.train import methods, recipes
from relpos.train.api import train
from relpos.train.config import GridConfig, TrainConfig, build_model
from relpos.train.methods import Method, NoOptions, get_method, register_method

GRID_METHODS = ("part_grid", "mae", "mp3", "droppos", "rp")
PRETRAINING = ("part", *GRID_METHODS)


def _base(task: str, extent: int) -> TrainConfig:
    return TrainConfig.model_validate({
        "task": task,
        "modality": {"channels": 2, "extent": [extent], "token_shape": [20]},
        "encoder": {"preset": "vit_eeg_mini", "dim": 32, "depth": 1, "heads": 2},
        "pretext": {"sampler": {"kind": "windows", "length": 20, "count": 6}, "num_pairs": 8},
        "finetune": {"num_classes": 3},
        "optim": {"epochs": 1, "batch_size": 8, "max_steps": 2, "warmup_epochs": 0},
        "runtime": {"checkpoint_every": 0, "progress": False, "log_every": 1},
    })  # fmt: skip


def _pretrain_config(method: str) -> TrainConfig:
    """``method``'s pretraining on inputs of 4 tokens (its context times more for RP)."""
    k = get_method(method).context or 1
    return recipes.pretrain_config(
        _base("pretrain", 80), method, samplers={"grid": GridConfig()},
        modality={"extent": [80 * k]},
    )  # fmt: skip


def test_registry_lists_every_method_with_a_label():
    names = methods.list_methods()
    for name in (*PRETRAINING, "part_scale", "supervised_pos", "supervised_nopos"):
        assert name in names and methods.method_label(name) != name
    assert set(PRETRAINING) <= set(methods.pretraining_methods())
    assert "supervised_pos" not in methods.pretraining_methods()
    with pytest.raises(ValueError, match="unknown method 'byol'; known: part, "):
        get_method("byol")


@pytest.mark.parametrize(
    "method,pos_embed",
    [("part", "none"), ("mae", "sincos"), ("mp3", "none"), ("droppos", "sincos"), ("rp", "sincos")],
)
def test_each_method_configures_what_its_encoder_sees(method, pos_embed):
    cfg = _pretrain_config(method)
    assert cfg.pretext.method == method and cfg.pretext.pos_embed == pos_embed
    assert cfg.pretext.sampler.kind == ("windows" if method == "part" else "grid")
    if method != "part":
        assert cfg.pretext.pos_drop == 0 and cfg.pretext.pos_unit == 20.0


def test_options_are_validated_with_bounds_and_name_the_method():
    cfg = _pretrain_config("mae").model_dump(mode="json")
    for options, match in [
        ({"mask_ratio": 1.0}, "method 'mae'.*mask_ratio"),
        ({"decoder_depth": 0}, "decoder_depth"),
        ({"maskratio": 0.5}, "maskratio"),
    ]:
        cfg["pretext"]["options"] = options
        with pytest.raises(ValueError, match=match):
            TrainConfig.model_validate(cfg)
    cfg["pretext"]["options"] = {"mask_ratio": 0.5}
    assert TrainConfig.model_validate(cfg).pretext.options == {"mask_ratio": 0.5}
    cfg["pretext"].update(method="part", options={"mask_ratio": 0.5})
    with pytest.raises(ValueError, match="method 'part'"):
        TrainConfig.model_validate(cfg)
    cfg["pretext"].update(method="supervised_pos", options={})
    with pytest.raises(ValueError, match="unknown method 'supervised_pos'"):
        TrainConfig.model_validate(cfg)


def test_grid_methods_need_the_grid_sampler_and_rp_a_divisible_input():
    cfg = _pretrain_config("mp3")
    cfg.pretext.sampler = _base("pretrain", 80).pretext.sampler
    with pytest.raises(ValueError, match="method 'mp3' predicts grid positions"):
        build_model(cfg)
    rp = _pretrain_config("rp")
    rp.modality.extent = [20 * 15]
    with pytest.raises(ValueError, match="into 10 windows"):
        build_model(rp)


@pytest.mark.parametrize("method", PRETRAINING)
def test_every_exported_encoder_finetunes_through_the_same_path(method, tmp_path):
    pt = _pretrain_config(method)
    x = torch.randn(16, 2, pt.modality.extent[0])
    _, res = train(pt, TensorDataset(x), tmp_path / "pt")
    assert res.steps == 2 and res.encoder_path is not None
    exported = load_file(str(res.encoder_path))
    assert "blocks.0.attn.qkv.weight" in exported
    assert not any(k.startswith(("decoder.", "head.")) for k in exported)
    ft = recipes.finetune_config(_base("finetune", 80), method, res.encoder_path)
    ft.optim.lr, ft.optim.min_lr = 1e-12, 0.0  # the finetuned weights stay those loaded
    y = torch.randint(0, 3, (16,))
    model, fres = train(ft, TensorDataset(torch.randn(16, 2, 80), y), tmp_path / "ft")
    assert fres.steps == 2
    loaded = model.state_dict()["blocks.0.attn.qkv.weight"]
    assert torch.allclose(loaded, exported["blocks.0.attn.qkv.weight"], atol=1e-6)


# ---------------------------------------------------------------------- a user's method
class MeanOptions(NoOptions):
    weight: float = Field(default=1.0, gt=0.0, le=10.0)


class TokenMean(nn.Module):
    """A user's pretext: regress each token's mean value from the encoder's features."""

    def __init__(self, encoder: nn.Module, weight: float) -> None:
        super().__init__()
        self.encoder, self.weight = encoder, weight
        self.head = nn.Linear(as_encoder(encoder).dim, 1)

    def forward(
        self, tokens: torch.Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        feats = as_encoder(self.encoder).forward_features(tokens, spans)[:, 1:]
        target = tokens.flatten(2).mean(-1)
        loss = self.weight * ((self.head(feats).squeeze(-1) - target) ** 2).mean()
        return PretextOutput(loss, {"mse": loss.detach()})


def _build_token_mean(cfg: TrainConfig, encoder: nn.Module) -> nn.Module:
    opts = get_method("token_mean").parse_options(cfg.pretext.options)
    assert isinstance(opts, MeanOptions)
    return TokenMean(encoder, opts.weight)


def test_a_users_method_registers_trains_and_exports_the_same_way(tmp_path, monkeypatch):
    monkeypatch.setattr(methods, "_METHODS", dict(methods._METHODS))  # registered for this test
    monkeypatch.setattr(methods, "METHOD_LABELS", dict(methods.METHOD_LABELS))
    register_method(Method(
        "token_mean", "token mean regression", sampler="grid", build=_build_token_mean,
        options=MeanOptions,
    ))  # fmt: skip
    pt = recipes.pretrain_config(
        _base("pretrain", 80), "token_mean", samplers={"grid": GridConfig()}
    )
    pt.pretext.options = {"weight": 2.0}
    assert isinstance(build_model(pt), TokenMean)
    x = torch.randn(16, 2, 80)
    model, res = train(pt, TensorDataset(x), tmp_path / "pt")
    assert isinstance(model, TokenMean) and res.steps == 2 and "mse" in res.last_metrics
    ft = recipes.finetune_config(_base("finetune", 80), "token_mean", res.encoder_path)
    _, fres = train(ft, TensorDataset(x, torch.randint(0, 3, (16,))), tmp_path / "ft")
    assert fres.steps == 2
    with pytest.raises(ValueError, match="method 'token_mean': weight: .* less than or equal"):
        pt.pretext.options = {"weight": 20.0}


def test_method_configs_round_trip_through_a_checkpoint(tmp_path):
    from relpos.train.checkpoint import load_model

    pt = _pretrain_config("droppos")
    pt.pretext.options = {"sigma": 0.5, "attentive": 0.2}
    _, res = train(pt, TensorDataset(torch.randn(8, 2, 80)), tmp_path / "pt")
    model, cfg = load_model(Path(res.out_dir) / "final.pt")
    assert cfg.pretext.method == "droppos" and cfg.pretext.options == pt.pretext.options
    assert type(model).__name__ == "DropPos" and model.sigma == 0.5 and model.attentive == 0.2
