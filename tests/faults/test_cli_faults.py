"""The CLI's catch-all: every failure a user can cause ends as ONE line, ``relpos: error: ...``
naming the file, field or value, with exit status 2 (the traceback only with ``--debug``), and
Ctrl-C as exit status 130 with "rerun the same command to continue"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from relpos import cli
from relpos.errors import INTERRUPTED, one_line

TINY = [
    "--set", "optim.epochs=1", "--set", "optim.max_steps=2", "--set", "optim.batch_size=8",
    "--set", "encoder.dim=16", "--set", "encoder.depth=1", "--set", "encoder.heads=2",
    "--set", "runtime.progress=false", "--set", "runtime.checkpoint_every=0",
]  # fmt: skip


def error_line(err: str) -> str:
    """The one error line in ``err`` (stderr), progress bars aside; asserts there is exactly one
    and that nothing but progress bars surrounds it."""
    parts = err.split("relpos: error: ")
    assert len(parts) == 2, err
    line, _, rest = parts[1].partition("\n")
    others = [s for s in (parts[0] + rest).replace("\r", "\n").splitlines() if s.strip()]
    assert all("|" in s for s in others), err  # only tqdm bars besides the error line
    return f"relpos: error: {line}\n"


def fails(capsys, *argv: str, code: int = 2) -> str:
    """Run ``relpos ARGV`` in-process; assert exit ``code`` and one error line; return it."""
    got = cli.main(list(argv))
    _, err = capsys.readouterr()
    assert got == code, err
    return error_line(err)


def argparse_fails(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and err.startswith("relpos: error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------- numbers at the CLI
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "x", "--records", "-2"], "argument --records: must be >= 0, got -2"),
        (["synth", "x", "--jobs", "0"], "argument --jobs: must be in [1, 256], got 0"),
        (["synth", "x", "--max-hours", "-1"], "argument --max-hours: must be a finite number > 0"),
        (["synth", "x", "--max-hours", "nan"], "argument --max-hours: must be a finite number > 0"),
        (["prepare", "a", "b", "--limit", "-1"], "argument --limit: must be >= 1, got -1"),
        (["prepare", "a", "b", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
        (["prepare", "a", "b", "--jobs", "-3"], "argument --jobs: must be in [1, 256], got -3"),
        (["prepare", "a", "b", "--jobs", "two"], "argument --jobs: 'two' is not an integer"),
        (["splits", "s", "--test", "-1"], "argument --test: must be >= 0, got -1"),
        (["evaluate", "c", "--store", "s", "--batch-size", "0"], "argument --batch-size: must be"),
        (["ablate", "sleep", "--seeds", "0,x"], "argument --seeds: expected comma-separated"),
        (["demo", "image", "--seeds", "1;2"], "argument --seeds: expected comma-separated"),
        (["ablate", "sleep", "--jobs", "0"], "argument --jobs: must be in [1, 64], got 0"),
    ],
)
def test_bad_cli_numbers_are_one_line_before_any_work(capsys, tmp_path, argv, message):
    os.chdir(tmp_path)
    err = argparse_fails(capsys, *argv)
    assert message in err
    assert not (tmp_path / "x").exists()  # nothing was written


# ---------------------------------------------------------------------- numbers in configs
@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("optim.batch_size=0", "optim.batch_size"),
        ("optim.batch_size=-4", "optim.batch_size"),
        ("optim.accum_steps=0", "optim.accum_steps"),
        ("runtime.log_every=0", "runtime.log_every"),
        ("optim.epochs=0", "optim.epochs"),
        ("optim.epochs=-1", "optim.epochs"),
        ("optim.max_steps=0", "optim.max_steps"),
    ],
)
def test_bad_config_numbers_name_the_field(capsys, cli_store, override, field):
    out = cli_store.parent / "run"
    err = fails(capsys, "pretrain", "--store", str(cli_store), "--out", str(out), "--set", override)
    assert f"relpos: error: {field}: " in err and "(got " in err
    assert not out.exists()  # rejected before the run directory is made


# ---------------------------------------------------------------------- damaged files
def _splits(store) -> None:
    assert cli.main(["splits", str(store), "--finetune", "2", "--test", "1"]) == 0


def test_truncated_index_is_rebuilt(capsys, cli_store):
    (cli_store / "index.npz").write_bytes((cli_store / "index.npz").read_bytes()[:100])
    assert cli.main(["splits", str(cli_store), "--finetune", "2", "--test", "1"]) == 0
    assert "6 subjects" not in capsys.readouterr().err  # no error


@pytest.mark.parametrize(
    "damage",
    ["store.json", "record meta", "splits.json"],
)
def test_bad_json_names_the_file(capsys, cli_store, damage):
    _splits(cli_store)
    capsys.readouterr()
    target = {
        "store.json": cli_store / "store.json",
        "record meta": sorted((cli_store / "records").glob("*.json"))[0],
        "splits.json": cli_store / "splits.json",
    }[damage]
    target.write_text('{"truncated": ')
    (cli_store / "index.npz").unlink(missing_ok=True)  # the metas are read again
    err = fails(capsys, "pretrain", "--store", str(cli_store), "--out", str(cli_store.parent / "r"), *TINY)  # fmt: skip
    assert str(target) in err


def test_damaged_init_names_the_file(capsys, cli_store):
    _splits(cli_store)
    pt = cli_store.parent / "pt"
    assert cli.main(["pretrain", "--store", str(cli_store), "--out", str(pt), *TINY]) == 0
    enc = pt / "encoder.safetensors"
    enc.write_bytes(enc.read_bytes()[:200])
    capsys.readouterr()
    err = fails(capsys, "finetune", "--store", str(cli_store), "--init", str(enc), "--out", str(pt.parent / "ft"), *TINY)  # fmt: skip
    assert str(enc) in err
    (pt / "encoder.json").write_text("{not json")
    err = fails(capsys, "finetune", "--store", str(cli_store), "--init", str(enc), "--out", str(pt.parent / "ft2"), *TINY)  # fmt: skip
    assert "encoder.json" in err


def test_synth_onto_a_file_names_it(capsys, tmp_path):
    target = tmp_path / "afile"
    target.write_text("keep me")
    err = fails(capsys, "synth", str(target), "--records", "1", "--max-hours", "0.1", "--jobs", "1")  # fmt: skip
    assert str(target) in err and target.read_text() == "keep me"


def test_held_store_lock_is_one_line(capsys, cli_records, cli_store):
    fcntl = pytest.importorskip("fcntl")
    with open(cli_store / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = fails(capsys, "prepare", str(cli_records), str(cli_store), "--jobs", "1")
    assert str(cli_store) in err and "lock" in err


# ---------------------------------------------------------------------- splits
def test_splits_refuses_to_move_subjects_without_force(capsys, cli_store):
    _splits(cli_store)
    before = (cli_store / "splits.json").read_text()
    assert cli.main(["splits", str(cli_store), "--finetune", "2", "--test", "1"]) == 0  # same
    capsys.readouterr()
    err = fails(capsys, "splits", str(cli_store), "--finetune", "2", "--test", "1", "--seed", "7")
    assert str(cli_store / "splits.json") in err and "--force" in err and "->" in err
    assert (cli_store / "splits.json").read_text() == before
    assert cli.main(["splits", str(cli_store), "--finetune", "2", "--test", "1", "--seed", "7", "--force"]) == 0  # fmt: skip
    assert (cli_store / "splits.json").read_text() != before


# ---------------------------------------------------------------------- the catch-all itself
def test_unexpected_errors_are_one_line_with_a_debug_hint(capsys, monkeypatch):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(cli.COMMANDS, "models", (cli.COMMANDS["models"][0], boom))
    err = fails(capsys, "models")
    assert (
        err == "relpos: error: ZeroDivisionError: division by zero [--debug shows the traceback]\n"
    )
    assert cli.main(["models", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("division by zero\n")


def test_ctrl_c_in_process_exits_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "models", (cli.COMMANDS["models"][0], interrupted))
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err.strip() == f"relpos: {INTERRUPTED}"


def test_one_line_folds_multiline_messages_and_names_os_files():
    assert one_line(ValueError("a\n  b\n")) == "a; b"
    err = OSError(28, "No space left on device", "/data/store/x.npy")
    assert one_line(err) == "No space left on device (/data/store/x.npy)"
    assert one_line(KeyError("vit")) == "missing key 'vit'"


@pytest.mark.slow
def test_sigint_during_pretraining_exits_130_and_the_rerun_continues(cli_store, tmp_path):
    """A real Ctrl-C (SIGINT) in the middle of ``relpos pretrain``: exit 130, the message, and
    the same command again finishes from the last checkpoint."""
    _splits(cli_store)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "relpos", "pretrain", "--store", str(cli_store), "--out",
            str(out), *TINY[:2], "--set", "optim.epochs=50", *TINY[4:-2],
            "--set", "runtime.checkpoint_every=5", "--set", "optim.max_steps=400"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("ckpt-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().endswith(f"relpos: {INTERRUPTED}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400


def test_evaluate_warns_when_a_replaced_split_leaks_training_subjects(capsys, caplog, cli_store):
    """pretrain -> finetune -> evaluate on test: clean. Replace the split (--force, another seed)
    and evaluate again: the subjects the model was pretrained or finetuned on are named."""
    _splits(cli_store)
    runs = cli_store.parent / "runs"
    store = ["--store", str(cli_store)]
    assert cli.main(["pretrain", *store, "--out", str(runs / "pt"), *TINY]) == 0
    enc = str(runs / "pt" / "encoder.safetensors")
    assert cli.main(["finetune", *store, "--init", enc, "--out", str(runs / "ft"), *TINY]) == 0
    final = str(runs / "ft" / "final.pt")
    with caplog.at_level("WARNING"):
        assert cli.main(["evaluate", final, *store, "--no-plots"]) == 0
    assert "not a held-out score" not in caplog.text
    new = ["splits", str(cli_store), "--finetune", "2", "--test", "3", "--seed", "3", "--force"]
    assert cli.main(new) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cli.main(["evaluate", final, *store, "--no-plots", "--out", str(runs / "ev")]) == 0
    assert "not a held-out score" in caplog.text and final in caplog.text
    report = json.loads((runs / "ev" / "metrics.json").read_text())
    assert set(report["overlap"]) <= {"trained", "pretrained"} and report["overlap"]


def test_a_modality_whose_axes_do_not_fit_the_data_names_the_preset(capsys, cli_store):
    """Raw EEG epochs are 1-D; the spectrogram modality needs its preset's transform."""
    _splits(cli_store)
    capsys.readouterr()
    out = str(cli_store.parent / "r")
    err = fails(capsys, "pretrain", "--modality", "spectrogram", "--store", str(cli_store), "--out", out)  # fmt: skip
    assert "takes 2-D inputs" in err and "--preset physionet2018-spectrogram" in err
