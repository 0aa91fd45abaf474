"""examples/own_method.py: a head and a method of one's own, registered from outside relpos,
learn their pretexts; the method also trains from the command line as a --plugin."""

from pathlib import Path

import numpy as np
import pytest
import torch

from relpos.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own_method.py"


@pytest.fixture
def example(load_example):
    return load_example("own_method", register=True)  # as --plugin loads it


@pytest.mark.slow
def test_own_head_and_method_learn_their_pretexts(tmp_path, example):
    out = example.main(steps=40, out=str(tmp_path), depth=1)
    assert out["mse"] < 0.5 * out["mse_zero"]
    assert out["order_acc"] > 0.7
    for run in ("part", "order"):
        assert (tmp_path / run / "encoder.safetensors").exists()


def test_head_is_antisymmetric_and_options_are_checked(example):
    head = example.DifferenceHead(8, 1)
    feats, pairs = torch.randn(2, 5, 8), torch.randint(0, 5, (2, 7, 2))
    assert torch.allclose(head(feats, pairs), -head(feats, pairs.flip(-1)))  # antisymmetric
    with pytest.raises(ValueError, match="pretext.options of method 'order': pairs"):
        example.config(5, method="order", options={"pairs": 0})


def test_method_from_the_command_line(tmp_path, example):
    x = np.asarray(example.chirps(16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["pretrain", "--plugin", str(EXAMPLE), "--method", "order", "--modality", "signal",
            "--data-source", "arrays", "--data", str(tmp_path / "x.npy"), "--out",
            str(tmp_path / "run"), "--set", "optim.max_steps=2", "--set", "optim.batch_size=8",
            "--set", "encoder.dim=16", "--set", "encoder.heads=2", "--set", "encoder.depth=1",
            "--set", "pretext.sampler.length=32", "--set", "modality.token_shape=[32]",
            "--set", "runtime.progress=false", "--set", "runtime.checkpoint_every=0"]  # fmt: skip
    assert main(args) == 0
    assert (tmp_path / "run" / "encoder.safetensors").exists()
