"""``relpos report``: reading metrics.jsonl, the summary, its table and the plot."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from relpos.train.report import format_summary, load_metrics, plot_metrics, summarize


def _train(step: int, epoch: int, loss: float, rate: float) -> dict:
    return {"step": step, "epoch": epoch, "lr": 1e-3 / step, "loss": loss, "baseline": 2.0,
            "acc": 0.1 * step, "samples_per_s": rate, "time": 1000.0 + 10 * step}  # fmt: skip


def _write(run: Path, records: list[dict], tail: str = "") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run / "metrics.jsonl").write_text(text)
    return run


RECORDS = [
    _train(2, 0, 1.5, 100.0),
    _train(4, 0, 1.0, 300.0),
    {"step": 4, "epoch": 1, "split": "eval", "kappa": 0.5, "time": 1045.0},
    _train(6, 1, 0.5, 200.0),
]


def test_summarize_reads_first_last_rates_and_evals(tmp_path):
    run = _write(tmp_path / "run", RECORDS)
    train, evals = load_metrics(run)
    assert [r["step"] for r in train] == [2, 4, 6] and len(evals) == 1
    s = summarize(run)
    assert s["steps"] == 6 and s["epochs"] == 2
    assert s["first"]["loss"] == 1.5 and s["last"]["loss"] == 0.5
    assert s["last"]["acc"] == pytest.approx(0.6)
    assert "time" not in s["last"] and "step" not in s["last"]
    assert s["samples_per_s_median"] == 200.0
    assert s["wall_s"] == 40.0
    assert s["evals"] == [RECORDS[2]]


def test_format_summary_lists_metrics_and_evals(tmp_path):
    text = format_summary(summarize(_write(tmp_path / "run", RECORDS)))
    lines = text.splitlines()
    assert lines[0].startswith(f"run {tmp_path / 'run'}: 6 steps, 2 epoch(s), 200 samples/s")
    loss = next(line for line in lines if line.startswith("loss"))
    assert loss.split() == ["loss", "1.5", "0.5"]
    assert not any(line.startswith("samples_per_s") for line in lines)
    assert lines[-1] == "eval after epoch 1 (step 4): kappa 0.5"


def test_partial_last_line_is_skipped_but_a_bad_middle_line_names_it(tmp_path, caplog):
    run = _write(tmp_path / "killed", RECORDS, tail='{"step": 8, "epo')
    with caplog.at_level(logging.WARNING, logger="relpos.train.report"):
        assert summarize(run)["steps"] == 6
    assert "metrics.jsonl:5: skipped a partial last line" in caplog.text
    bad = _write(tmp_path / "bad", RECORDS[:1], tail="garbage\n" + json.dumps(RECORDS[1]) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON record"):
        load_metrics(bad)


def test_a_record_glued_to_a_partial_one_is_recovered(tmp_path, caplog):
    # an older relpos appended to a log a kill had cut: '{"step": 6, "lo{"step": 6, ...}'
    glued = '{"step": 6, "lo' + json.dumps(RECORDS[3]) + "\n"
    run = _write(tmp_path / "glued", RECORDS[:3], tail=glued)
    with caplog.at_level(logging.WARNING, logger="relpos.train.report"):
        train, evals = load_metrics(run)
    assert train == [RECORDS[0], RECORDS[1], RECORDS[3]] and evals == [RECORDS[2]]
    assert "metrics.jsonl:4: dropped a partial record glued to the next one" in caplog.text


def test_missing_or_empty_runs_fail_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="relpos run directory"):
        summarize(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no training records"):
        summarize(_write(tmp_path / "evals-only", [RECORDS[2]]))


def test_plot_metrics_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    run = _write(tmp_path / "run", RECORDS)
    out = plot_metrics(run)
    assert out == run / "report.png" and out.stat().st_size > 0
    other = plot_metrics(run, tmp_path / "curves.png")
    assert other.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
