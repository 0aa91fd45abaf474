"""Model folders with model cards, in the layout the Hugging Face ecosystem uses:

```
OUT/
  config.json         the ViT constructor config ("vit"), the modality, the full TrainConfig it
                      was trained with, its provenance and the relpos version
  model.safetensors   the encoder's weights
  README.md           the model card: YAML front matter (library_name, license, tags), then
                      model, data, preprocessing, pretext, training budget, results, usage
```

:func:`save_pretrained` writes one from a run directory, a checkpoint or a model;
:func:`relpos.train.checkpoint.load_encoder` reads it back (as it reads ``encoder.safetensors``
exports and checkpoints). This layer knows no domain: what it cannot find in the checkpoint
(e.g. a store's preprocessing pipeline) the caller passes in ``extra``.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from relpos.core.atomic import atomic_path, atomic_write_json, atomic_write_text
from relpos.nn.vit import ViT, count_parameters
from relpos.train.checkpoint import (
    FOLDER_CONFIG,
    FOLDER_WEIGHTS,
    CheckpointManager,
    encoder_of,
    first_line,
    load_checkpoint,
    load_model,
)
from relpos.train.config import TrainConfig
from relpos.train.metrics import json_safe

log = logging.getLogger(__name__)

__all__ = [
    "CARD_FILE",
    "Exportable",
    "model_card",
    "relpos_version",
    "resolve_checkpoint",
    "save_pretrained",
]

CARD_FILE = "README.md"


def relpos_version() -> str:
    """The installed relpos version (``importlib.metadata``), or ``"0+unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("relpos")
    except PackageNotFoundError:  # pragma: no cover - a source tree that is not installed
        return "0+unknown"


@dataclass
class Exportable:
    """What a model folder is made of: the encoder, the config it was trained with (if known),
    its provenance, the step it reached and where it came from."""

    encoder: ViT
    config: TrainConfig | None
    provenance: dict[str, Any]
    step: int | None
    origin: str


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint a path names: a ``.pt`` file itself, or in a run directory ``final.pt``,
    else its newest ``checkpoints/ckpt-*.pt``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory or checkpoint")
    if (path / "final.pt").is_file():
        return path / "final.pt"
    found = CheckpointManager(path / "checkpoints").paths()
    if not found:
        raise FileNotFoundError(f"{path}: holds no final.pt and no checkpoints/ckpt-*.pt")
    return found[0]


