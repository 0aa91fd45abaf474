"""Finetuning budgets (``optim.min_steps``) and early stopping on a validation set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from relpos.train.api import train, validation_metrics
from relpos.train.callbacks import Callback
from relpos.train.checkpoint import CheckpointManager, load_checkpoint
from relpos.train.config import EarlyStoppingConfig, TrainConfig, build_model, merge
from relpos.train.loop import fit
from relpos.train.order import EpochSampler
from relpos.train.schedule import budget
from relpos.train.state import EarlyStopping
from relpos.train.tasks import make_task

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from test_train import tiny_config as train_config
from test_train import tiny_data

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(early_stopping: dict | None = None, **optim) -> TrainConfig:
    """test_train's finetuning config with ``early_stopping``: 96 examples, batch 16, so 6
    optimiser steps per epoch."""
    cfg = train_config("finetune", **optim)
    return TrainConfig.model_validate(
        merge(cfg.model_dump(mode="json"), {"finetune": {"early_stopping": early_stopping}})
    )


def records(out: Path, split: str | None = None) -> list[dict]:
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r.get("split") == split]


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# accuracy can never beat its first value by more than 1: every later evaluation is "bad"
STUCK = {"metric": "accuracy", "mode": "max", "min_delta": 1.0}


# ---------------------------------------------------------------------- budgets
def test_budget_min_steps_raises_epochs_and_max_steps_caps():
    sampler = EpochSampler(96, seed=0)
    base = tiny_config(epochs=2).optim
    assert budget(base, sampler) == (6, 12, 3, 2)
    raised = tiny_config(epochs=2, min_steps=25).optim
    assert budget(raised, sampler) == (6, 30, 3, 5)  # ceil(25 / 6) = 5 epochs
    low = tiny_config(epochs=2, min_steps=7).optim
    assert budget(low, sampler) == (6, 12, 3, 2)  # already enough steps
    capped = tiny_config(epochs=2, min_steps=25, max_steps=20).optim
    assert budget(capped, sampler) == (6, 20, 3, 5)


def test_min_steps_trains_longer_and_the_schedule_spans_it(tmp_path):
    cfg = tiny_config(epochs=1, min_steps=14, min_lr=1e-5)
    _, result = train(cfg, tiny_data(), tmp_path)
    assert (result.steps, result.epochs) == (18, 3)  # ceil(14 / 6) = 3 epochs of 6 steps
    last = records(tmp_path)[-1]
    assert last["step"] == 18 and last["lr"] == pytest.approx(1e-5)  # cosine reached min_lr


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "bad",
    [
        {"patience": 0},
        {"patience": 10_001},
        {"mode": "median"},
        {"every": 0},
        {"min_delta": -0.1},
        {"unknown": 1},
    ],
)
def test_early_stopping_config_bounds(bad):
    with pytest.raises(ValidationError):
        EarlyStoppingConfig.model_validate(bad)


def test_min_steps_bounds():
    for bad in (0, 10_000_001):
        with pytest.raises(ValidationError):
            tiny_config(min_steps=bad)
    assert tiny_config().optim.min_steps is None
    assert tiny_config().finetune.early_stopping is None


def test_tracker_min_max_delta_and_patience():
    es = EarlyStopping(EarlyStoppingConfig(mode="min", patience=2, min_delta=0.1))
    assert es.update(1.0, 1) and es.best == 1.0
    assert not es.update(0.95, 2) and es.bad_evals == 1  # within min_delta
    assert es.update(0.5, 3) and (es.best_step, es.bad_evals) == (3, 0)
    assert not es.update(float("nan"), 4) and not es.stopped
    assert not es.update(0.6, 5) and es.stopped
    hi = EarlyStopping(EarlyStoppingConfig(mode="max", patience=1))
    assert hi.update(0.2, 1) and hi.update(0.3, 2) and not hi.update(0.3, 3) and hi.stopped
    again = EarlyStopping(hi.cfg)
    again.load_state_dict(hi.state_dict())
    assert again.state_dict() == {"best": 0.3, "best_step": 2, "bad_evals": 1, "stopped": True}


def test_a_resumed_tracker_follows_the_new_patience():
    old = EarlyStopping(EarlyStoppingConfig(patience=2))
    for v in (1.0, 1.0, 1.0):
        old.update(v, 1)
    assert old.stopped
    raised = EarlyStopping(EarlyStoppingConfig(patience=4))
    raised.load_state_dict(old.state_dict())  # a budget change on resume: go on trying
    assert raised.bad_evals == 2 and not raised.stopped
    lowered = EarlyStopping(EarlyStoppingConfig(patience=1))
    lowered.load_state_dict({**old.state_dict(), "bad_evals": 1, "stopped": False})
    assert lowered.stopped


def test_early_stopping_needs_a_validation_set(tmp_path):
    with pytest.raises(ValueError, match="validation set"):
        train(tiny_config(STUCK), tiny_data(), tmp_path / "a")
    pre = tiny_config().model_copy(update={"task": "pretrain"})
    with pytest.raises(ValueError, match="only used for finetuning"):
        train(pre, tiny_data(), tmp_path / "b", val_dataset=tiny_data(32))


def test_unknown_metric_is_named(tmp_path):
    cfg = tiny_config({"metric": "f1"})
    with pytest.raises(KeyError, match="macro_f1"):
        train(cfg, tiny_data(), tmp_path, val_dataset=tiny_data(32, seed=1))


# ---------------------------------------------------------------------- validation and stopping
def test_validation_metrics_and_val_records(tmp_path):
    model, result = train(tiny_config(), tiny_data(), tmp_path, val_dataset=tiny_data(32, seed=1))
    vals = records(tmp_path, "val")
    assert [(r["step"], r["epoch"]) for r in vals] == [(6, 1), (12, 2)]
    assert {"loss", "accuracy", "kappa", "macro_f1"} <= vals[-1].keys()
    m = validation_metrics(model, tiny_config(), tiny_data(32, seed=1))
    assert m["loss"] == pytest.approx(vals[-1]["loss"], rel=1e-5)
    assert 0 <= m["accuracy"] <= 1 and -1 <= m["kappa"] <= 1 and 0 <= m["macro_f1"] <= 1
    assert result.best_step is None and not (tmp_path / "best.pt").exists()  # no early stopping


def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path):
    cfg = tiny_config({**STUCK, "patience": 2, "every": 5}, epochs=10)
    _, result = train(cfg, tiny_data(), tmp_path, val_dataset=tiny_data(32, seed=1))
    vals = records(tmp_path, "val")
    assert [r["step"] for r in vals] == [5, 10, 15]  # 2 evaluations without improvement
    assert [r["bad_evals"] for r in vals] == [0, 1, 2]
    assert result.steps == 15 < 60 and result.best_step == 5
    assert result.best_metric == pytest.approx(vals[0]["accuracy"])
    best = load_checkpoint(tmp_path / "best.pt")
    final = load_checkpoint(tmp_path / "final.pt")
    assert best.keys() == final.keys() == {"config", "model", "step"} and best["step"] == 5
    assert weights_equal(best["model"], final["model"])
    last = load_checkpoint(CheckpointManager(tmp_path / "checkpoints").paths()[0])
    assert last["step"] == 15 and last["early_stopping"]["stopped"]
    assert not weights_equal(best["model"], last["model"])  # training went on after the best
    assert result.epochs == 2  # stopped in the third epoch


def test_early_stopping_at_epoch_ends(tmp_path):
    cfg = tiny_config({**STUCK, "patience": 1}, epochs=10)
    _, result = train(cfg, tiny_data(), tmp_path, val_dataset=tiny_data(32, seed=1))
    assert [r["step"] for r in records(tmp_path, "val")] == [6, 12]
    assert (result.steps, result.best_step) == (12, 6)


class Kill(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state, record):
        if state.step == self.step:
            raise Kill


def test_resume_keeps_best_value_and_patience(tmp_path):
    cfg = tiny_config({**STUCK, "patience": 3, "every": 5}, epochs=10)
    data, val = tiny_data(), tiny_data(32, seed=1)
    _, whole = train(cfg, data, tmp_path / "whole", val_dataset=val)
    assert (whole.steps, whole.best_step) == (20, 5)

    out = tmp_path / "killed"
    with pytest.raises(Kill):
        train(cfg, data, out, val_dataset=val, callbacks=[KillAt(13)])
    ck = load_checkpoint(CheckpointManager(out / "checkpoints").paths()[0])
    assert ck["step"] == 12
    first = records(out, "val")[0]["accuracy"]
    assert ck["early_stopping"] == {"best": first, "best_step": 5, "bad_evals": 1, "stopped": False}
    _, resumed = train(cfg, data, out, val_dataset=val)
    assert resumed.resumed_from is not None
    assert (resumed.steps, resumed.best_step) == (20, 5)  # not restarted from scratch at 15
    assert [r["bad_evals"] for r in records(out, "val")] == [0, 1, 2, 3]
    a = load_checkpoint(tmp_path / "whole" / "final.pt")["model"]
    assert weights_equal(a, load_checkpoint(out / "final.pt")["model"])

    # restarted once more on the finished run: nothing trains, the result stands
    _, again = train(cfg, data, out, val_dataset=val)
    assert (again.steps, again.best_step) == (20, 5)


def test_without_early_stopping_nothing_changes(tmp_path):
    def run(cfg, out):
        torch.manual_seed(123)
        model = build_model(cfg)
        fit(cfg, model, make_task(cfg), tiny_data(), out)
        recs = [
            {k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in records(out)
        ]
        return recs, load_checkpoint(out / "final.pt")["model"]

    base_recs, base_w = run(tiny_config(), tmp_path / "a")
    same_recs, same_w = run(tiny_config(min_steps=12), tmp_path / "b")  # 2 epochs already do
    assert base_recs == same_recs and weights_equal(base_w, same_w)
    assert not (tmp_path / "a" / "best.pt").exists()
    ck = load_checkpoint(CheckpointManager(tmp_path / "a" / "checkpoints").paths()[0])
    assert "early_stopping" not in ck


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, pathlib, sys, torch
    from torch.utils.data import TensorDataset
    from relpos.train.config import TrainConfig
    from relpos.train.api import train

    out, batch = sys.argv[1], int(sys.argv[2])
    cfg = TrainConfig.model_validate({
        "task": "finetune",
        "modality": {"name": "image", "channels": 1, "extent": [16, 16], "token_shape": [4, 4]},
        "encoder": {"preset": "vit_mini", "dim": 32, "depth": 2, "heads": 2},
        "finetune": {"num_classes": 3, "early_stopping": {
            "metric": "accuracy", "mode": "max", "min_delta": 1.0, "patience": 2, "every": 3}},
        "optim": {"epochs": 10, "batch_size": batch, "lr": 2e-3, "warmup_epochs": 0.5},
        "runtime": {"checkpoint_every": 4, "log_every": 1, "progress": False, "seed": 3},
    })
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1, 16, 16, generator=g), torch.randint(0, 3, (128,), generator=g)
    _, r = train(cfg, TensorDataset(x, y), out, val_dataset=TensorDataset(x[:32], y[:32]))
    rank = os.environ["RANK"]  # one file per rank: two ranks printing to one pipe interleave
    pathlib.Path(out, f"result-{rank}.json").write_text(json.dumps([r.steps, r.best_step]))
    """
)


@pytest.mark.slow
def test_ddp_ranks_stop_together(tmp_path):
    script = tmp_path / "ddp_es.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path / "out"), "8"]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, timeout=600, capture_output=True, text=True)
    results = [json.loads((tmp_path / "out" / f"result-{r}.json").read_text()) for r in (0, 1)]
    assert results == [[9, 3], [9, 3]]  # both ranks: evaluations at 3, 6, 9, stopped at 9
    assert [r["step"] for r in records(tmp_path / "out", "val")] == [3, 6, 9]
