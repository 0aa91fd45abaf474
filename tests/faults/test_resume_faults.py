"""Faults of a training run and its directory (issue 12, item 4): a second run on the same
``--out``, resuming with another config, ``force_new``, damaged checkpoints and ``--init``
files, a full disk during a checkpoint, a cut ``metrics.jsonl``, and SIGKILL at seeded random
points followed by a rerun that must end bit-identical to an uninterrupted run.

Every case asserts the one-line message and what survives on disk. The killed runs are forked
from the test process (no second import of torch), with one intra-op thread on both sides so
that the comparison is bitwise.
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from relpos.core.atomic import TMP_MARK
from relpos.train import checkpoint as ckpt_mod
from relpos.train.api import train
from relpos.train.callbacks import Callback
from relpos.train.checkpoint import (
    CheckpointManager,
    export_encoder,
    load_checkpoint,
    load_encoder,
    read_provenance,
)
from relpos.train.config import TrainConfig, build_model, merge
from relpos.train.loop import fit
from relpos.train.rundir import ResumeMismatchError, RunLock, RunLockedError, repair_metrics
from relpos.train.tasks import make_task

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))  # --import-mode=importlib
from test_train import tiny_config, tiny_data

fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def changed(cfg: TrainConfig, **sections) -> TrainConfig:
    return TrainConfig.model_validate(merge(cfg.model_dump(mode="json"), sections))


def run(cfg: TrainConfig, out: Path, **kw):
    torch.manual_seed(123)  # model init
    model = build_model(cfg)
    return model, fit(cfg, model, make_task(cfg), tiny_data(), out, **kw)


def steps(out: Path, split: str | None = None) -> list[int]:
    text = (out / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "metrics.jsonl ends in a partial line"
    recs = [json.loads(x) for x in text.splitlines()]
    return [r["step"] for r in recs if r.get("split") == split]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (the lock file aside) and its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip(), text
    return text


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Raise after optimiser step ``step`` (its checkpoint, if any, not yet written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state, record):
        if state.step == self.step:
            raise Crash


@pytest.fixture
def one_thread():
    """One intra-op thread, so that forked and in-process runs compute bit for bit alike."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- the lock
def test_a_locked_run_directory_fails_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    run(tiny_config(max_steps=3), out)
    before = snapshot(out)
    with RunLock(out):  # another run holds it (flock: per open file, so in-process works)
        with pytest.raises(RunLockedError) as exc:  # at once: the lock is taken non-blocking
            run(tiny_config(max_steps=6), out)
    msg = one_line(exc)
    assert str(out) in msg and "another relpos run" in msg and "--out" in msg
    assert snapshot(out) == before  # config.yaml, checkpoints and metrics untouched
    _, res = run(tiny_config(max_steps=6), out)  # the lock is gone with its holder
    assert res.steps == 6 and steps(out) == [2, 3, 4, 6]


def _held_run(out: str) -> None:
    """(forked child) a run that, once it has a checkpoint, waits until the test lets it go on
    (the file ``OUT.go``), however slow the machine is."""
    torch.set_num_threads(1)
    cfg = tiny_config(max_steps=8)
    task = make_task(cfg)
    go, deadline = Path(out + ".go"), time.monotonic() + 60

    def held(model, batch, gen):
        while list(Path(out, "checkpoints").glob("ckpt-*.pt")) and not go.exists():
            assert time.monotonic() < deadline, "the test never let the run go on"
            time.sleep(0.01)
        return task(model, batch, gen)

    torch.manual_seed(123)
    fit(cfg, build_model(cfg), held, tiny_data(), out)


@fork
def test_two_concurrent_runs_on_one_out(tmp_path, one_thread):
    out = tmp_path / "run"
    first = multiprocessing.get_context("fork").Process(target=_held_run, args=(str(out),))
    first.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "checkpoints").glob("ckpt-*.pt")):
        time.sleep(0.02)
    with pytest.raises(RunLockedError) as exc:
        run(tiny_config(max_steps=8), out)
    assert f"(pid {first.pid})" in one_line(exc)
    (tmp_path / "run.go").touch()
    first.join(60)
    assert first.exitcode == 0, "the first run was disturbed"
    assert steps(out) == [2, 4, 6, 8]  # its log is whole, no record of the second run
    assert load_checkpoint(out / "final.pt")["step"] == 8
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")]


# ---------------------------------------------------------------------- resume checks
def test_a_changed_architecture_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    run(tiny_config(max_steps=3), out)
    before = snapshot(out)
    bigger = changed(tiny_config(max_steps=3), encoder={"dim": 48})
    with pytest.raises(ResumeMismatchError) as exc:
        run(bigger, out)
    msg = one_line(exc)
    assert "encoder.dim (32 -> 48)" in msg and "--force-new" in msg
    assert "ckpt-000000003.pt" in msg
    assert snapshot(out) == before  # config.yaml still the old one, checkpoints unchanged


