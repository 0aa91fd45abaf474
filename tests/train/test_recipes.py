"""The one method -> config derivation (relpos.train.recipes): both experiments derive exactly
the configs they derived before it existed, unknown methods fail naming the known ones, and
the shared table formatter, quiet and describe."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from relpos.sleep import experiment as sleep
from relpos.train import methods, recipes
from relpos.train.config import BoxesConfig, GridConfig, TrainConfig
from relpos.train.recipes import Column, Method
from relpos.train.state import FitResult
from relpos.vision import experiment as vision

CAPTURED = json.loads(
    (Path(__file__).parents[1] / "data" / "recipes" / "derived_configs.json").read_text(
        encoding="utf-8"
    )
)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _delta(base: TrainConfig, derived: TrainConfig) -> dict[str, Any]:
    """Dotted paths where ``derived`` differs from ``base`` (as the fixture records them)."""
    fb, fd = _flat(base.model_dump(mode="json")), _flat(derived.model_dump(mode="json"))
    out = {p: v for p, v in fd.items() if fb.get(p, "<absent>") != v}
    out.update({p: "<absent>" for p in fb if p not in fd})
    return out


@cache
def _experiment(domain: str, preset: str, quick: bool) -> Any:
    if domain == "sleep":
        return sleep.load_sleep_config(preset, sleep.QUICK if quick else None)
    return vision.load_image_config(preset, vision.QUICK if quick else None)


def _derive(case: dict[str, Any]) -> tuple[TrainConfig, TrainConfig]:
    """The preset section and the config the experiment derives for ``case``."""
    cfg = _experiment(case["domain"], case["preset"], case["quick"])
    base = cfg.pretrain if case["stage"] == "pretrain" else cfg.finetune
    method = case["method"]
    if case["domain"] == "sleep":
        if case["stage"] == "pretrain":
            return base, sleep.pretrain_config(cfg, method)
        return base, sleep.finetune_config(cfg, method, case["init"])
    modality = case["modality"]
    if case["stage"] == "pretrain":
        return base, vision.pretrain_config(cfg, method, modality)
    derived = vision.finetune_config(
        cfg, method, case["n_labelled"], modality, case["init"], case["probe"]
    )
    return base, derived


def _case_id(case: dict[str, Any]) -> str:
    extra = [str(case.get(k)) for k in ("n_labelled", "init", "probe") if k in case]
    q = "quick" if case["quick"] else "full"
    shape = "x".join(str(e) for e in case["modality"]["extent"]) if "modality" in case else ""
    return "/".join([case["preset"], q, shape, case["stage"], case["method"], *extra])


def test_quick_overrides_unchanged():
    assert sleep.QUICK == CAPTURED["quick"]["sleep"]
    assert vision.QUICK == CAPTURED["quick"]["image"]


@pytest.mark.parametrize("case", CAPTURED["cases"], ids=_case_id)
def test_derivation_matches_captured_configs(case):
    base, derived = _derive(case)
    assert _delta(base, derived) == case["delta"]
    assert derived.task == case["stage"]


def test_every_method_of_both_demos_is_captured():
    seen = {(c["domain"], c["stage"], c["method"]) for c in CAPTURED["cases"]}
    for method in sleep.METHODS:
        assert ("sleep", "finetune", method) in seen
    for method in vision.METHODS:
        assert ("image", "finetune", method) in seen
    pretraining = {m for m in recipes.list_methods() if recipes.get_method(m).pretrains}
    assert {m for d, s, m in seen if s == "pretrain" and d == "sleep"} == pretraining - {
        "part_scale"
    }
    assert {m for d, s, m in seen if s == "pretrain" and d == "image"} == pretraining - {"rp"}


def test_base_sections_are_not_modified():
    cfg = _experiment("image", "mnist5k-demo", False)
    before = cfg.model_dump()
    vision.pretrain_config(cfg, "part_scale", {"channels": 1, "extent": [28, 28]})
    vision.finetune_config(cfg, "supervised_nopos", 100, {"channels": 1}, None, probe=True)
    assert cfg.model_dump() == before


# ---------------------------------------------------------------------- errors
def _base() -> TrainConfig:
    return TrainConfig.model_validate({"task": "pretrain"})


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown method 'byol'; known: part, part_grid, "):
        recipes.finetune_config(_base(), "byol")
    with pytest.raises(ValueError, match=r"unknown method 'mae'; known: part, part_grid$"):
        recipes.pretrain_config(_base(), "mae", known=("part", "part_grid"))
    # a registered method the experiment does not run is unknown to it
    with pytest.raises(ValueError, match=r"unknown method 'part_scale'; known: part, part_grid, "):
        sleep.finetune_config(_experiment("sleep", "physionet2018-demo", True), "part_scale")
    with pytest.raises(ValueError, match="known: part, part_grid, part_scale, mae, mp3, droppos"):
        vision.pretrain_config(_experiment("image", "mnist5k-demo", True), "rp", {})


def test_derivation_errors():
    with pytest.raises(ValueError, match="'supervised_pos' has no pretraining"):
        recipes.pretrain_config(_base(), "supervised_pos")
    with pytest.raises(ValueError, match="needs a 'grid' sampler"):
        recipes.pretrain_config(_base(), "part_grid")
    with pytest.raises(ValueError, match="max_steps needs examples"):
        recipes.finetune_config(_base(), "part", max_steps=10)


# ---------------------------------------------------------------------- derivation
def test_derivation_per_method():
    base = _base()
    grid = GridConfig(stride=[50])
    pt = recipes.pretrain_config(base, "part_grid", samplers={"grid": grid})
    assert pt.task == "pretrain" and pt.pretext.sampler == grid
    assert recipes.pretrain_config(base, "part").pretext.sampler == base.pretext.sampler
    ft = recipes.finetune_config(base, "supervised_nopos", pos_embed="sincos")
    assert ft.task == "finetune" and ft.finetune.pos_embed == "none"
    ft = recipes.finetune_config(base, "part", "enc.safetensors", pos_embed="sincos")
    assert ft.finetune.pos_embed == "sincos" and ft.finetune.init == "enc.safetensors"
    assert recipes.finetune_config(base, "part").finetune.pos_embed == base.finetune.pos_embed
    budget = recipes.finetune_config(base, "part", max_steps=25, examples=100)
    bs = base.optim.batch_size
    assert budget.optim.max_steps == 25
    assert budget.optim.epochs == max(1, -(-25 // max(1, 100 // bs)))


def test_register_a_method():
    recipes.register_method(
        Method("test_part_log", "PART, log sizes", sampler="scale", scale="log", positions=False)
    )
    try:
        scale = BoxesConfig(count=8, height=(2.0, 8.0), width=(2.0, 8.0))
        base = TrainConfig.model_validate(
            {"modality": {"name": "image", "channels": 1, "extent": [16, 16], "token_shape": [4, 4]},
             "pretext": {"sampler": {"kind": "boxes", "size": 4, "count": 8}}}
        )  # fmt: skip
        pt = recipes.pretrain_config(base, "test_part_log", samplers={"scale": scale})
        assert pt.pretext.scale == "log" and pt.pretext.sampler == scale
        assert recipes.finetune_config(base, "test_part_log").finetune.pos_embed == "none"
        assert recipes.METHOD_LABELS["test_part_log"] == "PART, log sizes"
    finally:
        methods._METHODS.pop("test_part_log")
        methods.METHOD_LABELS.pop("test_part_log")


# ---------------------------------------------------------------------- tables and runs
def test_labels():
    assert recipes.method_label("part") == "PART (off-grid, relative)"
    assert recipes.method_label("part", short=True) == "PART"
    assert (
        recipes.method_label("supervised_pos", short=True)
        == recipes.METHOD_LABELS["supervised_pos"]
    )
    assert recipes.method_label("unregistered") == "unregistered"


def test_format_table():
    table = recipes.format_table(
        "T",
        [Column("a", 6), Column("n", 8, ",", gap="  ")],
        [("x", [0.5, 1234]), ("longer", [1.0, 5])],
        label_width=8,
    )
    assert table.splitlines() == [
        "T",
        "method        a         n",
        "x         0.500     1,234",
        "longer    1.000         5",
    ]
    with pytest.raises(ValueError, match="row 'x': 1 values for 2 columns"):
        recipes.format_table("T", [Column("a", 6), Column("b", 6)], [("x", [1.0])], label_width=4)


def test_quiet_and_describe(tmp_path):
    cfg = _base()
    assert cfg.runtime.progress
    off = recipes.quiet(cfg, False)
    assert not off.runtime.progress and cfg.runtime.progress and off is not cfg
    assert recipes.quiet(cfg, True).runtime.progress
    result = FitResult(
        out_dir=tmp_path,
        steps=3,
        epochs=1,
        final_checkpoint=None,
        encoder_path=None,
        last_metrics={"loss": 0.5},
        samples_per_s=10.0,
    )
    assert recipes.describe(result) == {
        "out_dir": str(tmp_path),
        "steps": 3,
        "epochs": 1,
        "samples_per_s": 10.0,
        "last_loss": 0.5,
    }
