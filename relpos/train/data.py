"""Data sources: named ways to turn a path into a training ``Dataset``.

A source is ``factory(path, split, labelled, **kwargs)`` returning a ``torch.utils.data.Dataset``
of ``x`` or ``(x, y, ...)`` items, a ``(dataset, groups)`` pair, or a :class:`SourceData`.
``groups`` (one integer per example, e.g. the record it comes from) lets the example-order
sampler keep a record's examples together. The command line picks a source with
``--data-source`` (default: the modality's), so any registered modality trains from any
registered source::

    relpos.register_data_source("my_h5", lambda path, split, labelled, **kw: MyDataset(path))

The domain packages' sources (the EEG store, image folders and arrays) are registered by
``relpos/__init__.py`` as ``"module:function"`` strings, imported only when used, so this module
names no domain.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from relpos.core.registry import Registry

__all__ = [
    "DATA_SOURCES",
    "SourceData",
    "class_weights",
    "get_data_source",
    "list_data_sources",
    "load_arrays",
    "load_data",
    "read_arrays",
    "register_data_source",
]

DataFactory = Callable[..., Any]


@dataclass
class SourceData:
    """What a data source yields: the dataset, optional ``groups (n,)`` and ``labels (n,)``, and
    an optional JSON-able ``provenance`` (what the data is, e.g. its subjects) that the run's
    checkpoints carry."""

    dataset: Dataset
    groups: np.ndarray | None = None
    labels: np.ndarray | None = None
    provenance: dict[str, Any] | None = None


#: data source name -> ``factory(path, split, labelled, **kwargs)``
DATA_SOURCES: Registry[DataFactory] = Registry("data source")


def register_data_source(name: str, factory: DataFactory | str) -> None:
    """Make ``factory(path, split, labelled, **kwargs)`` (or a ``"module:function"`` string)
    available by name (``--data-source`` on the command line)."""
    DATA_SOURCES.register(name, factory)


def get_data_source(name: str) -> DataFactory:
    """The factory registered as ``name`` (errors list the known sources)."""
    return DATA_SOURCES.get(name)


def list_data_sources() -> list[str]:
    return DATA_SOURCES.names()


def load_data(
    name: str, path: str | Path | None, split: str, labelled: bool, **kwargs: Any
) -> SourceData:
    """Call the source ``name`` and normalise what it returns to a :class:`SourceData`."""
    out = get_data_source(name)(path, split, labelled, **kwargs)
    if isinstance(out, SourceData):
        data = out
    elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Dataset):
        data = SourceData(out[0], None if out[1] is None else np.asarray(out[1]))
    elif isinstance(out, Dataset):
        data = SourceData(out)
    else:
        raise ValueError(f"data source {name!r} returned {type(out).__name__}, not a Dataset")
    if data.labels is None and getattr(data.dataset, "labels", None) is not None:
        data.labels = np.asarray(data.dataset.labels)  # type: ignore[attr-defined]
    return data


def class_weights(labels: np.ndarray, k: int) -> torch.Tensor:
    """Inverse-frequency weights ``(k,)`` of the labels ``>= 0`` (mean weight 1 over examples)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=k).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / k
    return torch.tensor(w, dtype=torch.float32)


def read_arrays(path: str | Path, what: str = "data file") -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file by name, or a ``.npy`` file as ``{"x": array}``; no pickles."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: a {what} must be a .npz or .npy file")
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path)}
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        # a truncated or damaged file (numpy's errors do not name it); pickles stay refused
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{path}: cannot read the {what}: {msg}") from exc


def load_arrays(path: str | Path, split: str, labelled: bool, **kwargs: Any) -> SourceData:
    """``.npz`` (arrays ``x``, optional ``y``; or ``<split>_x``/``<split>_y``) or ``.npy`` (``x``)
    of any shape ``(n, C, *extent)``: the generic source of the ``spectrogram`` and ``video``
    modalities (a raw signal when the modality has a transform)."""
    path = Path(path)
    arrays = read_arrays(path)
    x = arrays.get(f"{split}_x", arrays.get("x"))
    y = arrays.get(f"{split}_y", arrays.get("y"))
    if x is None:
        raise ValueError(f"{path}: no array 'x' (or '{split}_x'); it has {', '.join(arrays)}")
    xt = torch.from_numpy(np.ascontiguousarray(x)).float()
    if not labelled:
        return SourceData(TensorDataset(xt))
    if y is None:
        raise ValueError(f"{path}: labelled training needs an array 'y' (or '{split}_y')")
    yt = torch.from_numpy(np.asarray(y)).long()
    if len(yt) != len(xt):
        raise ValueError(f"{path}: {len(xt)} examples in x but {len(yt)} labels in y")
    keep = yt >= 0
    return SourceData(TensorDataset(xt[keep], yt[keep]), labels=yt[keep].numpy())


DATA_SOURCES.register("arrays", load_arrays)