def test_a_changed_batch_size_or_seed_is_refused(tmp_path):
    out = tmp_path / "run"
    run(tiny_config(max_steps=3), out)
    cfg = changed(tiny_config(max_steps=3), optim={"batch_size": 8}, runtime={"seed": 1})
    with pytest.raises(ResumeMismatchError) as exc:
        run(cfg, out)
    msg = one_line(exc)
    assert "optim.batch_size (16 -> 8)" in msg and "runtime.seed (7 -> 1)" in msg


def test_a_changed_budget_continues_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    run(tiny_config(epochs=1), out)
    cfg = changed(tiny_config(epochs=2), runtime={"log_every": 3})
    with caplog.at_level(logging.WARNING, logger="relpos.train.rundir"):
        _, res = run(cfg, out)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "optim.epochs (1 -> 2)" in warning and "runtime.log_every (2 -> 3)" in warning
    assert "schedule is recomputed" in warning
    assert res.resumed_from is not None and res.steps == 12
    assert steps(out) == [2, 4, 6, 9, 12]  # each step once; the new log_every after step 6
    assert (out / "config.yaml").read_text().count("epochs: 2") == 1


def test_force_new_starts_over_in_place(tmp_path):
    out = tmp_path / "run"
    run(tiny_config(max_steps=6), out)
    (out / "notes.txt").write_text("mine")
    bigger = changed(tiny_config(max_steps=4), encoder={"dim": 48})
    _, res = run(bigger, out, force_new=True)
    assert res.resumed_from is None and res.steps == 4
    assert steps(out) == [2, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-000000003.pt",
        "ckpt-000000004.pt",
    ]
    assert load_checkpoint(out / "final.pt")["config"]["encoder"]["dim"] == 48
    assert (out / "notes.txt").read_text() == "mine"  # only relpos's own files go


def test_no_resume_refuses_a_directory_with_checkpoints(tmp_path):
    out = tmp_path / "run"
    run(tiny_config(max_steps=3), out)
    before = snapshot(out)
    with pytest.raises(FileExistsError) as exc:
        run(tiny_config(max_steps=3), out, resume=False)
    assert str(out) in one_line(exc) and snapshot(out) == before


def test_all_checkpoints_damaged_starts_fresh_deliberately(tmp_path, caplog):
    clean = tmp_path / "clean"
    run(tiny_config(), clean)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(tiny_config(), out, callbacks=[CrashAt(8)])
    old_log = (out / "metrics.jsonl").read_text()
    paths = CheckpointManager(out / "checkpoints").paths()
    assert len(paths) == 2
    for p in paths:
        p.write_bytes(p.read_bytes()[:100])
    with caplog.at_level(logging.WARNING), pytest.warns(RuntimeWarning, match="all 2 checkpoints"):
        _, res = run(tiny_config(), out)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert f"all 2 checkpoints in {out / 'checkpoints'} are damaged" in text
    assert "starting fresh from step 0" in text and "falling back" not in text
    assert res.resumed_from is None and res.steps == 12
    assert steps(out) == steps(clean) == [2, 4, 6, 8, 10, 12]
    assert (out / "metrics.jsonl.old").read_text() == old_log  # moved aside, not lost
    assert sorted(p.name for p in (out / "checkpoints").glob("*.damaged")) == sorted(
        p.name + ".damaged" for p in paths
    )
    assert bit_identical(weights(out / "final.pt"), weights(clean / "final.pt"))


def test_a_damaged_newest_checkpoint_is_set_aside(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(tiny_config(), out, callbacks=[CrashAt(10)])
    newest, previous = CheckpointManager(out / "checkpoints").paths()
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        RuntimeWarning, match=f"falling back to the previous checkpoint {previous.name}"
    ):
        _, res = run(tiny_config(), out)
    assert res.resumed_from == previous and res.steps == 12
    assert steps(out) == [2, 4, 6, 8, 10, 12]
    assert (newest.parent / (newest.name + ".damaged")).exists()


# ---------------------------------------------------------------------- metrics.jsonl
def test_a_rerun_after_a_crash_logs_each_step_once(tmp_path):
    clean = tmp_path / "clean"
    run(tiny_config(), clean)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(tiny_config(), out, callbacks=[CrashAt(9)])  # logged 8, newest checkpoint 6
    assert steps(out) == [2, 4, 6, 8]
    _, res = run(tiny_config(), out)
    assert res.resumed_from is not None and res.resumed_from.name == "ckpt-000000006.pt"
    assert steps(out) == steps(clean)


