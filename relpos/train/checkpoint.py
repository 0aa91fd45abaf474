"""Checkpoints that lose nothing: atomic writes (through ``relpos.core.atomic``), RNG states,
fallback to the previous one when the newest is damaged, encoder export to safetensors, and
loaders that rebuild models from the config a checkpoint carries.

Every error here is one line naming the file: a failed write (a full disk) is an ``OSError``
that says the earlier checkpoints are intact, a file that does not load a ``ValueError``.
Checkpoints, ``final.pt``, ``best.pt`` and ``encoder.json`` carry the run's ``provenance``
(a JSON-able dict the caller chose, e.g. the subjects it trained on; see
:func:`read_provenance`)."""

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
from relpos.errors import one_line
from relpos.nn.vit import ViT
from relpos.train.config import TrainConfig, build_model

log = logging.getLogger(__name__)

__all__ = [
    "FOLDER_CONFIG",
    "FOLDER_WEIGHTS",
    "CheckpointManager",
    "atomic_save",
    "capture_rng",
    "check_provenance",
    "check_writable",
    "export_encoder",
    "first_line",
    "load_checkpoint",
    "load_encoder",
    "load_model",
    "read_provenance",
    "restore_rng",
]

_CKPT = re.compile(r"^ckpt-(\d{9})\.pt$")


def first_line(exc: BaseException) -> str:
    """A foreign exception's message as one short line: the first line of a long one (torch's
    unpickling and size-mismatch errors span a dozen), else :func:`relpos.errors.one_line`;
    cut to its first sentence when that is still long (torch's advice paragraphs)."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    text = lines[0] if len(lines) > 1 else one_line(exc)
    if len(text) > 160 and ". " in text[40:]:
        text = text[: text.index(". ", 40)]
    return text


def _write_error(path: Path, exc: Exception) -> OSError:
    """A one-line ``OSError`` (same ``errno``) for a write that failed and left nothing behind."""
    reason = getattr(exc, "strerror", None) or first_line(exc)
    err = OSError(
        f"cannot write {path} ({reason}); the earlier checkpoints are intact: free some space "
        "(or fix the disk) and rerun the same command to resume from the last one"
    )
    err.errno = getattr(exc, "errno", None)
    return err


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`relpos.core.atomic.atomic_path` (temporary file, fsync,
    rename, fsync of the directory): a reader sees the old file or the complete new one, never
    a partial write. A failed write (e.g. a full disk) raises a one-line ``OSError`` naming
    ``path``; its temporary file is removed."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return path


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
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise OSError(f"cannot read the free space of {directory}: {first_line(exc)}") from exc
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
        raise ValueError(
            f"checkpoint {path} is damaged or not a relpos checkpoint: {first_line(exc)}"
        ) from exc


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
        """Write ``ckpt-<step>.pt`` atomically, then prune to the newest ``keep``."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.directory, exc) from exc
        for stale in self.directory.glob(f".ckpt-*{TMP_MARK}*"):
            stale.unlink(missing_ok=True)  # leftovers of a killed write
        path = atomic_save(state, self.directory / f"ckpt-{step:09d}.pt")
        for old in self.paths()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def scan(
        self, map_location: str | torch.device = "cpu"
    ) -> tuple[tuple[Path, dict[str, Any]] | None, list[tuple[Path, str]]]:
        """The newest checkpoint that loads (``(path, payload)`` or ``None``) and the newer ones
        that did not (``(path, reason)``), without a word: see :meth:`damage_report`."""
        damaged: list[tuple[Path, str]] = []
        for path in self.paths():
            try:
                return (path, load_checkpoint(path, map_location)), damaged
            except ValueError as exc:
                damaged.append((path, first_line(exc.__cause__ or exc)))
        return None, damaged

    def damage_report(
        self, found: tuple[Path, Any] | None, damaged: list[tuple[Path, str]]
    ) -> str | None:
        """One line on what :meth:`scan` skipped: the damaged checkpoints and the one used
        instead, or that all of them are damaged; ``None`` when none was."""
        if not damaged:
            return None
        why = "; ".join(f"{p.name}: {reason}" for p, reason in damaged)
        if found is None:
            return f"all {len(damaged)} checkpoints in {self.directory} are damaged ({why})"
        names = ", ".join(p.name for p, _ in damaged)
        return (
            f"damaged checkpoint {names} in {self.directory} ({why}); falling back to the "
            f"previous checkpoint {found[0].name}"
        )

    def latest(
        self, map_location: str | torch.device = "cpu"
    ) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; damaged ones are skipped with a warning."""
        found, damaged = self.scan(map_location)
        msg = self.damage_report(found, damaged)
        if msg is not None:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            log.warning(msg)
        return found


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
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"checkpoint {path} carries no config/model (not written by relpos)")
    try:
        cfg = TrainConfig.model_validate(ckpt["config"])
        model = build_model(cfg)
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"checkpoint {path}: its config or weights do not rebuild a model: {first_line(exc)}"
        ) from exc
    return model, cfg


def export_encoder(model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the encoder's weights as safetensors and its constructor config as JSON beside it
    (``encoder.safetensors`` + ``encoder.json``)."""
    from safetensors.torch import save_file

    enc = encoder_of(model)
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items()}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "relpos": "encoder"})
    except Exception as exc:  # OSError, or SafetensorError wrapping the I/O error
        raise _write_error(path, exc) from exc
    meta = path.with_suffix(".json")
    try:
        atomic_write_json(meta, {"vit": enc.config, **(extra or {})})
    except OSError as exc:
        raise _write_error(meta, exc) from exc
    return path


