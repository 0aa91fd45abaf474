"""The training loop: schedule, metrics log, checkpoints, resume, failures, encoder export."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from relpos.core.atomic import TMP_MARK
from relpos.core.extract import extract
from relpos.train.api import predict
from relpos.train.checkpoint import (
    CheckpointManager,
    atomic_save,
    export_encoder,
    load_encoder,
    load_model,
)
from relpos.train.config import TrainConfig, build_model
from relpos.train.loop import fit
from relpos.train.order import EpochSampler
from relpos.train.schedule import lr_at
from relpos.train.tasks import FinetuneTask, make_task

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(task: str = "pretrain", **optim) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "task": task,
            "modality": {"name": "image", "channels": 1, "extent": [16, 16], "token_shape": [4, 4]},
            "encoder": {"preset": "vit_mini", "dim": 32, "depth": 2, "heads": 2},
            "pretext": {"sampler": {"kind": "boxes", "size": 4, "count": 10}, "num_pairs": 16},
            "finetune": {"num_classes": 3},
            "optim": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5, **optim},
            "runtime": {"checkpoint_every": 3, "log_every": 2, "progress": False, "seed": 7},
        }
    )


def tiny_data(n: int = 96, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)
    )


def run(cfg: TrainConfig, out: Path, data=None, **kw):
    torch.manual_seed(123)  # model init
    model = build_model(cfg)
    return model, fit(cfg, model, make_task(cfg), data or tiny_data(), out, **kw)


def test_lr_schedule():
    assert lr_at(0, 100, 10, 1.0, 0.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, 1.0, 0.0) == pytest.approx(0.5)


def test_epoch_sampler_resumes_and_shards():
    s = EpochSampler(50, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=20)
    assert list(s) == full[20:]
    s.set_epoch(3)
    assert list(s) != full and sorted(list(s)) == list(range(50))
    groups = torch.arange(50).div(10, rounding_mode="floor").numpy()  # 5 records of 10
    ranks = [
        EpochSampler(50, seed=3, rank=r, world_size=2, groups=groups, chunk=5) for r in range(2)
    ]
    orders = [list(r) for r in ranks]
    assert len(orders[0]) == len(orders[1])
    assert not set(orders[0]) & set(orders[1])
    # per-record sharding: no record is split between ranks
    assert not {int(groups[i]) for i in orders[0]} & {int(groups[i]) for i in orders[1]}
    # fewer records than two per rank: contiguous chunks are dealt out, no rank is starved
    one = [
        list(EpochSampler(26, seed=0, rank=r, world_size=2, groups=[0] * 26, chunk=32))
        for r in range(2)
    ]
    assert len(one[0]) == len(one[1]) >= 10 and not set(one[0]) & set(one[1])


def test_fit_writes_metrics_checkpoints_and_encoder(tmp_path):
    cfg = tiny_config()
    model, res = run(cfg, tmp_path / "run")
    assert res.steps == 12 and res.epochs == 2  # 96 / 16 = 6 steps per epoch
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "lr", "loss", "samples_per_s", "euclidean", "baseline"} <= set(
        lines[0]
    )
    assert [x["step"] for x in lines] == [2, 4, 6, 8, 10, 12]
    assert len(CheckpointManager(tmp_path / "run" / "checkpoints").paths()) == 2
    rebuilt, cfg2 = load_model(res.final_checkpoint)
    assert cfg2 == cfg
    for (k, v), (k2, v2) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    # encoder export round-trips
    enc = load_encoder(res.encoder_path)
    tokens = torch.randn(2, 5, 16)
    model.eval()
    enc.eval()
    torch.testing.assert_close(enc.forward_features(tokens), model.encoder.forward_features(tokens))


def test_resume_in_process_equals_uninterrupted(tmp_path):
    cfg = tiny_config()
    full, _ = run(cfg, tmp_path / "full")
    task = make_task(cfg)
    calls = []

    def crashing(model, batch, gen):  # dies in the middle of epoch 2 (step 9)
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return task(model, batch, gen)

    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, build_model(cfg), crashing, tiny_data(), tmp_path / "part")
    assert not (tmp_path / "part" / "final.pt").exists()
    resumed, res = run(cfg, tmp_path / "part")
    assert res.resumed_from is not None and res.resumed_from.name == "ckpt-000000006.pt"
    assert res.steps == 12
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_truncated_checkpoint_falls_back_with_warning(tmp_path):
    cfg = tiny_config(max_steps=6)
    run(cfg, tmp_path / "r")
    paths = CheckpointManager(tmp_path / "r" / "checkpoints").paths()
    newest, previous = paths[0], paths[1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 3])
    with pytest.warns(RuntimeWarning, match="damaged"):
        _, res = run(tiny_config(), tmp_path / "r")
    assert res.resumed_from == previous


def test_unwritable_or_full_output_fails_early(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="not writable"):
        run(tiny_config(), blocker / "run")

    class Usage:
        free = 1024

    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage())
    with pytest.raises(OSError, match="not enough free disk space"):
        run(tiny_config(), tmp_path / "full-disk")
    assert not (tmp_path / "full-disk" / "checkpoints").exists()


def test_finetune_from_safetensors_equals_from_checkpoint(tmp_path):
    run(tiny_config(max_steps=3), tmp_path / "pre")
    ckpt = CheckpointManager(tmp_path / "pre" / "checkpoints").paths()[0]
    export = export_encoder(load_model(ckpt)[0], tmp_path / "enc.safetensors")
    results = []
    for i, init in enumerate((str(ckpt), str(export))):
        cfg = tiny_config("finetune", max_steps=4)
        cfg.finetune.init = init
        from relpos.train.api import build_finetune_model

        torch.manual_seed(5)
        model = build_finetune_model(cfg)
        fit(cfg, model, make_task(cfg), tiny_data(), tmp_path / f"ft-{i}")
        results.append(model.state_dict())
    for a, b in zip(results[0].values(), results[1].values()):
        torch.testing.assert_close(a, b)


def test_linear_probe_freezes_the_encoder(tmp_path):
    cfg = tiny_config("finetune", max_steps=3)
    cfg.finetune.linear_probe = True
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(cfg, model, make_task(cfg), tiny_data(), tmp_path / "probe")
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}


def test_linear_probe_is_the_finetune_tasks_preparation():
    cfg = tiny_config("finetune")
    model = build_model(cfg)
    FinetuneTask(cfg).prepare(model)  # without linear_probe: everything trains
    assert all(p.requires_grad for p in model.parameters())
    cfg.finetune.linear_probe = True
    FinetuneTask(cfg).prepare(model)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}


def test_predict_classifies_on_the_grid(tmp_path):
    cfg = tiny_config("finetune")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    data = tiny_data(20)
    groups = torch.arange(20) // 5
    out = predict(model, cfg, TensorDataset(*data.tensors, groups), batch_size=8)
    x, y = data.tensors
    spans = cfg.grid_sampler()((16, 16), 20)
    with torch.no_grad():
        want = model(extract(x, spans, (4, 4)), spans).softmax(-1)
    torch.testing.assert_close(torch.from_numpy(out["prob"]), want)
    assert out["pred"].tolist() == want.argmax(-1).tolist()
    assert out["label"].tolist() == y.tolist() and out["group"].tolist() == groups.tolist()
    unlabelled = predict(model, cfg, TensorDataset(x), batch_size=8)
    assert (unlabelled["label"] == -1).all() and (unlabelled["group"] == -1).all()


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if TMP_MARK in p.name]


def _fail_replace(*args):
    raise OSError("disk gone")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path / "ck")
    path = manager.save({"step": 1, "w": torch.ones(3)}, 5)
    monkeypatch.setattr(os, "replace", _fail_replace)
    with pytest.raises(OSError, match="disk gone"):
        manager.save({"step": 2, "w": torch.zeros(3)}, 5)
    with pytest.raises(OSError, match="disk gone"):
        atomic_save({"step": 3}, tmp_path / "ck" / "final.pt")
    monkeypatch.undo()
    # the old checkpoint survives whole, and no temporary file is left behind
    _, ck = manager.latest()
    assert ck["step"] == 1 and torch.equal(ck["w"], torch.ones(3))
    assert manager.paths() == [path] and _leftovers(tmp_path / "ck") == []
    assert not (tmp_path / "ck" / "final.pt").exists()
    # a temporary file of a killed write is swept by the next save
    (tmp_path / "ck" / f".ckpt-000000009.pt{TMP_MARK}123.pt").write_bytes(b"partial")
    manager.save({"step": 3}, 6)
    assert _leftovers(tmp_path / "ck") == []


def test_encoder_export_is_atomic(tmp_path, monkeypatch):
    cfg = tiny_config()
    torch.manual_seed(0)
    path = export_encoder(build_model(cfg), tmp_path / "encoder.safetensors", extra={"v": 1})
    before = path.read_bytes(), path.with_suffix(".json").read_text()
    monkeypatch.setattr(os, "replace", _fail_replace)
    with pytest.raises(OSError, match="disk gone"):
        export_encoder(build_model(cfg), path, extra={"v": 2})
    monkeypatch.undo()
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    assert json.loads(before[1])["v"] == 1 and _leftovers(tmp_path) == []


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_train import tiny_config, tiny_data
    from relpos.train.config import build_model
    from relpos.train.loop import fit
    from relpos.train.tasks import make_task

    cfg = tiny_config(epochs=3)
    cfg.runtime.checkpoint_every = 2
    task = make_task(cfg)

    def slow(model, batch, gen):
        time.sleep(float(sys.argv[2]))
        return task(model, batch, gen)

    torch.manual_seed(123)
    model = build_model(cfg)
    fit(cfg, model, slow, tiny_data(), sys.argv[1])
    """
)


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    """A real SIGKILL mid-epoch, then a restart on the same directory."""
    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(ROOT / "tests" / "train")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0.15"], env=env)
    ckpts = out / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ckpts.glob("ckpt-*.pt"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final.pt").exists(), "the run finished before it was killed"
    subprocess.run([sys.executable, str(script), str(out), "0"], env=env, check=True)
    subprocess.run([sys.executable, str(script), str(tmp_path / "clean"), "0"], env=env, check=True)
    resumed = torch.load(out / "final.pt", weights_only=True)
    clean = torch.load(tmp_path / "clean" / "final.pt", weights_only=True)
    assert resumed["step"] == clean["step"] == 18
    for k, v in clean["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_compile_option_matches_eager(tmp_path):
    results = []
    for compiled in (False, True):
        cfg = tiny_config(max_steps=4)
        cfg.runtime.compile = compiled
        model, res = run(cfg, tmp_path / f"c{compiled}")
        results.append((res.last_metrics["loss"], model.state_dict()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    assert list(results[0][1]) == list(results[1][1])  # checkpoints keep their parameter names