def test_a_partial_last_line_is_repaired(tmp_path, caplog):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(tiny_config(), out, callbacks=[CrashAt(7)])
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 8, "epoch": 1, "lo')  # a write cut by a kill
    with caplog.at_level(logging.WARNING):
        run(tiny_config(), out)
    assert "dropped a partial last line" in caplog.text
    assert steps(out) == [2, 4, 6, 8, 10, 12]


def test_repair_metrics_by_count_by_step_and_untouched_when_whole(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"step": 2}, {"step": 3, "split": "eval"}, {"step": 4}, {"step": 6}]
    whole = "".join(json.dumps(r) + "\n" for r in recs)
    path.write_text(whole + '{"step": 8, "lo')
    assert repair_metrics(path, records=2) == 2  # a checkpoint's count wins
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in recs[:2])
    path.write_text(whole + '{"step": 8, "lo')
    assert repair_metrics(path, step=4) == 3  # older checkpoints: by step, eval records too
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [2, 3, 4]
    path.write_text(whole[:-1])  # whole records, the last one unterminated
    assert repair_metrics(path, step=6) == 4 and path.read_text() == whole
    mtime = path.stat().st_mtime_ns
    assert repair_metrics(path, records=10) == 4 and path.stat().st_mtime_ns == mtime


# ---------------------------------------------------------------------- damaged --init files
@pytest.fixture
def encoder_export(tmp_path) -> Path:
    torch.manual_seed(0)
    (tmp_path / "init").mkdir()
    return export_encoder(build_model(tiny_config()), tmp_path / "init" / "encoder.safetensors")


def _finetune_from(init: Path) -> TrainConfig:
    cfg = tiny_config("finetune", max_steps=2)
    cfg.finetune.init = str(init)
    return cfg


@pytest.mark.parametrize(
    "damage, names, says",
    [
        ("truncate", "encoder.safetensors", "damaged or not a safetensors file"),
        ("garbage-json", "encoder.json", "not a readable encoder config"),
        ("no-vit", "encoder.json", "no 'vit' entry"),
        ("bad-vit", "encoder.safetensors", "does not build a ViT"),
    ],
)
def test_a_damaged_init_file_names_it(encoder_export, tmp_path, damage, names, says):
    meta = encoder_export.with_suffix(".json")
    if damage == "truncate":
        encoder_export.write_bytes(encoder_export.read_bytes()[:300])
    elif damage == "garbage-json":
        meta.write_text('{"vit": {"dim": 3')
    elif damage == "no-vit":
        meta.write_text('{"modality": {}}')
    else:
        meta.write_text('{"vit": {"no_such_option": 1}}')
    with pytest.raises(ValueError) as exc:
        train(_finetune_from(encoder_export), tiny_data(), tmp_path / "ft")
    msg = one_line(exc)
    assert str(encoder_export.with_name(names)) in msg and says in msg
    assert not (tmp_path / "ft").exists()  # refused before the run directory was made


def test_a_damaged_checkpoint_names_it_in_one_line(tmp_path):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError) as exc:
        load_encoder(bad)
    assert f"checkpoint {bad} is damaged" in one_line(exc)
    good = tmp_path / "run"
    run(tiny_config(max_steps=2), good)
    final = good / "final.pt"
    payload = torch.load(final, weights_only=True)
    payload["model"]["encoder.cls_token"] = torch.zeros(3)  # weights that do not fit
    torch.save(payload, final)
    with pytest.raises(ValueError) as exc:
        load_encoder(final)
    assert f"checkpoint {final}: its config or weights do not rebuild a model" in one_line(exc)


