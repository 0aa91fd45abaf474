"""The command line, in-process (``relpos.cli.main``) on tiny data: every command runs, names are
checked with the valid ones listed, and errors exit with status 2 and one line."""

from __future__ import annotations

import numpy as np
import pytest

from relpos import cli
from relpos.bench import BenchResult, loop_extract
from relpos.core.extract import extract
from relpos.core.samplers import RandomBoxes

#: a model and budget of seconds for the training commands
TINY = [
    "--set", "optim.epochs=1", "--set", "optim.max_steps=2", "--set", "optim.batch_size=8",
    "--set", "encoder.dim=16", "--set", "encoder.depth=1", "--set", "encoder.heads=2",
    "--set", "runtime.progress=false", "--set", "runtime.checkpoint_every=0",
]  # fmt: skip


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sleep_commands_end_to_end(tmp_path, capsys):
    """synth -> prepare -> splits -> pretrain (--store) -> finetune (--data-source) -> evaluate
    -> report, on three 15-minute records."""
    rec, store, runs = tmp_path / "rec", tmp_path / "store", tmp_path / "runs"
    code, out, _ = run(capsys, "synth", str(rec), "--records", "3", "--max-hours", "0.25", "--jobs", "1")  # fmt: skip
    assert code == 0 and out.strip() == f"3 records in {rec}"
    code, out, _ = run(capsys, "prepare", str(rec), str(store), "--jobs", "1")
    assert code == 0 and "records in store           3" in out
    code, out, _ = run(capsys, "splits", str(store), "--finetune", "1", "--test", "1")
    assert code == 0 and out.startswith(f"{store / 'splits.json'}: pretrain 1 subjects")

    code, out, _ = run(capsys, "pretrain", "--store", str(store), "--out", str(runs / "pt"), *TINY)  # fmt: skip
    assert code == 0 and out.startswith(f"pretrained encoder: {runs / 'pt' / 'encoder.safetensors'}")  # fmt: skip
    encoder = str(runs / "pt" / "encoder.safetensors")
    code, out, _ = run(
        capsys, "finetune", "--data-source", "eeg_store", "--data", str(store), "--init", encoder,
        "--out", str(runs / "ft"), "--set", "finetune.class_balanced=true", *TINY,
    )  # fmt: skip
    assert code == 0 and out.startswith(f"finetuned model: {runs / 'ft' / 'final.pt'}")
    code, out, _ = run(capsys, "evaluate", str(runs / "ft" / "final.pt"), "--store", str(store), "--no-plots")  # fmt: skip
    assert code == 0 and "kappa" in out
    code, out, _ = run(capsys, "report", str(runs / "pt"), "--no-plot")
    assert code == 0 and out.strip()

    # the same run again with --no-resume refuses to overwrite checkpoints
    code, _, err = run(capsys, "pretrain", "--store", str(store), "--out", str(runs / "pt"), "--no-resume", *TINY)  # fmt: skip
    assert code == 2 and "already holds checkpoints" in err
    code, _, err = run(capsys, "pretrain", "--store", str(store), "--splits", str(tmp_path / "none.json"), "--out", str(runs / "x"))  # fmt: skip
    assert code == 2 and "run `relpos splits" in err
    code, _, err = run(capsys, "pretrain", "--store", str(store), "--data", str(store), "--out", str(runs / "x"))  # fmt: skip
    assert code == 2 and "--store S is --data-source eeg_store --data S" in err


def test_image_modality_from_arrays(tmp_path, capsys):
    """`relpos pretrain --modality image --data file.npz`: channels and extent come from the
    data, the rest from the image modality's preset."""
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.random((24, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 3, 24))
    small = ["--set", "modality.token_shape=[2,2]", "--set", "pretext.sampler.size=2"]
    code, _, err = run(
        capsys, "pretrain", "--modality", "image", "--data", str(data), "--out",
        str(tmp_path / "pt"), *small, "--set", "pretext.sampler.count=9", *TINY,
        "--data-option", "normalize=null", "--data-source", "image_arrays",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "finetune", "--modality", "image", "--data", str(data), "--out", str(tmp_path / "ft"),
        "--init", str(tmp_path / "pt" / "encoder.safetensors"), "--set", "modality.token_shape=[2,2]",
        "--set", "finetune.num_classes=3", *TINY,
    )  # fmt: skip
    assert code == 0, err
    from relpos.train.checkpoint import load_model

    _, cfg = load_model(tmp_path / "ft" / "final.pt")
    assert cfg.modality.name == "image" and cfg.modality.extent == [8, 8]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--modality", "audio"], "unknown modality 'audio'; known: "),
        (["--set", "pretext.head=transformer"], "unknown head 'transformer'; known:"),
        (["--set", "pretext.sampler.kind=rings"], "unknown sampler 'rings'; known: "),
        (["--set", "encoder.preset=vit_huge"], "unknown encoder preset 'vit_huge'; known:"),
        (["--preset", "nope"], "unknown preset 'nope'; shipped presets:"),
        (["--data-source", "hdf5", "--data", "x"], "unknown data source 'hdf5'; known: "),
        (["--modality", "image"], "modality 'image' has 2 axes; extent [3000] has 1"),
        ([], "give --data (what the data source reads) or --store"),
        (["--data", "x", "--data-option", "size"], "--data-option 'size' must look like key=value"),
        (["--plugin", "relpos_no_such_plugin"], "--plugin relpos_no_such_plugin: cannot import"),
    ],
)
def test_unknown_names_fail_at_load(tmp_path, capsys, argv, message):
    if argv[:2] == ["--modality", "image"]:
        argv = [*argv, "--preset", "physionet2018-demo"]  # a 1-D preset for a 2-D modality
    code, _, err = run(capsys, "pretrain", "--out", str(tmp_path / "r"), *argv)
    assert (
        code == 2 and message in err and err.startswith("relpos: error:") and err.count("\n") == 1
    )


def test_unknown_method_is_a_one_line_error_listing_the_methods(capsys, tmp_path):
    code, _, err = run(
        capsys, "pretrain", "--store", "s", "--out", str(tmp_path), "--method", "byol"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown method 'byol'; known: part, part_grid, mae, mp3, droppos, rp" in err


def test_models(capsys):
    code, out, _ = run(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["preset", "token_dim", "dim", "depth", "heads", "params"]  # fmt: skip
    assert any(line.split() == ["vit_mini", "48", "128", "4", "4", "799,744"] for line in lines)


def test_bench_command(monkeypatch, capsys):
    import relpos.bench

    seen = {}

    def fake_run(quick=False, device=None, seed=0):
        seen.update(quick=quick, device=device)
        return [BenchResult("extract", 0.5, "loop", 2.0)]

    monkeypatch.setattr(relpos.bench, "run", fake_run)
    code, out, _ = run(capsys, "bench", "--quick", "--device", "cpu")
    assert code == 0 and seen == {"quick": True, "device": "cpu"}
    assert "device cpu" in out and "extract" in out and "4.0" in out


def test_bench_reference_loop_matches_extract():
    import torch

    x = torch.randn(2, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    spans = RandomBoxes(size=4, count=5, snap=True)((12, 12), 2, generator=g)  # exact copies
    assert torch.allclose(loop_extract(x, spans, (4, 4)), extract(x, spans, (4, 4)), atol=1e-5)


def test_report_without_metrics(tmp_path, capsys):
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 2 and "metrics.jsonl" in err
