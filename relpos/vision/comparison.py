"""The image method comparison over seeds: ``relpos demo image --methods all --seeds 0,1,2``.

Each seed is one :func:`~relpos.vision.experiment.run_image_demo` in ``OUT/seed<k>`` with that
seed for pretraining and finetuning (the train/test split and the labelled subsets stay those of
``dataset.seed``, so every seed sees the same data); finished seeds are read back, not rerun.
The table gives test accuracy mean ± sd per method and label budget, each method's own pretext
metric against chance, and its wall time per seed (pretraining plus its finetuning runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from relpos.core.atomic import atomic_write_json
from relpos.train.config import merge
from relpos.train.pretext_eval import headline, mean_headline
from relpos.train.recipes import method_label

__all__ = ["format_seeds_table", "run_image_seeds", "summarize_seeds"]


def run_image_seeds(
    cfg: Any, out: str | Path, seeds: list[int], *, progress: bool = True
) -> dict[str, Any]:
    """Run (or read back) the image demo once per seed; write ``OUT/results.json``."""
    from relpos.vision.experiment import ImageConfig, run_image_demo

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds; got {seeds}")
    out = Path(out)
    t0 = time.perf_counter()
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        path = out / f"seed{seed}" / "results.json"
        if path.exists():
            per_seed[seed] = json.loads(path.read_text())
            continue
        seeded = {s: {"runtime": {"seed": seed}} for s in ("pretrain", "finetune")}
        run_cfg = ImageConfig.model_validate(merge(cfg.model_dump(mode="json"), seeded))
        per_seed[seed] = run_image_demo(run_cfg, out / f"seed{seed}", progress=progress)
    summary = summarize_seeds(per_seed)
    table = format_seeds_table(summary, per_seed[seeds[0]]["dataset"], seeds)
    res = {"seeds": seeds, "summary": summary, "table": table,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    atomic_write_json(out / "results.json", res)
    return res


def _wall(run: dict[str, Any], method: str) -> float:
    """Seconds a method took in one seed's run: its pretraining and every finetuning run."""
    timings = run.get("timings_s", {})
    own = [v for k, v in timings.items()
           if k == f"pretrain-{method}" or k.startswith(f"finetune-{method}-")]  # fmt: skip
    return float(sum(own))


def summarize_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per row (``method`` or ``method+linear_probe``): accuracy mean and sd per label budget,
    the headline pretext metric (mean, sd) and mean wall time per seed."""
    runs = list(per_seed.values())
    rows: dict[str, Any] = {}
    for key in runs[0]["accuracy"]:
        method = key.partition("+")[0]
        acc: dict[str, list[float]] = {}
        for r in runs:
            for budget, value in r["accuracy"].get(key, {}).items():
                acc.setdefault(str(budget), []).append(float(value))
        heads = [h for r in runs if (h := headline(r["pretext"].get(method, {})))]
        rows[key] = {
            "accuracy": {b: float(np.mean(v)) for b, v in acc.items()},
            "accuracy_sd": {b: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
                            for b, v in acc.items()},
            "pretext": mean_headline(heads),
            "wall_s": float(np.mean([_wall(r, method) for r in runs])),
            "seeds": len(runs),
        }  # fmt: skip
    return {"rows": rows, "budgets": [str(b) for b in runs[0]["label_budgets"]]}


def format_seeds_table(summary: dict[str, Any], dataset: str, seeds: list[int]) -> str:
    """Accuracy mean ± sd per label budget, the pretext metric vs chance, wall time per seed."""
    budgets = summary["budgets"]
    head = f"{'method':<40}" + "".join(f"{b + ' labels/class':>20}" for b in budgets)
    head += f"   {'pretext (own metric vs chance)':<44}{'wall s':>7}"
    lines = [f"{dataset}: test accuracy, mean ± sd over seeds {seeds}", head]
    for key, r in summary["rows"].items():
        method, _, probe = key.partition("+")
        label = method_label(method, short=True) + (" (linear probe)" if probe else "")
        cells = "".join(
            f"{r['accuracy'].get(b, float('nan')):>12.3f} ± {r['accuracy_sd'].get(b, float('nan')):.3f}"
            for b in budgets
        )
        h = r["pretext"]
        text = (
            "-"
            if h is None or probe
            else (f"{h['name']} {h['value']:.3f} ({h['chance_name']} {h['chance']:.3f})")
        )
        lines.append(f"{label:<40}{cells}   {text:<44}{r['wall_s']:>7.0f}")
    return "\n".join(lines)
