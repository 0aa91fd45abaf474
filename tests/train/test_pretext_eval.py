"""Held-out pretext scoring: seeded draws, example-weighted means, ratios to the no-information
prediction."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from relpos.train.config import TrainConfig, build_model
from relpos.train.pretext_eval import pretext_ratios, pretext_scores


def signal_config(**pretext) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "modality": {"name": "signal", "channels": 2, "extent": [400], "token_shape": [20]},
            "encoder": {"preset": "vit_eeg_mini", "dim": 32, "depth": 1, "heads": 2},
            "pretext": {"sampler": {"kind": "windows", "length": 20, "count": 8}, "num_pairs": 16,
                        **pretext},
        }
    )  # fmt: skip


def noise(n: int = 50) -> TensorDataset:
    return TensorDataset(torch.randn(n, 2, 400, generator=torch.Generator().manual_seed(0)))


def test_ratios_divide_by_the_matching_baseline():
    errors = {"t": 2.0, "zero_t": 4.0, "s_t": 0.3, "zero_s_t": 0.0, "t@dropped": 1.0,
              "zero_t@dropped": 2.0, "loss": 9.0}  # fmt: skip
    assert pretext_ratios(errors) == {"t": 0.5, "t@dropped": 0.5}


def test_same_seed_same_draws_and_untrained_model_is_at_baseline():
    cfg = signal_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    a = pretext_scores(model, cfg, noise(), batch_size=16, seed=3)
    b = pretext_scores(model, cfg, noise(), batch_size=16, seed=3)
    c = pretext_scores(model, cfg, noise(), batch_size=16, seed=4)
    assert a == b and a["errors"] != c["errors"]
    assert a["examples"] == 50 and model.training  # the mode is restored
    # a random-init model predicts near zero: its error is at the baseline, not below it
    assert 0.9 < a["ratio"]["t"] < 1.2


def test_means_are_weighted_by_examples():
    """A last, smaller batch counts for its examples, not as a whole batch."""
    from relpos.train.tasks import PretrainTask

    cfg = signal_config()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    data = noise(3)
    got = pretext_scores(model, cfg, data, batch_size=2, seed=1)
    task, gen = PretrainTask(cfg), torch.Generator().manual_seed(1)
    with torch.no_grad():
        first = task(model, [data.tensors[0][:2]], gen)[1]["zero_t"]
        last = task(model, [data.tensors[0][2:]], gen)[1]["zero_t"]
    expected = (2 * float(first) + float(last)) / 3
    assert got["errors"]["zero_t"] == pytest.approx(expected, rel=1e-6)
    assert got["errors"]["zero_t"] != pytest.approx((float(first) + float(last)) / 2, rel=1e-6)


def test_subset_is_seeded_and_sized():
    cfg = signal_config(pos_embed="sincos", pos_drop=0.25, pos_unit=20)
    torch.manual_seed(0)
    model = build_model(cfg)
    a = pretext_scores(model, cfg, noise(), batch_size=8, max_examples=24, seed=1, subset_seed=0)
    b = pretext_scores(model, cfg, noise(), batch_size=8, max_examples=24, seed=1, subset_seed=5)
    assert a["examples"] == b["examples"] == 24 and a["errors"] != b["errors"]
    # with dropped positions the pairs whose target lost its position are scored separately
    assert {"t@dropped", "t"} <= set(a["ratio"]) and 0 < a["errors"]["scored_frac"] < 1


def test_needs_a_pretraining_config_and_data():
    cfg = signal_config()
    model = build_model(cfg)
    with pytest.raises(ValueError, match="pretraining config"):
        pretext_scores(model, cfg.model_copy(update={"task": "finetune"}), noise())
    with pytest.raises(ValueError, match="empty"):
        pretext_scores(model, cfg, TensorDataset(torch.zeros(0, 2, 400)))
