"""Reading image files: the endings read, Pillow decoding brought to a fixed size, and the
listing of an image folder (``root/<class>/<image>``) without decoding anything. Used by the
in-memory :class:`~relpos.vision.datasets.ImageFolderDataset` and the lazy
:class:`~relpos.vision.streaming.StreamingImageFolder` alike, so both give the same pixels and
labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderScan",
    "Size",
    "check_folder_options",
    "fit_image",
    "load_pil",
    "require_optional",
    "scan_image_folder",
    "size_hw",
]

#: file name endings read by the folder readers (case-insensitive)
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


def load_pil(path: str | Path, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
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


def _list_images(folder: Path) -> list[str]:
    """Sorted names of the image files in ``folder`` (one ``scandir``, no decoding)."""
    with os.scandir(folder) as it:
        return sorted(
            e.name
            for e in it
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            and e.is_file()
        )


class FolderScan(NamedTuple):
    """The files of an image folder: ``files`` relative to ``root`` (``class/name``) in load
    order, their ``labels (N,)`` (``-1`` without class folders), and the class names."""

    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]


def scan_image_folder(root: str | Path) -> FolderScan:
    """List an image folder (``root/<class>/<image>``, or images directly under ``root``,
    unlabelled) without opening any image.

    Classes are the sub-folder names in sorted order (as torchvision's ``ImageFolder``); files
    ending in :data:`IMAGE_EXTENSIONS` (any case) are kept, hidden ones skipped.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no image files (naming the folder) or an empty class folder (naming it).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    with os.scandir(root) as it:
        class_names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    files: list[str] = []
    counts: list[int] = []
    for name in class_names:
        names = _list_images(root / name)
        if not names:
            raise ValueError(
                f"class folder {root / name} holds no image files (expected endings: "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        files += [f"{name}/{n}" for n in names]
        counts.append(len(names))
    if class_names:
        labels = np.repeat(np.arange(len(class_names), dtype=np.int64), counts)
    else:
        files = _list_images(root)
        labels = np.full(len(files), -1, dtype=np.int64)
    if not files:
        raise ValueError(
            f"image folder {root} holds no image files (expected class sub-folders with "
            f"files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    return FolderScan(root, files, labels, class_names)


def check_folder_options(size: Size, mode: str, channels: int) -> tuple[int, int]:
    """Check a folder reader's ``mode`` and ``channels``; ``size`` as ``(H, W)``."""
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4; got {channels}")
    if mode not in ("resize", "center_crop"):
        raise ValueError(f"mode must be 'resize' or 'center_crop'; got {mode!r}")
    return size_hw(size)
