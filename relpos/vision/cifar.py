"""CIFAR-10 / CIFAR-100 from the python-pickle files the user downloaded (no download code)."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from relpos.vision.datasets import ArrayImageDataset

__all__ = ["load_cifar"]

_CIFAR: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "title": "CIFAR-10",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "title": "CIFAR-100",
    },
}


#: the globals a CIFAR pickle may name: numpy's array and dtype reconstruction and the codec
#: Python 2 pickles use for bytes. Anything else (os.system, builtins.eval, ...) is refused.
_SAFE_GLOBALS = frozenset(
    {
        *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
          for n in ("_reconstruct", "scalar")),
        *((m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)  # fmt: skip


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not CIFAR data)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR batch file as a ``str``-keyed dict, through :class:`_CifarUnpickler`."""
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
    except Exception as err:
        raise ValueError(f"cannot read CIFAR file {path}: {err}") from err
    if not isinstance(d, dict):
        raise ValueError(f"CIFAR file {path} does not hold a dict")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in d.items()}


def _names(values: Iterable[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_cifar(
    root: str | Path,
    *,
    split: Literal["train", "test"] = "train",
    variant: Literal["cifar10", "cifar100"] = "cifar10",
    label: Literal["fine", "coarse"] = "fine",
    normalize: tuple[Any, Any] | Literal["auto"] | None = None,
) -> ArrayImageDataset:
    """CIFAR-10 / CIFAR-100 from the python-pickle files you downloaded.

    ``root`` is the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or the
    folder that contains it. Nothing is downloaded: missing files raise FileNotFoundError
    saying where to put which files and the official archive to fetch by hand.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        variant: ``"cifar10"`` or ``"cifar100"``.
        label: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        normalize: as :class:`ArrayImageDataset`.

    Returns:
        :class:`ArrayImageDataset` of ``(N, 3, 32, 32)`` images in ``[0, 1]`` with class names.
    """
    if variant not in _CIFAR:
        raise ValueError(f"variant must be 'cifar10' or 'cifar100'; got {variant!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse'; got {label!r}")
    if variant == "cifar10" and label != "fine":
        raise ValueError("label='coarse' exists only for variant='cifar100'")
    spec = _CIFAR[variant]
    root = Path(root)
    folder = root if root.name == spec["folder"] else root / spec["folder"]
    if not (folder / spec["meta"]).exists() and (root / spec["meta"]).exists():
        folder = root  # extracted files directly in a folder of another name
    files = [*spec[split], spec["meta"]]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        archive = spec["url"].rsplit("/", 1)[-1]
        found = [p for p in (root / archive, root.parent / archive) if p.is_file()]
        hint = (
            f" The archive {found[0]} is there but not extracted: run "
            f"`tar xzf {found[0]} -C {found[0].parent}`."
            if found
            else ""
        )
        raise FileNotFoundError(
            f"{spec['title']} {split} files not found: missing {', '.join(missing)} in {folder}. "
            f"Put the python-version files {', '.join(files)} in {folder} "
            f"(download {spec['url']} by hand and extract it into {folder.parent}; it "
            f"creates {spec['folder']}/). Pass either that folder or its parent as root."
            f"{hint}"
        )
    key = "labels" if variant == "cifar10" else f"{label}_labels"
    data, labels = [], []
    for f in spec[split]:
        d = _unpickle(folder / f)
        if "data" not in d or key not in d:
            raise ValueError(
                f"CIFAR file {folder / f} lacks {'data' if 'data' not in d else key!r}"
            )
        arr = np.asarray(d["data"], dtype=np.uint8)
        if arr.ndim != 2 or arr.shape[1] != 3 * 32 * 32:
            raise ValueError(
                f"CIFAR file {folder / f}: data must be (N, 3072) uint8; got {arr.shape}"
            )
        data.append(arr)
        labels.append(np.asarray(d[key], dtype=np.int64))
    meta = _unpickle(folder / spec["meta"])
    name_key = "label_names" if variant == "cifar10" else f"{label}_label_names"
    if name_key not in meta:
        raise ValueError(f"CIFAR meta file {folder / spec['meta']} lacks {name_key!r}")
    images = np.concatenate(data).reshape(-1, 3, 32, 32)
    return ArrayImageDataset(
        images,
        np.concatenate(labels),
        layout="NCHW",
        normalize=normalize,
        classes=_names(meta[name_key]),
    )