#: the files of a model folder (:func:`relpos.train.export.save_pretrained`)
FOLDER_CONFIG, FOLDER_WEIGHTS = "config.json", "model.safetensors"


def _meta_path(path: Path) -> Path:
    """The JSON that describes ``path``: ``config.json`` of a model folder (or of its
    ``model.safetensors``), else the ``.json`` beside an ``encoder.safetensors`` export."""
    if path.is_dir():
        return path / FOLDER_CONFIG
    beside = path.with_suffix(".json")
    if not beside.exists() and (path.parent / FOLDER_CONFIG).exists():
        return path.parent / FOLDER_CONFIG
    return beside


def _encoder_meta(path: Path) -> dict[str, Any]:
    """The encoder config of an export (``encoder.json`` beside ``encoder.safetensors``) or a
    model folder (its ``config.json``); errors name the file."""
    meta_path = _meta_path(path)
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: the encoder config {meta_path.name} is missing beside it")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{meta_path}: not a readable encoder config ({first_line(exc)})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("vit"), dict):
        raise ValueError(f"{meta_path}: no 'vit' entry (not an encoder config written by relpos)")
    return meta


def check_provenance(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """``provenance`` as plain JSON data (tuples become lists), so that checkpoints stay
    ``weights_only``-loadable and ``encoder.json`` writable; a ``ValueError`` if it is not."""
    if provenance is None:
        return {}
    try:
        data = json.loads(json.dumps(provenance, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"provenance must be JSON-able data: {first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"provenance must be a dict, got {type(provenance).__name__}")
    return data


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``provenance`` dict a run stored in a checkpoint (``.pt``: ``ckpt-*``, ``final.pt``,
    ``best.pt``) or an encoder export (``.safetensors``, from its ``encoder.json``); ``{}`` when
    the file carries none; a model folder's from its ``config.json``. Errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    if path.is_dir():
        prov = _encoder_meta(path).get("provenance")
    elif path.suffix in (".safetensors", ".json"):
        prov = _encoder_meta(path.with_suffix(".safetensors")).get("provenance")
    else:
        ckpt = load_checkpoint(path)
        prov = ckpt.get("provenance") if isinstance(ckpt, dict) else None
    return dict(prov) if isinstance(prov, dict) else {}


def load_encoder(
    path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> ViT:
    """Load a pretrained encoder from a model folder (``config.json`` + ``model.safetensors``,
    :func:`relpos.train.export.save_pretrained`), a safetensors export (``encoder.safetensors``
    with its ``encoder.json``) or a full checkpoint (``.pt``).

    ``overrides`` change constructor arguments (e.g. ``pos_embed="learned", num_tokens=30,
    num_classes=5`` for finetuning); weights that the new configuration lacks or adds (position
    table, classifier) are reported and left at their initialisation.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder file not found: {path}")
    if path.is_dir() or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        config = _encoder_meta(path)["vit"]
        weights = path / FOLDER_WEIGHTS if path.is_dir() else path
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: the weights {weights.name} are missing")
        try:
            state = load_file(str(weights), device=str(map_location))
        except Exception as exc:  # SafetensorError, OSError: damaged or truncated
            raise ValueError(
                f"{weights}: damaged or not a safetensors file ({first_line(exc)})"
            ) from exc
    else:
        ckpt = load_checkpoint(path, map_location)
        model, _ = load_model(path, map_location) if "config" in ckpt else (None, None)
        if model is None:
            raise ValueError(f"{path}: not a relpos checkpoint")
        enc = encoder_of(model)
        config, state = enc.config, enc.state_dict()
    try:
        encoder = ViT(**{**config, **overrides})
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: its encoder config does not build a ViT: {first_line(exc)}"
        ) from exc
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
