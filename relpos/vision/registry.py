"""Image datasets by name: ``load_image_dataset("mnist5k")``, and
:func:`register_image_dataset` for your own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relpos.vision.bundled import load_digits, load_mnist5k, load_sample_images
from relpos.vision.cifar import load_cifar
from relpos.vision.datasets import ArrayImageDataset, ImageDataset
from relpos.vision.streaming import load_image_folder

__all__ = ["list_image_datasets", "load_image_dataset", "register_image_dataset"]

_REGISTRY: dict[str, Callable[..., ImageDataset]] = {}


def register_image_dataset(name: str, loader: Callable[..., ImageDataset]) -> None:
    """Make ``load_image_dataset(name, **kw)`` call ``loader(**kw)``."""
    _REGISTRY[name] = loader


def list_image_datasets() -> list[str]:
    """Names accepted by :func:`load_image_dataset`."""
    return sorted(_REGISTRY)


def _cifar10(**kw: Any) -> ArrayImageDataset:
    return load_cifar(variant="cifar10", **kw)


def _cifar100(**kw: Any) -> ArrayImageDataset:
    return load_cifar(variant="cifar100", **kw)


register_image_dataset("digits", load_digits)
register_image_dataset("mnist5k", load_mnist5k)
register_image_dataset("samples", load_sample_images)
register_image_dataset("cifar10", _cifar10)
register_image_dataset("cifar100", _cifar100)
register_image_dataset("folder", load_image_folder)


def load_image_dataset(name: str, **kw: Any) -> ImageDataset:
    """Load an image dataset by name: ``digits``, ``mnist5k``, ``samples``, ``cifar10``,
    ``cifar100`` (``root=``, ``split=``), ``folder`` (``root=``, ``size=``, ``streaming=``:
    true, false or ``"auto"``, see :func:`~relpos.vision.streaming.load_image_folder`), or one
    added with :func:`register_image_dataset`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown image dataset {name!r}; known: {', '.join(list_image_datasets())}"
        )
    return _REGISTRY[name](**kw)
