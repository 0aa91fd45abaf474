"""Callbacks: every hook fires at its place in the loop, sees the run's state, and a failing
callback stops the run without corrupting its checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from relpos.train.api import train
from relpos.train.callbacks import Callback, CallbackList, MetricsWriter
from relpos.train.checkpoint import CheckpointManager
from relpos.train.state import FitResult, RunState

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from test_train import tiny_config, tiny_data


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_fit_start(self, state: RunState) -> None:
        self.events.append(("fit_start", (state.step, state.epoch, state.total_steps)))

    def on_step_end(self, state: RunState, record: dict[str, float]) -> None:
        self.events.append(("step", (state.step, state.lr, dict(record))))

    def on_log(self, state: RunState, record: dict[str, Any]) -> None:
        self.events.append(("log", dict(record)))

    def on_epoch_end(self, state: RunState) -> None:
        self.events.append(("epoch_end", (state.step, state.epoch)))

    def on_checkpoint(self, state: RunState, path: Path) -> None:
        self.events.append(("checkpoint", (state.step, path)))

    def on_fit_end(self, state: RunState, result: FitResult) -> None:
        self.events.append(("fit_end", result))

    def of(self, kind: str) -> list[Any]:
        return [v for k, v in self.events if k == kind]


def _probe(model: torch.nn.Module, epoch: int) -> dict[str, float]:
    return {"score": float(epoch)}


def test_hooks_fire_in_order_and_mirror_the_files(tmp_path):
    rec = Recorder()
    out = tmp_path / "run"
    _, res = train(tiny_config(), tiny_data(), out, eval_fn=_probe, callbacks=[rec])
    kinds = [k for k, _ in rec.events]
    assert kinds[0] == "fit_start" and kinds[-1] == "fit_end"
    assert rec.of("fit_start") == [(0, 0, 12)]
    # one on_step_end per optimiser step, with this step's own metrics
    steps = rec.of("step")
    assert [s for s, _, _ in steps] == list(range(1, 13))
    assert all({"loss", "euclidean", "baseline"} <= set(r) for _, _, r in steps)
    # on_log sees exactly the records of metrics.jsonl (the writer is itself a callback)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rec.of("log") == lines
    assert [r["step"] for r in lines if "split" not in r] == [2, 4, 6, 8, 10, 12]
    assert [(r["epoch"], r["score"]) for r in lines if r.get("split") == "eval"] == [(1, 1), (2, 2)]
    # the logged lr is the lr after the logged step
    lr_by_step = {s: lr for s, lr, _ in steps}
    assert all(r["lr"] == lr_by_step[r["step"]] for r in lines if "lr" in r)
    assert rec.of("epoch_end") == [(6, 1), (12, 2)]
    # every checkpoint write is announced (every 3 steps but the last, and at each epoch end)
    ckpts = rec.of("checkpoint")
    assert [s for s, _ in ckpts] == [3, 6, 6, 9, 12]
    assert all(p.parent == out / "checkpoints" for _, p in ckpts)
    assert CheckpointManager(out / "checkpoints").paths()[0] == ckpts[-1][1]
    assert rec.of("fit_end") == [res]
    # eval ran after epoch_end's position was advanced and before its checkpoint
    i_eval = next(i for i, (k, v) in enumerate(rec.events) if k == "log" and "split" in v)
    assert rec.events[i_eval + 1][0] == "epoch_end" and rec.events[i_eval + 2][0] == "checkpoint"


def test_callbacks_leave_the_run_unchanged(tmp_path):
    torch.manual_seed(0)
    plain, _ = train(tiny_config(max_steps=4), tiny_data(), tmp_path / "a")
    torch.manual_seed(0)
    hooked, _ = train(tiny_config(max_steps=4), tiny_data(), tmp_path / "b", callbacks=[Recorder()])
    for a, b in zip(plain.state_dict().values(), hooked.state_dict().values()):
        assert torch.equal(a, b)


def test_resumed_run_starts_callbacks_at_the_checkpoint(tmp_path):
    train(tiny_config(max_steps=4), tiny_data(), tmp_path / "r")
    rec = Recorder()
    _, res = train(tiny_config(), tiny_data(), tmp_path / "r", callbacks=[rec])
    assert res.resumed_from is not None
    assert rec.of("fit_start") == [(4, 0, 12)]
    assert [s for s, _, _ in rec.of("step")] == list(range(5, 13))


def test_failing_callback_stops_the_run_and_keeps_checkpoints(tmp_path):
    class Boom(Callback):
        def on_step_end(self, state: RunState, record: dict[str, float]) -> None:
            if state.step == 5:
                raise RuntimeError("logger down")

    with pytest.raises(RuntimeError, match="logger down"):
        train(tiny_config(), tiny_data(), tmp_path / "r", callbacks=[Boom()])
    assert not (tmp_path / "r" / "final.pt").exists()
    _, res = train(tiny_config(), tiny_data(), tmp_path / "r")
    assert res.resumed_from is not None and res.resumed_from.name == "ckpt-000000003.pt"
    assert res.steps == 12


def test_callback_list_and_metrics_writer(tmp_path):
    a, b = Recorder(), Recorder()
    hooks = CallbackList([MetricsWriter(tmp_path / "m.jsonl"), a, b])
    state: Any = None  # the writer and the recorders only pass the state through
    hooks.on_log(state, {"step": 1, "loss": 0.5})
    hooks.on_log(state, {"step": 2, "loss": 0.25})
    assert a.of("log") == b.of("log") == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in lines] == [0.5, 0.25]
    Callback().on_log(state, {})  # the base hooks do nothing
