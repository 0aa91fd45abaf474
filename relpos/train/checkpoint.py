"""Checkpoints that lose nothing: atomic writes (through ``relpos.core.atomic``), RNG states,
fallback to the previous one when the newest is damaged, encoder export to safetensors, and
loaders that rebuild models from the config a checkpoint carries."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from relpos.core.atomic import TMP_MARK, atomic_path, atomic_write_json
from relpos.nn.vit import ViT
from relpos.train.config import TrainConfig, build_model

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointManager",
    "atomic_save",
    "capture_rng",
    "check_writable",
    "export_encoder",
    "load_checkpoint",
    "load_encoder",
    "load_model",
    "restore_rng",
]

_CKPT = re.compile(r"^ckpt-(\d{9})\.pt$")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`relpos.core.atomic.atomic_path` (temporary file, fsync,
    rename, fsync of the directory): a reader sees the old file or the complete new one, never
    a partial write."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def check_writable(directory: str | Path, need_bytes: int = 0) -> Path:
    """Create ``directory`` if needed and fail early, naming it, if it cannot be written or
    lacks ``need_bytes`` of free space."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"output directory {directory} is not writable: {exc}") from exc
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise OSError(
            f"not enough free disk space in {directory}: need about {need_bytes / 2**20:.0f} MiB "
            f"for checkpoints, {free / 2**20:.0f} MiB free"
        )
    return directory


# ---------------------------------------------------------------------- RNG
def capture_rng(span_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG the training loop draws from, in a ``torch.load(weights_only=True)``-safe form."""
    np_state = cast("tuple[Any, ...]", np.random.get_state())  # noqa: NPY002 - legacy stream
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if span_generator is not None:
        state["spans"] = span_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], span_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])
    if span_generator is not None and "spans" in state:
        span_generator.set_state(state["spans"].cpu())


# ---------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the training loop (``weights_only`` safe)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is damaged or not a relpos checkpoint: {exc}") from exc


class CheckpointManager:
    """Numbered checkpoints ``ckpt-<step>.pt`` in a directory, the newest ``keep`` kept."""

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.keep = max(1, keep)

    def paths(self) -> list[Path]:
        """Checkpoints, newest first."""
        if not self.directory.exists():
            return []
        found = [p for p in self.directory.iterdir() if _CKPT.match(p.name)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def save(self, state: dict[str, Any], step: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".ckpt-*{TMP_MARK}*"):
            stale.unlink(missing_ok=True)  # leftovers of a killed write
        path = atomic_save(state, self.directory / f"ckpt-{step:09d}.pt")
        for old in self.paths()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def latest(
        self, map_location: str | torch.device = "cpu"
    ) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; damaged ones are skipped with a warning."""
        for path in self.paths():
            try:
                return path, load_checkpoint(path, map_location)
            except ValueError as exc:
                msg = f"{exc}; falling back to the previous checkpoint"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                log.warning(msg)
        return None


# ---------------------------------------------------------------------- models from checkpoints
def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


def encoder_of(model: nn.Module) -> ViT:
    """The ViT inside a PART model, a classifier, or a wrapped (DDP / compiled) model."""
    model = _unwrap(model)
    enc = getattr(model, "encoder", model)
    if not isinstance(enc, ViT):
        raise ValueError(f"no ViT encoder found in {type(model).__name__}")
    return enc


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model a checkpoint describes (from its config) and load its weights."""
    ckpt = load_checkpoint(path, map_location)
    if "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"checkpoint {path} carries no config/model (not written by relpos)")
    cfg = TrainConfig.model_validate(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    return model, cfg


def export_encoder(model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the encoder's weights as safetensors and its constructor config as JSON beside it
    (``encoder.safetensors`` + ``encoder.json``)."""
    from safetensors.torch import save_file

    enc = encoder_of(model)
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "relpos": "encoder"})
    atomic_write_json(path.with_suffix(".json"), {"vit": enc.config, **(extra or {})})
    return path


def load_encoder(
    path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> ViT:
    """Load a pretrained encoder from a safetensors export (with its JSON) or a full checkpoint.

    ``overrides`` change constructor arguments (e.g. ``pos_embed="learned", num_tokens=30,
    num_classes=5`` for finetuning); weights that the new configuration lacks or adds (position
    table, classifier) are reported and left at their initialisation.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{path}: the encoder config {meta_path.name} is missing beside it"
            )
        config = json.loads(meta_path.read_text())["vit"]
        state = load_file(str(path), device=str(map_location))
    else:
        ckpt = load_checkpoint(path, map_location)
        model, _ = load_model(path, map_location) if "config" in ckpt else (None, None)
        if model is None:
            raise ValueError(f"{path}: not a relpos checkpoint")
        enc = encoder_of(model)
        config, state = enc.config, enc.state_dict()
    encoder = ViT(**{**config, **overrides})
    load_encoder_weights(encoder, state, source=str(path))
    return encoder


_OPTIONAL = ("pos_embed", "head.weight", "head.bias")


def load_encoder_weights(
    encoder: ViT, state: dict[str, torch.Tensor], source: str = "state"
) -> None:
    """Load encoder weights, allowing only the position table and classifier to differ."""
    own = encoder.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [
        k for k, v in state.items() if k in own and own[k].shape != v.shape and k not in _OPTIONAL
    ]
    if mismatched:
        raise ValueError(
            f"{source}: encoder weights do not fit this model ({', '.join(mismatched[:4])} differ "
            "in shape: check preset, dim and token_dim)"
        )
    missing = [k for k in own if k not in usable]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in missing if k not in _OPTIONAL]
    if bad:
        raise ValueError(
            f"{source}: encoder weights lack {', '.join(bad[:4])} (a different architecture?)"
        )
    encoder.load_state_dict(usable, strict=False)
    if missing or unexpected:
        log.info(
            "%s: kept fresh %s; ignored %s", source, missing or "nothing", unexpected or "nothing"
        )
