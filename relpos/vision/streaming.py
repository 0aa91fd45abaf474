"""Image folders too big for memory, read lazily; the choice between the two folder readers.

:class:`StreamingImageFolder` lists the folder once (names and labels, no decoding) and opens,
converts and resizes one image per ``__getitem__``, so the decoding runs in the DataLoader's
workers (``runtime.num_workers``) and memory stays bounded whatever the folder's size: the
ImageNet-1k preset streams. Its pixels, labels and normalisation equal those of the in-memory
:class:`~relpos.vision.datasets.ImageFolderDataset` for the same folder and index, and batch
augmentation (:mod:`relpos.vision.augment`) runs after loading, the same for both.

:func:`load_image_folder` picks a reader: ``streaming=True`` / ``False``, or ``"auto"``
(the default): stream when the decoded images would take more than ``memory_limit`` bytes
(:data:`IN_MEMORY_LIMIT_BYTES`). It is the ``folder`` image dataset of
:func:`relpos.vision.registry.load_image_dataset` and the ``image_folder`` data source.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from relpos.vision import augment
from relpos.vision.augment import channel_vector
from relpos.vision.datasets import ChannelMoments, ImageDataset, ImageFolderDataset, Normalize
from relpos.vision.files import FolderScan, Size, check_folder_options, load_pil, scan_image_folder

log = logging.getLogger(__name__)

__all__ = [
    "IN_MEMORY_LIMIT_BYTES",
    "STATS_IMAGES",
    "StreamingImageFolder",
    "decoded_bytes",
    "load_image_folder",
]

#: ``streaming="auto"``: folders whose decoded images would take more bytes stream
IN_MEMORY_LIMIT_BYTES = 4 * 2**30
#: ``normalize="auto"`` on a streamed folder: per-channel statistics of this many images
#: (a seeded random subset; all of them when the folder has fewer)
STATS_IMAGES = 2000

Streaming = bool | Literal["auto"]
Mode = Literal["resize", "center_crop"]


def decoded_bytes(n: int, size: Size, channels: int) -> int:
    """Bytes the in-memory reader needs for ``n`` images: the float32 tensor plus the uint8
    array it is decoded into (5 bytes per value)."""
    h, w = check_folder_options(size, "resize", channels)
    return 5 * n * channels * h * w


class StreamingImageFolder(ImageDataset):
    """Images in class sub-folders (``root/<class>/<image>``), decoded one at a time.

    The folder is listed once, without opening any image (:func:`scan_image_folder`); file
    names are held as one numpy byte array (no Python object per file, so DataLoader workers
    do not copy it page by page). ``__getitem__`` reads one file with Pillow, converts it to
    ``channels``, brings it to ``size`` (as :class:`ImageFolderDataset`), scales it to
    ``[0, 1]`` and applies the normalisation. A corrupt file fails when it is read, naming it.

    Args:
        root: the folder.
        size: ``(H, W)`` or an int for square images.
        mode: ``"resize"`` or ``"center_crop"`` (as :class:`ImageFolderDataset`).
        channels: 1, 3 or 4.
        normalize: ``None``, ``(mean, std)`` (per channel, or scalars), or ``"auto"``: the
            per-channel statistics of ``stats_images`` images (all when there are fewer, giving
            the in-memory reader's numbers), read once here.
        stats_images: images read for ``normalize="auto"`` (>= 1).
        num_workers: DataLoader workers for reading them (:meth:`channel_stats`' default).
        scan: the folder's :func:`scan_image_folder`, when already made (``root`` is ignored).

    Attributes:
        root, files (``(N,)`` bytes, relative to ``root``), labels ``(N,)``, classes,
        class_to_idx, mean, std (the normalisation last applied).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no image files, an empty class folder, or a bad ``size``/``mode``/
            ``channels``/``normalize``.
    """

    def __init__(
        self,
        root: str | Path,
        size: Size,
        *,
        mode: Mode = "resize",
        channels: int = 3,
        normalize: Normalize = None,
        stats_images: int = STATS_IMAGES,
        num_workers: int = 0,
        scan: FolderScan | None = None,
    ) -> None:
        self.size = check_folder_options(size, mode, channels)
        if scan is None:
            scan = scan_image_folder(root)
        self.root: Path = scan.root
        self.mode: Mode = mode
        self.channels = channels
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {num_workers}")
        self.num_workers = num_workers
        self.files: np.ndarray = np.array([os.fsencode(f) for f in scan.files])
        self.labels = torch.from_numpy(np.asarray(scan.labels, dtype=np.int64).copy())
        self.classes = [str(c) for c in scan.classes]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self._steps: tuple[tuple[Tensor, Tensor], ...] = ()
        if normalize is None:
            return
        if isinstance(normalize, str):
            if normalize != "auto":
                raise ValueError(
                    f"normalize must be None, 'auto' or (mean, std); got {normalize!r}"
                )
            if stats_images < 1:
                raise ValueError(f"stats_images must be >= 1; got {stats_images}")
            normalize = self.channel_stats(stats_images)
        if len(normalize) != 2:
            raise ValueError(f"normalize must be a (mean, std) pair; got {normalize!r}")
        self._steps, self.mean, self.std = self._step(*normalize)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return self.channels, self.size[0], self.size[1]

    def path(self, index: int) -> Path:
        """The file of image ``index``."""
        return self.root / os.fsdecode(self.files[index])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Image ``index`` ``(C, H, W)`` float32 and its label (a long scalar)."""
        arr = load_pil(self.path(index), self.size, self.mode, self.channels)  # (H, W, C) uint8
        arr = np.require(arr, requirements="W")  # Pillow's arrays are read-only
        x = rearrange(torch.from_numpy(arr), "h w c -> c h w").float().div_(255.0)
        for mean, std in self._steps:
            x = augment.normalize(x, mean, std)
        return x, self.labels[index]

    def _step(
        self, mean: Any, std: Any
    ) -> tuple[tuple[tuple[Tensor, Tensor], ...], Tensor, Tensor]:
        m = channel_vector(mean, self.channels, "mean")
        s = channel_vector(std, self.channels, "std")
        return (*self._steps, (m, s)), m, s

    def subset(self, indices: Any) -> StreamingImageFolder:
        """A new dataset of the images at ``indices`` (same classes and normalisation)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = copy.copy(self)
        out.files, out.labels = self.files[idx.numpy()], self.labels[idx]
        return out

    def normalized(self, mean: Any, std: Any) -> StreamingImageFolder:
        """A new dataset whose images are ``(x - mean) / std`` per channel of these."""
        out = copy.copy(self)
        out._steps, out.mean, out.std = self._step(mean, std)
        return out

    @torch.no_grad()
    def channel_stats(
        self,
        max_images: int | None = None,
        seed: int = 0,
        *,
        num_workers: int | None = None,
        batch_size: int = 64,
    ) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std ``(C,)`` (zero std -> 1) of the images, or of a seeded
        random ``max_images`` of them, read once in batches (``num_workers`` DataLoader
        workers; default the dataset's) and merged by
        :class:`~relpos.vision.datasets.ChannelMoments`, so memory stays bounded."""
        from tqdm.auto import tqdm

        n = len(self)
        if n == 0:
            raise ValueError(f"channel_stats: no images in this subset of {self.root}")
        idx = np.arange(n)
        if max_images is not None and max_images < n:
            g = torch.Generator().manual_seed(int(seed))
            idx = np.sort(torch.randperm(n, generator=g)[:max_images].numpy())
        loader = DataLoader(
            Subset(self, idx.tolist()),
            batch_size=batch_size,
            num_workers=self.num_workers if num_workers is None else num_workers,
        )
        acc = ChannelMoments(self.channels)
        for x, _ in tqdm(
            loader, desc=f"channel stats {self.root.name}", unit="batch", disable=len(idx) <= 500
        ):
            acc.update(x)
        return acc.result()


def load_image_folder(
    root: str | Path,
    size: Size,
    *,
    streaming: Streaming = "auto",
    mode: Mode = "resize",
    channels: int = 3,
    normalize: Normalize = None,
    memory_limit: int = IN_MEMORY_LIMIT_BYTES,
    stats_images: int = STATS_IMAGES,
    num_workers: int = 0,
    progress: bool | None = None,
) -> ImageDataset:
    """An image folder (``root/<class>/<image>``), in memory or streamed.

    Args:
        streaming: ``True`` (:class:`StreamingImageFolder`), ``False``
            (:class:`~relpos.vision.datasets.ImageFolderDataset`) or ``"auto"``: stream when
            :func:`decoded_bytes` of the folder exceeds ``memory_limit``.
        memory_limit: bytes (>= 1) the in-memory reader may take in ``"auto"`` mode.
        stats_images, num_workers: the streaming reader's (``normalize="auto"``).
        progress: the in-memory reader's bar.
        size, mode, channels, normalize: as both readers.
    """
    hw = check_folder_options(size, mode, channels)
    if streaming not in (True, False, "auto"):
        raise ValueError(f"streaming must be true, false or 'auto'; got {streaming!r}")
    if memory_limit < 1:
        raise ValueError(f"memory_limit must be >= 1 byte; got {memory_limit}")
    scan = scan_image_folder(root)
    if streaming == "auto":
        need = decoded_bytes(len(scan.files), hw, channels)
        streaming = need > memory_limit
        log.info(
            "%s: %d images need %.2f GB decoded (limit %.2f GB): %s",
            scan.root,
            len(scan.files),
            need / 1e9,
            memory_limit / 1e9,
            "streaming" if streaming else "in memory",
        )
    if streaming:
        return StreamingImageFolder(
            scan.root,
            hw,
            mode=mode,
            channels=channels,
            normalize=normalize,
            stats_images=stats_images,
            num_workers=num_workers,
            scan=scan,
        )
    return ImageFolderDataset(
        scan.root,
        hw,
        mode=mode,
        channels=channels,
        normalize=normalize,
        progress=progress,
        scan=scan,
    )
