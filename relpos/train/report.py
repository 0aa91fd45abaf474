"""``relpos report RUN_DIR``: read a run's ``metrics.jsonl``, print a summary and plot curves.

A log cut by a kill is read with a warning, never a crash: a partial last line is skipped, and
a record glued to a partial one (written by older versions that resumed without repairing the
log) is recovered.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["format_summary", "load_metrics", "plot_metrics", "summarize"]

_SKIP = {"step", "epoch", "time", "split"}


def load_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training records and evaluation records of a run, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a relpos run directory?")
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec, start = _record(line)
        if rec is None and i == len(lines):
            log.warning("%s:%d: skipped a partial last line (a run killed mid-write)", path, i)
            continue
        if rec is None:
            raise ValueError(f"{path}:{i}: not a JSON record")
        if start:
            log.warning("%s:%d: dropped a partial record glued to the next one", path, i)
        (evals if rec.get("split") else train).append(rec)
    return train, evals


def _record(line: str) -> tuple[dict[str, Any] | None, int]:
    """The record on one line and where it starts: for ``<partial>{...}`` (a cut write followed
    by a whole record) the whole record at the end; ``(None, 0)`` if there is none."""
    for start in [0] + [i for i in range(1, len(line)) if line.startswith('{"', i)]:
        try:
            rec = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            return rec, start
    return None, 0


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """Steps, epochs, first and last value of every logged metric, median throughput, logged
    wall time and the evaluation records of a run."""
    train, evals = load_metrics(run_dir)
    if not train:
        raise ValueError(f"{run_dir}: metrics.jsonl holds no training records yet")
    keys = [k for k in train[-1] if k not in _SKIP]
    first, last = train[0], train[-1]
    rates = [r["samples_per_s"] for r in train if "samples_per_s" in r]
    return {
        "run": str(run_dir),
        "steps": last["step"],
        "epochs": last["epoch"] + 1,
        "first": {k: first.get(k) for k in keys},
        "last": {k: last.get(k) for k in keys},
        "samples_per_s_median": float(np.median(rates)) if rates else float("nan"),
        "wall_s": last["time"] - first["time"] if "time" in last else float("nan"),
        "evals": evals,
    }


def format_summary(s: dict[str, Any]) -> str:
    """A printable table of a :func:`summarize` result."""
    lines = [
        f"run {s['run']}: {s['steps']} steps, {s['epochs']} epoch(s), "
        f"{s['samples_per_s_median']:.0f} samples/s (median), {s['wall_s']:.0f} s logged",
        f"{'metric':<22} {'first':>12} {'last':>12}",
    ]
    for k, v in s["last"].items():
        if k == "samples_per_s":
            continue
        f = s["first"].get(k)
        lines.append(f"{k:<22} {_num(f):>12} {_num(v):>12}")
    for e in s["evals"]:
        items = ", ".join(f"{k} {_num(v)}" for k, v in e.items() if k not in _SKIP)
        lines.append(f"eval after epoch {e['epoch']} (step {e['step']}): {items}")
    return "\n".join(lines)


def _num(v: Any) -> str:
    if isinstance(v, (int, float)):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def plot_metrics(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Loss (and the pretext baseline), learning rate and throughput against steps, saved to
    ``path`` (default ``RUN_DIR/report.png``); returns the image's path."""
    from matplotlib.figure import Figure

    train, evals = load_metrics(run_dir)
    steps = np.array([r["step"] for r in train])
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.subplots(1, 3)
    ax[0].plot(steps, [r["loss"] for r in train], label="loss")
    if train and "baseline" in train[0]:
        ax[0].plot(steps, [r["baseline"] for r in train], "--", label="predict-zero baseline")
    if train and "acc" in train[0]:
        ax0b = ax[0].twinx()
        ax0b.plot(steps, [r["acc"] for r in train], color="tab:green", alpha=0.6, label="train acc")
        ax0b.set_ylabel("accuracy")
    ax[0].set_xlabel("step")
    ax[0].set_title("loss")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[1].plot(steps, [r["lr"] for r in train])
    ax[1].set_title("learning rate")
    ax[1].set_xlabel("step")
    ax[2].plot(steps, [r.get("samples_per_s", np.nan) for r in train])
    ax[2].set_title("samples/s")
    ax[2].set_xlabel("step")
    for e in evals:
        ax[0].axvline(e["step"], color="grey", lw=0.5)
    out = Path(path) if path is not None else Path(run_dir) / "report.png"
    fig.savefig(out, dpi=110)
    return out
