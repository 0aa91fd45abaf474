"""`relpos ablate sleep --quick`: the grid runs, scores the pretext, tabulates, plots, resumes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from relpos.cli import main
from relpos.sleep.ablate import (
    DEFAULT_GRID,
    AblationConfig,
    Variant,
    format_ablation,
    summarize,
    variant_config,
)
from relpos.sleep.experiment import load_sleep_config

ONLY = "supervised,part-paper,part-rhythm-nll"


def _copy_data(src: Path, dst: Path) -> Path:
    """A new ablation directory holding ``src``'s records, store and split."""
    dst.mkdir()
    for name in ("records", "store", "splits.json"):
        (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    args = [
        "ablate",
        "sleep",
        "--quick",
        "--out",
        str(out),
        "--only",
        ONLY,
        "--jobs",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    return out, args


def test_quick_grid_writes_rows_table_and_plot(quick):
    out, _ = quick
    res = json.loads((out / "ablation.json").read_text())
    rows = {r["name"]: r for r in res["rows"]}
    for name in ONLY.split(","):
        assert rows[name]["seeds"] == 2
        assert -1.0 <= rows[name]["kappa"] <= 1.0 and not math.isnan(rows[name]["kappa_sd"])
        assert (out / name / "seed0" / "result.json").exists()
    # variants not asked for have no runs, and show as empty rows
    assert rows["part-1s"]["seeds"] == 0
    # the PART rows carry held-out pretext ratios for the component they are judged on
    assert "t@dropped" in rows["part-paper"]["ratio"] and "t" in rows["part-paper"]["ratio"]
    assert "s_t" in rows["part-rhythm-nll"]["ratio"]
    assert rows["supervised"]["ratio"] == {}
    assert rows["spectral-floor"]["kappa"] > 0.0
    assert "kappa" in res["table"] and "spectral floor" in res["table"]
    assert (out / "ablation.png").stat().st_size > 1000


def test_rerun_resumes_without_training(quick):
    out, args = quick
    done = out / "part-paper" / "seed1" / "result.json"
    before = done.stat().st_mtime_ns
    assert main(args) == 0
    assert done.stat().st_mtime_ns == before


def test_same_draws_for_every_variant(quick):
    """The held-out pretext batches come from one seeded generator: two seeds of one variant
    are scored on the same examples (their count is equal)."""
    out, _ = quick
    runs = [
        json.loads((out / "part-paper" / f"seed{s}" / "result.json").read_text()) for s in (0, 1)
    ]
    assert runs[0]["pretext"]["examples"] == runs[1]["pretext"]["examples"] > 0


def test_every_default_variant_builds_a_valid_config():
    base = load_sleep_config("physionet2018-demo")
    ab = AblationConfig()
    assert len({v.name for v in DEFAULT_GRID}) == len(DEFAULT_GRID)
    for v in ab.variants:
        cfg = variant_config(base, ab, v, seed=3)
        assert cfg.pretrain.runtime.seed == cfg.finetune.runtime.seed == 3
        assert cfg.pretrain.optim.max_steps == ab.budget["pretrain"]["optim"]["max_steps"]
    # variants depart from one pretext (1-s windows, no positions), whatever the preset's is
    one_second = next(v for v in ab.variants if v.name == "part-1s")
    assert base.pretrain.pretext.pos_embed == "sincos"  # the demo preset's own choice
    assert variant_config(base, ab, one_second, 0).pretrain.pretext.pos_embed == "none"
    paper = [v for v in ab.variants if v.paper and v.method == "part"]
    assert paper and all(
        variant_config(base, ab, v, 0).pretrain.pretext.pos_drop == 0.2 for v in paper
    )


def test_unknown_variant_is_a_one_line_error(tmp_path, capsys):
    code = main(["ablate", "sleep", "--quick", "--out", str(tmp_path), "--only", "nope"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown variant" in err and "\n" not in err


def test_bad_variant_name_is_rejected():
    with pytest.raises(ValueError, match="name"):
        Variant(name="a b", label="x")


def test_table_marks_departures_and_scored_component():
    ab = AblationConfig(variants=[Variant(name="p", label="P", score="s_t")], seeds=[0])
    run = {"eval": {"kappa": 0.5, "macro_f1": 0.4}, "wall_s": 10.0,
           "pretext": {"ratio": {"t": 1.0, "s_t": 0.45}}}  # fmt: skip
    table = format_ablation(summarize(ab, {"p": [run]}, None))
    assert "P †" in table and "*s_t 0.450" in table and "t 1.000" in table


def test_parallel_jobs_give_the_same_rows(quick, tmp_path):
    """--jobs 2 runs (variant, seed) pairs in worker processes: same finished rows, and a
    killed or repeated command resumes from what is on disk."""
    out, _ = quick
    par = _copy_data(out, tmp_path / "par")
    args = ["ablate", "sleep", "--quick", "--out", str(par), "--only", "supervised",
            "--jobs", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    rows = {r["name"]: r for r in json.loads((par / "ablation.json").read_text())["rows"]}
    assert rows["supervised"]["seeds"] == 2
    seq = {r["name"]: r for r in json.loads((out / "ablation.json").read_text())["rows"]}
    assert rows["supervised"]["kappa"] == pytest.approx(seq["supervised"]["kappa"], abs=0.2)


def test_methods_grid_runs_each_method_and_scores_its_own_pretext(quick, tmp_path):
    """``--grid methods``: every method on the same split and budget, each pretext against its
    chance level; RP pretrains on ten-epoch windows."""
    out, _ = quick
    meth = _copy_data(out, tmp_path / "methods")
    args = ["ablate", "sleep", "--quick", "--grid", "methods", "--out", str(meth), "--only",
            "mae,mp3,rp", "--seeds", "0", "--jobs", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    res = json.loads((meth / "ablation.json").read_text())
    rows = {r["name"]: r for r in res["rows"]}
    assert [v["name"] for v in res["config"]["variants"]] == [
        "part", "part_grid", "mae", "mae-raw", "mp3", "droppos", "rp", "supervised_pos",
        "supervised_nopos",
    ]  # fmt: skip
    assert rows["mae"]["pretext"]["key"] == "recon" and rows["mae"]["pretext"]["chance"] > 0
    assert rows["mp3"]["pretext"]["chance"] == pytest.approx(1 / 30)
    assert 0.5 <= rows["rp"]["pretext"]["chance"] <= 1.0
    assert "*pos acc" in res["table"] and "(1/N 0.033)" in res["table"]
    cfg = yaml.safe_load((meth / "rp" / "seed0" / "pretrain" / "config.yaml").read_text())
    assert cfg["modality"]["extent"] == [30000] and cfg["pretext"]["method"] == "rp"