def _exportable(
    source: nn.Module | str | Path, config: TrainConfig | None, provenance: dict[str, Any] | None
) -> Exportable:
    if isinstance(source, nn.Module):
        return Exportable(encoder_of(source), config, dict(provenance or {}), None, "a model")
    ckpt_path = resolve_checkpoint(source)
    model, cfg = load_model(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    prov = provenance if provenance is not None else ckpt.get("provenance") or {}
    step = ckpt.get("step")
    return Exportable(encoder_of(model), config or cfg, dict(prov), step, str(ckpt_path))


def _read_results(results: dict[str, Any] | str | Path | None) -> dict[str, Any] | None:
    if results is None or isinstance(results, dict):
        return results
    path = Path(results)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--results {path}: not a readable JSON file ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--results {path}: a JSON object (e.g. metrics.json) expected")
    return data


def save_pretrained(
    source: nn.Module | str | Path,
    out_dir: str | Path,
    *,
    results: dict[str, Any] | str | Path | None = None,
    config: TrainConfig | None = None,
    provenance: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (``config.json``, ``model.safetensors``, ``README.md``) to
    ``out_dir`` and return it.

    Args:
        source: a run directory (its ``final.pt``, else its newest checkpoint), a checkpoint
            (``.pt``), or a model (a ViT, a PART model or a classifier; give ``config`` for a
            full card).
        results: measured results for the card: a dict or a JSON file such as ``relpos
            evaluate``'s ``metrics.json`` (its numbers and per-class F1); without it the card
            says "not measured".
        config: the TrainConfig (default: the checkpoint's).
        provenance: what the run trained on (default: the checkpoint's).
        extra: what this layer cannot know: ``preprocessing`` (a dict or text, e.g. a store's
            pipeline), ``data`` (text), ``license`` (default ``"other"``), ``tags`` (a list),
            ``name`` (the card's title).
    """
    from safetensors.torch import save_file

    exp = _exportable(source, config, provenance)
    extra = dict(extra or {})
    res = _read_results(results)
    out = Path(out_dir)
    config_json = json_safe(_config_json(exp, extra, relpos_version()))
    card = model_card(exp, res, extra, relpos_version())
    tensors = {k: v.detach().cpu().contiguous() for k, v in exp.encoder.state_dict().items()}
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / FOLDER_WEIGHTS) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "relpos": "encoder"})
        atomic_write_json(out / FOLDER_CONFIG, config_json)
        atomic_write_text(out / CARD_FILE, card)
    except Exception as exc:  # OSError, or SafetensorError wrapping the I/O error
        raise OSError(f"cannot write the model folder {out}: {first_line(exc)}") from exc
    log.info("wrote the model folder %s (from %s)", out, exp.origin)
    return out


def _config_json(exp: Exportable, extra: dict[str, Any], version: str) -> dict[str, Any]:
    cfg = exp.config
    return {
        "model_type": "relpos-vit",
        "architectures": ["ViT"],
        "relpos_version": version,
        "vit": exp.encoder.config,
        "modality": cfg.modality.model_dump(mode="json") if cfg else None,
        "train_config": cfg.model_dump(mode="json") if cfg else None,
        "step": exp.step,
        "provenance": exp.provenance,
        "preprocessing": extra.get("preprocessing"),
    }


# ---------------------------------------------------------------------- the card
def model_card(
    exp: Exportable, results: dict[str, Any] | None, extra: dict[str, Any], version: str
) -> str:
    """The ``README.md`` of a model folder (markdown with YAML front matter)."""
    cfg = exp.config
    tags = ["relpos", "self-supervised", "vision-transformer"]
    if cfg is not None:
        tags += [cfg.modality.name, cfg.pretext.method if cfg.task == "pretrain" else "finetuned"]
    tags += [str(t) for t in extra.get("tags", [])]
    front = "\n".join(
        ["---", "library_name: relpos", f"license: {extra.get('license', 'other')}", "tags:"]
        + [f"- {t}" for t in dict.fromkeys(tags)]
        + ["---"]
    )
    title = extra.get("name") or (
        f"relpos ViT encoder: {cfg.pretext.method} {cfg.task} on {cfg.modality.name}"
        if cfg
        else "relpos ViT encoder"
    )
    sections = [
        front,
        f"# {title}",
        f"Exported by relpos {version} from `{exp.origin}`"
        + (f" (step {exp.step})." if exp.step is not None else "."),
        _model_section(exp),
        _data_section(exp, extra),
        _preprocessing_section(exp, extra),
        _pretext_section(cfg),
        _budget_section(exp),
        _results_section(results),
        _usage_section(),
    ]
    return "\n\n".join(sections) + "\n"


def _model_section(exp: Exportable) -> str:
    v = exp.encoder.config
    lines = [
        "## Model",
        "",
        f"- architecture: ViT, {v['depth']} blocks, width {v['dim']}, {v['heads']} heads, "
        f"MLP ratio {v['mlp_ratio']:g}, {v['embed']} token embedding, position embedding "
        f"`{v['pos_embed']}`, class token {v['class_token']}",
        f"- parameters: {count_parameters(exp.encoder):,}",
        f"- tokens: {v['token_dim']} values each"
        + (f" ({v['channels']} channels x {list(v['token_shape'])})" if v["token_shape"] else "")
        + "; classifier: "
        + (f"{v['num_classes']} classes" if v["num_classes"] else "none"),
    ]
    if exp.config is not None:
        m = exp.config.modality
        lines.append(
            f"- input: modality `{m.name}`, {m.channels} channels x extent {list(m.extent)}"
        )
    lines.append(f"- files: `{FOLDER_WEIGHTS}` (weights), `{FOLDER_CONFIG}` (configs)")
    return "\n".join(lines)


def _data_section(exp: Exportable, extra: dict[str, Any]) -> str:
    lines = ["## Data", ""]
    prov, role = exp.provenance, "trained on"
    while isinstance(prov, dict) and prov:  # the run, then the runs its init came from
        where = prov.get("store") or prov.get("source") or prov.get("data")
        subjects = prov.get("subjects")
        parts = [f"`{where}`" if where else "an unnamed source"]
        if prov.get("split"):
            parts.append(f"split `{prov['split']}`")
        if isinstance(subjects, list):
            parts.append(f"{len(subjects)} subjects")
        lines.append(f"- {role}: " + ", ".join(parts))
        prov, role = prov.get("init") or {}, "pretrained on"
    if extra.get("data"):
        lines.append(f"- {extra['data']}")
    if len(lines) == 2:
        lines.append("not recorded (the run stored no provenance)")
    return "\n".join(lines)


def _preprocessing_section(exp: Exportable, extra: dict[str, Any]) -> str:
    pre = extra.get("preprocessing") or exp.provenance.get("preprocessing")
    if not pre:
        return "## Preprocessing\n\nnot recorded"
    if isinstance(pre, str):
        return f"## Preprocessing\n\n{pre}"
    import yaml

    return "## Preprocessing\n\n```yaml\n" + yaml.safe_dump(pre, sort_keys=False).strip() + "\n```"


def _pretext_section(cfg: TrainConfig | None) -> str:
    if cfg is None:
        return "## Pretext\n\nnot recorded (exported from a model without its config)"
    p = cfg.pretext
    lines = ["## Pretext", ""]
    if cfg.task == "finetune":
        f = cfg.finetune
        lines += [
            f"- finetuned: {f.num_classes} classes, position embedding `{f.pos_embed}`, "
            f"linear probe {f.linear_probe}, label smoothing {f.label_smoothing:g}",
            f"- initialised from: `{f.init}`" if f.init else "- initialised from scratch",
        ]
        return "\n".join(lines)
    sampler = p.sampler.model_dump(mode="json")
    lines += [
        f"- method: `{p.method}`" + (f", options {json.dumps(p.options)}" if p.options else ""),
        f"- sampler: `{sampler.get('kind')}` {json.dumps(sampler)}",
        f"- {p.num_pairs} pairs per example, head `{p.head}`, loss `{p.loss}`, scale "
        f"`{p.scale}`, position drop {p.pos_drop:g}",
    ]
    return "\n".join(lines)


def _budget_section(exp: Exportable) -> str:
    if exp.config is None:
        return "## Training budget\n\nnot recorded"
    o = exp.config.optim
    per_step = o.batch_size * o.accum_steps
    steps = "unknown" if exp.step is None else f"{exp.step:,}"
    seen = "unknown" if exp.step is None else f"{exp.step * per_step:,} (single process)"
    rows = [
        ("steps", steps),
        (
            "epochs (configured)",
            f"{o.epochs}" + (f", max {o.max_steps} steps" if o.max_steps else ""),
        ),
        ("batch size", f"{o.batch_size} x {o.accum_steps} accumulation"),
        ("samples seen", seen),
        ("optimiser", f"AdamW, lr {o.lr:g} (min {o.min_lr:g}), weight decay {o.weight_decay:g}"),
        ("seed", str(exp.config.runtime.seed)),
    ]
    return "## Training budget\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _results_section(results: dict[str, Any] | None) -> str:
    if not results:
        return "## Results\n\nnot measured"
    scalars = {
        k: v
        for k, v in results.items()
        if isinstance(v, (int, float)) or (v is None and k == "kappa")
    }
    lines = ["## Results", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in scalars.items() if not isinstance(v, bool)]
    per_class = results.get("per_class")
    if isinstance(per_class, dict) and per_class:
        lines += ["", "| class | F1 | support |", "|---|---|---|"]
        lines += [
            f"| {name} | {_fmt(c.get('f1'))} | {c.get('support', '')} |"
            for name, c in per_class.items()
            if isinstance(c, dict)
        ]
    subj = results.get("per_subject_kappa")
    if isinstance(subj, dict) and subj:
        vals = sorted(float(v) for v in subj.values() if v is not None and math.isfinite(v))
        if vals:
            lines += [
                "",
                f"Per-subject kappa over {len(vals)} subjects: median "
                f"{statistics.median(vals):.4f}, "
                f"range {vals[0]:.4f} to {vals[-1]:.4f}.",
            ]
    return "\n".join(lines)


def _usage_section() -> str:
    return (
        "## Usage\n\n```python\nfrom relpos import load_encoder\n\n"
        'encoder = load_encoder("path/to/this/folder")  # a relpos ViT (torch.nn.Module)\n'
        "features = encoder.forward_features(tokens)  # (B, 1 + N, dim) with the class token\n```"
    )
