"""Configs: YAML/JSON in and out, presets, overrides, model building, clear errors."""

from __future__ import annotations

import pytest
import torch

from relpos import PART, ViT
from relpos.sleep.experiment import SleepConfig, finetune_config, pretrain_config
from relpos.train.config import (
    FinetuneConfig,
    PresetSections,
    TrainConfig,
    WindowsConfig,
    build_modality,
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
        finetune_config(demo, "part_scale")  # an image method
    with pytest.raises(ValueError, match="no pretraining"):
        pretrain_config(demo, "supervised_pos")


def test_build_model_variants():
    cfg = TrainConfig.model_validate(
        {
            "modality": {"name": "image", "channels": 3, "extent": [16, 16], "token_shape": [4, 4]},
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


# ---------------------------------------------------------------------- names checked at load
def _image(**extra):
    return {
        "modality": {"name": "image", "channels": 1, "extent": [32, 32], "token_shape": [4, 4]},
        **extra,
    }


def test_sampler_axes_must_match_the_modality():
    with pytest.raises(
        ValueError,
        match=r"pretext.sampler 'windows' draws 1-D spans but modality 'image' has 2 axes",
    ):
        TrainConfig.model_validate(_image())
    with pytest.raises(
        ValueError, match=r"finetune.grid 'grid' draws 1-D spans but modality 'image'"
    ):
        TrainConfig.model_validate(_image(task="finetune", finetune={"grid": {"token_shape": [4]}}))
    with pytest.raises(ValueError, match="modality 'signal' has 1 axes; extent"):
        TrainConfig.model_validate({"modality": {"extent": [32, 32], "token_shape": [4, 4]}})
    cfg = TrainConfig.model_validate(_image(pretext={"sampler": {"kind": "boxes", "size": 4}}))
    assert cfg.pretext_sampler().ndim == 2
    with pytest.raises(ValueError, match="'windows' draws 1-D spans"):
        cfg.modality = cfg.modality.model_copy()  # re-checked on assignment
        cfg.pretext = cfg.pretext.model_copy(update={"sampler": WindowsConfig()})
        cfg.task = "pretrain"
    # finetuning sections keep the default pretext sampler: only the grid is checked
    TrainConfig.model_validate(_image(task="finetune"))


def test_unknown_names_list_the_known_ones():
    cases = [
        ({"modality": {"name": "audio"}}, r"unknown modality 'audio'; known: .*image, signal"),
        ({"pretext": {"sampler": {"kind": "rings"}}}, r"unknown sampler 'rings'; known: .*boxes"),
        ({"pretext": {"sampler": {"count": 4}}}, r"a sampler needs a kind; known: .*boxes"),
        (
            {"pretext": {"head": "transformer"}},
            r"unknown head 'transformer'; known: cross_attention",
        ),
        (
            {"encoder": {"preset": "vit_huge"}},
            r"unknown encoder preset 'vit_huge'; known: vit_base",
        ),
        ({"modality": {"options": {"colour": 1}}}, r"modality 'signal': bad options"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            TrainConfig.model_validate(data)


def test_numbers_are_bounded():
    for data in (
        {"pretext": {"sampler": {"kind": "windows", "count": 1}}},
        {"optim": {"lr": 0}},
        {"modality": {"channels": 0}},
        {"finetune": {"label_smoothing": 1.0}},
        {"pretext": {"pos_drop": 1.5}},
    ):
        with pytest.raises(ValueError):
            TrainConfig.model_validate(data)


def test_finetune_augment_is_not_a_silent_field():
    # configs and checkpoints written when the (never applied) field existed still load
    assert TrainConfig.model_validate({"finetune": {"augment": []}}).finetune == FinetuneConfig()
    with pytest.raises(ValueError, match="finetune.augment is not a TrainConfig field"):
        TrainConfig.model_validate({"finetune": {"augment": ["flip"]}})
    with pytest.raises(ValueError, match="finetune.augment"):
        load_preset(
            "physionet2018-demo", SleepConfig, parse_overrides(["finetune.finetune.augment=[flip]"])
        )


def test_a_registered_sampler_needs_no_config_edit(tmp_path):
    from typing import Literal

    from relpos import RandomSpans, SamplerConfig, register_sampler

    class DiagonalConfig(SamplerConfig):
        kind: Literal["diagonal_test"] = "diagonal_test"
        count: int = 5

        def build(self, token_shape):
            return RandomSpans(tuple(float(t) for t in token_shape), self.count)

        def axes(self):
            return 2

    register_sampler("diagonal_test", DiagonalConfig)
    cfg = TrainConfig.model_validate(
        _image(pretext={"sampler": {"kind": "diagonal_test", "count": 7}})
    )
    assert isinstance(cfg.pretext.sampler, DiagonalConfig)
    assert cfg.pretext_sampler().num_spans((32, 32)) == 7
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg
    with pytest.raises(ValueError, match="count"):
        TrainConfig.model_validate(
            _image(pretext={"sampler": {"kind": "diagonal_test", "count": "x"}})
        )
    with pytest.raises(ValueError, match="must subclass SamplerConfig"):
        register_sampler("nope", dict)  # type: ignore[arg-type]


def test_generic_samplers_and_the_modality_object():
    spans = TrainConfig.model_validate(_image(pretext={"sampler": {"kind": "spans", "count": 6}}))
    assert spans.pretext_sampler().num_spans((32, 32)) == 6  # size: the token shape
    video = {"name": "video", "channels": 3, "extent": [4, 16, 16], "token_shape": [2, 4, 4]}
    cuboids = TrainConfig.model_validate(
        {"modality": video, "pretext": {"sampler": {"kind": "cuboids", "count": 8}}}
    )
    assert cuboids.modality_object().sampler.num_spans((4, 16, 16)) == 8
    own = TrainConfig.model_validate(
        {"modality": video, "pretext": {"sampler": {"kind": "modality"}}}
    )
    assert own.pretext_sampler().ndim == 3
    spec = {
        "name": "spectrogram",
        "channels": 2,
        "extent": [9, 17],
        "token_shape": [3, 4],
        "options": {"n_fft": 16, "hop": 4},
    }
    cfg = TrainConfig.model_validate(
        {"modality": spec, "pretext": {"sampler": {"kind": "boxes", "size": [3, 4], "count": 6}}}
    )
    m = build_modality(cfg)
    assert m.transform is not None and m.channels == 2 and m.token_shape == (3, 4)
    assert m.prepare(torch.randn(1, 2, 64)).shape == (1, 2, 9, 17)
    assert TrainConfig().modality_object().transform is None


def test_preset_sections_read_any_experiment_preset():
    for name in ("physionet2018-demo", "mnist5k-demo"):
        sections = load_preset(name, PresetSections)
        assert sections.pretrain.task == "pretrain" and sections.part_grid.kind == "grid"


RHYTHM = {
    "modality": {
        "channels": 2,
        "extent": [600],
        "token_shape": [40],
        "tokenizer": {"oversample": 4, "band": 8, "standardize": True},
    },
    "pretext": {
        "sampler": {"kind": "windows", "length": 40, "count": 8, "scale": [0.5, 2.0]},
        "scale": "log",
    },
}


def test_tokenizer_and_multiscale_windows_round_trip(tmp_path):
    from relpos.core.spans import target_names
    from relpos.core.tokenizer import Tokenizer, TokenizerConfig

    cfg = TrainConfig.model_validate(RHYTHM)
    for suffix in (".yaml", ".json"):
        assert load_config(save_config(cfg, tmp_path / f"c{suffix}")) == cfg
    assert "band: 8.0" in (tmp_path / "c.yaml").read_text()
    m = cfg.modality_object()
    assert m.tokenizer == Tokenizer((40,), 4, 8.0, standardize=True)
    spans = cfg.pretext_sampler()(600, 2, generator=torch.Generator().manual_seed(0))
    assert 20 - 1e-4 <= spans.size.min() and spans.size.max() <= 80 + 1e-4
    assert spans.size.std() > 5  # multi-scale
    assert target_names(1, cfg.pretext.scale) == ("t", "s_t")
    # a config (or checkpoint) written before the field existed loads with the plain resize
    old = TrainConfig().model_dump(mode="json")
    del old["modality"]["tokenizer"], old["pretext"]["sampler"]["scale"]
    loaded = TrainConfig.model_validate(old)
    assert loaded.modality.tokenizer == TokenizerConfig()
    assert loaded.modality_object().tokenizer == Tokenizer((100,))
    assert loaded.modality_object().tokenizer.is_plain


def test_tokenizer_and_scale_errors_name_the_field():
    bad_band = {**RHYTHM["modality"], "tokenizer": {"band": 20}}  # 20 >= 40 / 2
    with pytest.raises(ValueError, match="band"):
        TrainConfig.model_validate({"modality": bad_band})
    with pytest.raises(ValueError, match="oversample"):
        TrainConfig.model_validate({"modality": {"tokenizer": {"oversample": 32, "band": 4}}})
    with pytest.raises(ValueError, match="scale needs a fixed length"):
        WindowsConfig(length=(50, 200), scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="min > max"):
        WindowsConfig(scale=(2.0, 0.5))


def test_tasks_cut_tokens_with_the_configured_tokenizer():
    from types import SimpleNamespace

    from relpos.train.tasks import FinetuneTask, PretrainTask

    class Capture(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, tokens, spans, generator=None):
            self.tokens, self.spans = tokens, spans
            return SimpleNamespace(loss=self.w, errors={})

    x = torch.randn(3, 2, 600, generator=torch.Generator().manual_seed(0))
    tok = TrainConfig.model_validate(RHYTHM).modality_object().tokenizer
    assert tok is not None
    fine = FinetuneTask(TrainConfig.model_validate({**RHYTHM, "task": "finetune"}))
    model = Capture()
    fine.logits(model, x)
    assert model.tokens.shape == (3, 15, 2, 40)
    assert torch.equal(model.tokens, tok(x, model.spans))
    pre = PretrainTask(TrainConfig.model_validate(RHYTHM))
    pre(model, x, torch.Generator().manual_seed(1))
    assert model.tokens.shape == (3, 8, 2, 40)
    assert torch.equal(model.tokens, tok(x, model.spans))
    assert model.tokens.mean(-1).abs().max() < 1e-5


def test_config_wires_the_options(tmp_path):
    """pretext.score / loss and encoder.embed reach PART, and a conv encoder exports and
    reloads."""
    from relpos.core.extract import extract
    from relpos.core.part import PART
    from relpos.core.samplers import RandomWindows
    from relpos.train.checkpoint import export_encoder, load_encoder
    from relpos.train.config import TrainConfig, build_model

    g = torch.Generator().manual_seed(0)
    spans = RandomWindows(10, 6)(200, 2, generator=g)
    tokens = extract(torch.randn(2, 2, 200, generator=g), spans, 10)

    cfg = TrainConfig.model_validate(
        {
            "modality": {"channels": 2, "extent": [200], "token_shape": [10]},
            "encoder": {"preset": "vit_mini", "dim": 32, "depth": 1, "heads": 2, "embed": "conv"},
            "pretext": {
                "pos_embed": "sincos",
                "pos_drop": 0.2,
                "score": "dropped_either",
                "loss": "gaussian_nll",
                "num_pairs": 12,
            },
        }
    )
    model = build_model(cfg)
    assert isinstance(model, PART) and (model.score, model.loss) == (
        "dropped_either",
        "gaussian_nll",
    )
    assert model.head.out.out_features == 2 and model.encoder.embed_type == "conv"
    out = model(tokens, spans, generator=torch.Generator().manual_seed(0))
    assert out.logvar.shape == out.pred.shape == (2, 12, 1) and "nll" in out.errors
    # the exported conv encoder rebuilds from its JSON config
    path = export_encoder(model, tmp_path / "encoder.safetensors")
    again = load_encoder(path)
    assert again.embed_type == "conv"
    with torch.no_grad():
        torch.testing.assert_close(
            again.eval().forward_features(tokens, spans),
            model.encoder.eval().forward_features(tokens, spans),
        )
    ft = build_model(cfg.model_copy(update={"task": "finetune"}))
    assert isinstance(ft, ViT) and ft.embed_type == "conv"
    with pytest.raises(ValueError, match="needs pretext.pos_embed='sincos'"):
        TrainConfig.model_validate({"pretext": {"score": "dropped_target"}})


def test_merge_replaces_a_mapping_of_another_kind():
    """``--set pretext.sampler.kind=boxes`` on a windows preset: the windows' fields go."""
    from relpos.train.config import merge

    base = {"sampler": {"kind": "windows", "length": 100.0, "count": 40}, "lr": 1}
    assert merge(base, {"sampler": {"kind": "boxes"}}) == {"sampler": {"kind": "boxes"}, "lr": 1}
    assert merge(base, {"sampler": {"count": 8}})["sampler"] == {
        "kind": "windows", "length": 100.0, "count": 8,
    }  # fmt: skip
    assert merge(base, {"sampler": {"kind": "windows", "count": 8}})["sampler"]["length"] == 100.0