# ---------------------------------------------------------------------- a full disk
def _disk_full_at(monkeypatch, target: str, nth: int = 1) -> None:
    """Make the ``nth`` torch.save into a file whose name starts with ``target`` write a few
    bytes and fail with ENOSPC."""
    real, seen = torch.save, []

    def save(obj, f, *args, **kwargs):
        name = Path(getattr(f, "name", "")).name.lstrip(".")
        if name.startswith(target):
            seen.append(name)
            if len(seen) == nth:
                f.write(b"partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.torch, "save", save)


@pytest.mark.parametrize("target, nth", [("ckpt-", 2), ("final.pt", 1)])
def test_a_full_disk_during_a_checkpoint(tmp_path, monkeypatch, target, nth):
    clean = tmp_path / "clean"
    run(tiny_config(), clean)
    out = tmp_path / "run"
    _disk_full_at(monkeypatch, target, nth)
    with pytest.raises(OSError) as exc:
        run(tiny_config(), out)
    msg = one_line(exc)
    assert exc.value.errno == errno.ENOSPC and "No space left on device" in msg
    assert str(out / ("checkpoints/ckpt-000000006.pt" if nth == 2 else "final.pt")) in msg
    assert "earlier checkpoints are intact" in msg and "rerun the same command" in msg
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")], "a temporary file was left behind"
    assert not (out / "final.pt").exists()
    monkeypatch.undo()
    _, res = run(tiny_config(), out)  # the space is back: resume
    assert res.resumed_from is not None and res.steps == 12
    assert steps(out) == steps(clean)
    assert bit_identical(weights(out / "final.pt"), weights(clean / "final.pt"))


def test_a_full_disk_during_the_encoder_export(tmp_path, monkeypatch):
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    out = tmp_path / "run"
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as exc:
        run(tiny_config(max_steps=3), out)
    msg = one_line(exc)
    assert f"cannot write {out / 'encoder.safetensors'}" in msg and "No space left" in msg
    assert not [p for p in out.rglob(f"*{TMP_MARK}*")] and not (out / "encoder.json").exists()
    monkeypatch.undo()
    _, res = run(tiny_config(max_steps=3), out)
    assert res.resumed_from is not None and load_encoder(res.encoder_path) is not None


# ---------------------------------------------------------------------- provenance
def test_provenance_is_stored_and_carried_into_finetuning(tmp_path):
    pre = tmp_path / "pre"
    _, res = train(tiny_config(max_steps=3), tiny_data(), pre, provenance={"subjects": (1, 2)})
    want = {"subjects": [1, 2]}
    assert read_provenance(res.encoder_path) == want
    assert read_provenance(res.final_checkpoint) == want
    assert read_provenance(CheckpointManager(pre / "checkpoints").paths()[0]) == want
    ft = tmp_path / "ft"
    _, res = train(_finetune_from(res.encoder_path), tiny_data(), ft, provenance={"n": 3})
    assert read_provenance(res.final_checkpoint) == {"n": 3, "init": want}
    assert read_provenance(ft / "encoder.safetensors") == {"n": 3, "init": want}
    with pytest.raises(ValueError, match="provenance must be JSON-able"):
        train(tiny_config(max_steps=3), tiny_data(), tmp_path / "x", provenance={"f": object()})


# ---------------------------------------------------------------------- SIGKILL, then a rerun
KILL_CFG = {"epochs": 2}  # 12 steps, a checkpoint every 3, a log record every 2
KILL_STEPS = 12


def _killable_run(out: str, pace: float) -> None:
    """(forked child) the run, ``pace`` seconds a step; its last step waits to be killed, so a
    kill that lands late on a slow machine still lands in the run, never after it."""
    torch.set_num_threads(1)
    cfg = tiny_config(**KILL_CFG)
    task = make_task(cfg)
    calls = [0]

    def paced(model, batch, gen):
        calls[0] += 1
        time.sleep(pace if calls[0] < KILL_STEPS else 60)
        return task(model, batch, gen)

    torch.manual_seed(123)
    fit(cfg, build_model(cfg), paced, tiny_data(), out)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("kill") / "clean"
        run(tiny_config(**KILL_CFG), out)
    finally:
        torch.set_num_threads(before)
    return out


def kill_and_rerun(out: Path, seed: int, clean: Path) -> dict:
    """Fork a run, SIGKILL it a seeded random time after its first checkpoint, rerun it in
    process to the end; compare with the uninterrupted run. Returns where the kill landed."""
    delay = random.Random(seed).uniform(0.0, 1.0)
    child = multiprocessing.get_context("fork").Process(target=_killable_run, args=(str(out), 0.1))
    child.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "checkpoints").glob("ckpt-*.pt")):
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    landed = {
        "seed": seed,
        "delay_s": round(delay, 3),
        "killed": child.exitcode == -signal.SIGKILL,
        "newest_checkpoint": [p.name for p in CheckpointManager(out / "checkpoints").paths()][:1],
        "logged_steps": [json.loads(x)["step"] for x in open(out / "metrics.jsonl") if x.strip()],
    }
    assert landed["killed"], "the run ended before the kill"
    _, res = run(tiny_config(**KILL_CFG), out)
    assert res.steps == 12
    assert steps(out) == steps(clean)  # each step once, the same steps
    assert bit_identical(weights(out / "final.pt"), weights(clean / "final.pt"))
    landed["bit_identical"] = True
    return landed


@fork
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_point_then_rerun_is_bit_identical(
    tmp_path, uninterrupted, one_thread, seed
):
    landed = kill_and_rerun(tmp_path / "run", 1000 + seed, uninterrupted)
    print("KILL", json.dumps(landed))


@fork
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 15))
def test_sigkill_at_more_random_points(tmp_path, uninterrupted, one_thread, seed):
    landed = kill_and_rerun(tmp_path / "run", 1000 + seed, uninterrupted)
    print("KILL", json.dumps(landed))
