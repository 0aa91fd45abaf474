"""Issue 12, items 2 and 6: bad numbers and unknown names fail when the config loads.

Every count, size, rate and step field is bounded (``ge=1`` where 0 makes no sense, an upper
bound where a huge value is surely a typo); method, head, modality, sampler, preset, dataset,
augmentation and device names are checked against their registries, and the error lists the
known names. A pydantic error names the field (``errors()[0]["loc"]``) and becomes one line in
the CLI's formatter (:func:`relpos.errors.one_line`); nothing is trained or written before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from relpos.core.modality import MODALITIES
from relpos.core.sampler_configs import SAMPLERS
from relpos.errors import one_line
from relpos.nn.heads import HEADS
from relpos.nn.vit import MODELS
from relpos.sleep.ablate import AblationConfig, Variant, run_ablation
from relpos.sleep.experiment import SleepConfig, load_sleep_config
from relpos.train.config import (
    OptimConfig,
    TrainConfig,
    list_presets,
    load_config,
    load_preset,
    merge,
    parse_overrides,
)
from relpos.train.methods import pretraining_methods
from relpos.train.schedule import budget
from relpos.vision.experiment import ImageConfig, load_image_config

BASE = TrainConfig().model_dump(mode="json")


def _train(*overrides: str) -> TrainConfig:
    return TrainConfig.model_validate(merge(BASE, parse_overrides(list(overrides))))


# ---------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("override", "loc", "bound"),
    [
        ("optim.epochs=0", ("optim", "epochs"), "greater than or equal to 1"),
        ("optim.epochs=-1", ("optim", "epochs"), "greater than or equal to 1"),
        ("optim.epochs=10000000000", ("optim", "epochs"), "less than or equal to"),
        ("optim.max_steps=0", ("optim", "max_steps"), "greater than or equal to 1"),
        ("optim.batch_size=-4", ("optim", "batch_size"), "greater than or equal to 1"),
        ("optim.batch_size=0", ("optim", "batch_size"), "greater than or equal to 1"),
        ("optim.batch_size=2000000", ("optim", "batch_size"), "less than or equal to 1000000"),
        ("optim.accum_steps=0", ("optim", "accum_steps"), "greater than or equal to 1"),
        ("optim.lr=0", ("optim", "lr"), "greater than 0"),
        ("optim.lr=.nan", ("optim", "lr"), "finite"),
        ("optim.warmup_epochs=-1", ("optim", "warmup_epochs"), "greater than or equal to 0"),
        ("optim.betas=[0.9,1.0]", ("optim", "betas", 1), "less than 1"),
        ("runtime.log_every=0", ("runtime", "log_every"), "greater than or equal to 1"),
        ("runtime.keep_checkpoints=0", ("runtime", "keep_checkpoints"), "greater than or equal"),
        ("runtime.num_workers=-1", ("runtime", "num_workers"), "greater than or equal to 0"),
        ("runtime.seed=-1", ("runtime", "seed"), "greater than or equal to 0"),
        ("encoder.dim=0", ("encoder", "dim"), "greater than or equal to 1"),
        ("encoder.dim=100000", ("encoder", "dim"), "less than or equal to 65536"),
        ("encoder.depth=0", ("encoder", "depth"), "greater than or equal to 1"),
        ("encoder.heads=0", ("encoder", "heads"), "greater than or equal to 1"),
        ("encoder.drop=1.0", ("encoder", "drop"), "less than 1"),
        ("encoder.mlp_ratio=0", ("encoder", "mlp_ratio"), "greater than 0"),
        ("pretext.num_pairs=0", ("pretext", "num_pairs"), "greater than or equal to 1"),
        ("pretext.pos_drop=1.0", ("pretext", "pos_drop"), "less than 1"),
        ("pretext.pos_unit=.inf", ("pretext", "pos_unit"), "finite"),
        ("pretext.sampler.count=1", ("pretext", "sampler", "count"), "greater than or equal to 2"),
        ("pretext.sampler.scale=[2.0,0.5]", ("pretext", "sampler", "scale"), "min > max"),
        ("finetune.num_classes=0", ("finetune", "num_classes"), "greater than or equal to 1"),
        ("modality.channels=0", ("modality", "channels"), "greater than or equal to 1"),
        ("modality.extent=[]", ("modality", "extent"), "at least 1 item"),
        ("modality.token_shape=[2.5]", ("modality", "token_shape", 0), "fractional part"),
    ],
)
def test_bad_number_names_the_field_and_the_bound(override, loc, bound):
    with pytest.raises(ValidationError) as info:
        _train(override)
    first = info.value.errors()[0]
    assert first["loc"] == loc
    assert bound in first["msg"]
    line = one_line(info.value)
    assert "\n" not in line and line.startswith(".".join(str(p) for p in loc if isinstance(p, str)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["encoder.heads=3"], "encoder.dim (128) must be divisible by encoder.heads (3)"),
        (["encoder.dim=30", "encoder.heads=4"], "encoder.dim (30) must be divisible"),
        (
            ["pretext.sampler.length=5000"],
            "pretext.sampler: RandomWindows: length 5000.0 is larger",
        ),
        (["finetune.grid.size=[4000]"], "finetune.grid: Grid: span size (4000,) is larger"),
    ],
)
def test_inconsistent_sections_fail_at_load(overrides, message):
    """A preset's heads that do not divide the width, a sampler larger than the input: errors
    at load that name the section, not a size mismatch at the first batch."""
    with pytest.raises(ValidationError) as info:
        _train(*overrides)
    assert message in one_line(info.value) and "\n" not in one_line(info.value)


def test_load_time_sampler_check_leaves_the_global_random_state_alone():
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _train("pretext.sampler.length=50", "pretext.sampler.count=8")
    assert torch.equal(torch.rand(3), expected)


@settings(max_examples=60, deadline=None)
@given(
    epochs=st.integers(1, 1_000_000_000),
    max_steps=st.none() | st.integers(1, 1_000_000_000),
    min_steps=st.none() | st.integers(1, 10_000_000),
    examples=st.integers(1, 10_000),
    batch=st.integers(1, 64),
    accum=st.integers(1, 8),
)
def test_a_valid_budget_never_has_zero_steps(epochs, max_steps, min_steps, examples, batch, accum):
    """With every bound in place, a dataset that fills one step gives at least one step."""

    class Sampler:
        def epoch_length(self, epoch: int) -> int:
            return examples

    opt = OptimConfig(
        epochs=epochs, max_steps=max_steps, min_steps=min_steps, batch_size=batch,
        accum_steps=accum,
    )  # fmt: skip
    if examples < batch * accum:
        with pytest.raises(ValueError, match="dataset too small"):
            budget(opt, Sampler())  # type: ignore[arg-type]
        return
    steps_per_epoch, total, _, _ = budget(opt, Sampler())  # type: ignore[arg-type]
    assert steps_per_epoch >= 1 and total >= 1


# ---------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("override", "message", "known"),
    [
        ("pretext.method=part_gird", "unknown method 'part_gird'", pretraining_methods),
        ("pretext.head=mlpp", "unknown head 'mlpp'", HEADS.names),
        ("modality.name=eeg", "unknown modality 'eeg'", MODALITIES.names),
        ("pretext.sampler.kind=window", "unknown sampler 'window'", SAMPLERS.names),
        ("encoder.preset=vit", "unknown encoder preset 'vit'", MODELS.names),
        ("runtime.device=gpu", "unknown device 'gpu'", lambda: ["auto", "cpu", "cuda"]),
    ],
)
def test_unknown_name_lists_the_known_ones(override, message, known):
    """The names known when the check runs (other tests may register more)."""
    with pytest.raises(ValidationError) as info:
        _train(override)
    line = one_line(info.value)
    assert f"{message}; known: {', '.join(known())}" in line and "\n" not in line


def test_known_devices_load():
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert _train(f"runtime.device={device}").runtime.device == device


def test_unknown_preset_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; shipped presets: cifar100"):
        load_preset("nope", TrainConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {epochs: 0}\n")
    with pytest.raises(ValueError) as info:
        load_config(bad)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{bad}: invalid TrainConfig: optim.epochs")
    assert isinstance(info.value.__cause__, ValidationError)  # the structured errors stay


def test_unparsable_config_and_override_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {epochs: [1,\n")
    with pytest.raises(ValueError, match="cannot parse config") as info:
        load_config(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="binary.yaml: cannot parse config"):
        load_config(binary)
    with pytest.raises(ValueError, match=r"override 'optim.lr=\[1,': cannot parse") as info:
        parse_overrides(["optim.lr=[1,"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="'optim' was set to a value, not a section"):
        parse_overrides(["optim=3", "optim.lr=1"])
    with pytest.raises(ValueError, match="must look like key.path=value"):
        parse_overrides(["optim..lr=1"])


# ---------------------------------------------------------------------- experiments
def _load_error(load: Any, preset: str, *overrides: str) -> str:
    """The one-line error of ``load(preset, overrides)``, a ValidationError underneath."""
    with pytest.raises(ValueError) as info:
        load(preset, parse_overrides(list(overrides)))
    text = str(info.value)
    assert "\n" not in text and isinstance(info.value.__cause__, ValidationError)
    return text


def _sleep_error(*overrides: str) -> str:
    return _load_error(load_sleep_config, "physionet2018-demo", *overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[part,part_gird]", "methods: unknown method 'part_gird'; known: part, part_grid"),
        ("methods=[part,part]", "methods: methods repeat: 'part'"),
        ("methods=[]", "methods: List should have at least 1 item"),
        ("prepare.channels=[F3-M3]", "unknown channel 'F3-M3'; known: F3-M2, F4-M1"),
        ("synth.records=-2", "synth.records: Input should be greater than or equal to 1"),
        ("synth.jobs=0", "synth.jobs: Input should be greater than or equal to 1"),
        ("prepare.jobs=-3", "prepare.jobs: Input should be greater than or equal to 1"),
        ("splits.n_test=0", "splits.n_test: Input should be greater than or equal to 1"),
        ("splits.n_finetune=0", "splits.n_finetune: Input should be greater than or equal to 1"),
        ("eval_batch_size=0", "eval_batch_size: Input should be greater than or equal to 1"),
        ("pretrain.optim.epochs=0", "pretrain.optim.epochs: Input should be greater than"),
        ("pretrain.modality.channels=7", "pretrain.modality.channels is 7 but prepare.channels"),
        ("finetune.finetune.num_classes=4", "the sleep stages are 5 (W, N1, N2, N3, R)"),
    ],
)
def test_sleep_config_checks_numbers_and_names(override, message):
    assert message in _sleep_error(override)


def _image_error(*overrides: str) -> str:
    return _load_error(load_image_config, "mnist5k-demo", *overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # the issue's typo: it used to run and print a fake accuracy row
        ("methods=[part,mae,mp3,part_gird]", "methods: unknown method 'part_gird'; known: part"),
        ("methods=[part,rp]", "unknown method 'rp'; known: part, part_grid, part_scale, mae"),
        ("linear_probe=[mae]", "linear_probe: unknown method 'mae'; known: part, part_grid"),
        ("dataset.name=mnist", "dataset.name: unknown image dataset 'mnist'; known: cifar10"),
        ("dataset.fallback=digitz", "unknown image dataset 'digitz'"),
        ("dataset.test_fraction=1.0", "dataset.test_fraction: Input should be less than 1"),
        ("dataset.max_train=0", "dataset.max_train: Input should be greater than or equal to 1"),
        ("augment=[flipp]", "augment: unknown augmentation 'flipp'; known: flip, crop"),
        ("augment=[crop:x]", "augmentation 'crop:x': bad padding"),
        ("heads=[mlp,mlpp]", "heads: unknown head 'mlpp'; known: cross_attention, mlp"),
        ("heads=[mlp,mlp]", "heads repeat: 'mlp'"),
        ("label_budgets=[0]", "label_budgets[0]: Input should be greater than or equal to 1"),
        ("label_budgets=[]", "label_budgets: List should have at least 1 item"),
        ("finetune_steps=0", "finetune_steps: Input should be greater than or equal to 1"),
    ],
)
def test_image_config_checks_numbers_and_names(override, message):
    assert message in _image_error(override)


def test_the_issue_method_list_is_valid_now():
    """``methods=[part,mae,mp3]`` names registered methods today: it loads."""
    cfg = load_image_config("mnist5k-demo", parse_overrides(["methods=[part,mae,mp3]"]))
    assert cfg.methods == ["part", "mae", "mp3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"preset": "nope"}, "preset: unknown preset 'nope'; known: cifar100-paper"),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"seeds": [1, 1]}, "seeds repeat: 1"),
        ({"seeds": [-1]}, "seeds[0]: Input should be greater than or equal to 0"),
        ({"variants": []}, "variants: List should have at least 1 item"),
        (
            {"variants": [{"name": "a", "label": "a", "method": "part_gird"}]},
            "variants[0].method: unknown method 'part_gird'; known: part, part_grid, mae",
        ),
        (
            {"variants": [{"name": "a", "label": "a"}, {"name": "a", "label": "b"}]},
            "variants repeat: 'a'",
        ),
        ({"eval_batches": 0}, "eval_batches: Input should be greater than or equal to 1"),
    ],
)
def test_ablation_config_checks_numbers_and_names(data, message):
    with pytest.raises(ValidationError) as info:
        AblationConfig.model_validate(data)
    assert message in one_line(info.value)


def test_ablation_preset_may_be_a_file(tmp_path):
    path = tmp_path / "sleep.yaml"
    path.write_text("name: x\n")
    assert AblationConfig(preset=str(path)).preset == str(path)


def test_bad_variant_override_fails_before_any_data_is_prepared(tmp_path):
    bad = Variant(
        name="broken", label="x", method="supervised_pos",
        overrides={"finetune": {"optim": {"epochs": 0}}},
    )  # fmt: skip
    ab = AblationConfig(variants=[bad], seeds=[0])
    with pytest.raises(ValueError) as info:
        run_ablation(ab, tmp_path / "out", progress=False)
    text = str(info.value)
    assert "\n" not in text and text.startswith("ablation variant 'broken': ")
    assert "finetune.optim.epochs" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # no records, no store


# ---------------------------------------------------------------------- valid configs unchanged
@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_loads_and_round_trips(name):
    cls: Any = SleepConfig if name.startswith("physionet") else ImageConfig
    cfg = load_preset(name, cls)
    again = cls.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


def test_configs_dump_as_before(tmp_path: Path):
    """The bounds add no field and change no default: a default config dumps the same keys
    and values it did (the recipes fixture pins every derived config)."""
    dump = TrainConfig().model_dump(mode="json")
    assert dump["optim"] == {
        "lr": 0.001, "min_lr": 1e-05, "weight_decay": 0.05, "betas": [0.9, 0.95],
        "warmup_epochs": 1.0, "epochs": 10, "batch_size": 128, "accum_steps": 1,
        "clip_grad": 1.0, "max_steps": None, "min_steps": None,
    }  # fmt: skip
    assert dump["runtime"]["device"] == "auto" and dump["encoder"]["preset"] == "vit_eeg_mini"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_dim": 2}, "head_kwargs.out_dim: set by relpos"),
        ({"dim": 8}, "head_kwargs.dim: set by relpos"),
        ({"depth": 2}, "head_kwargs.depth: not an option of head 'cross_attention' (known: heads)"),
    ],
)
def test_head_kwargs_are_checked_against_the_head(kwargs, message):
    from relpos.errors import one_line
    from relpos.train.config import TrainConfig

    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"pretext": {"head_kwargs": kwargs}})
    assert message in one_line(err.value)
    TrainConfig.model_validate({"pretext": {"head": "mlp", "head_kwargs": {"hidden": 64}}})
