"""Streamed image folders (relpos.vision.streaming): the same images, labels, normalisation and
augmentation as the in-memory reader, decoded lazily; the choice between the two readers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from relpos.vision.augment import make_augment
from relpos.vision.datasets import ImageFolderDataset
from relpos.vision.experiment import DatasetSpec, load_image_config, load_images
from relpos.vision.registry import load_image_dataset
from relpos.vision.sources import image_folder
from relpos.vision.streaming import StreamingImageFolder, decoded_bytes, load_image_folder

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def folder(tmp_path):
    """3 classes x 4 random images of varied sizes (PNG, one JPEG per class), a stray file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for k, cls in enumerate(("b_cats", "a_dogs", "c_owls")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            h, w = 10 + 3 * i, 14 + 2 * k
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ext = ".jpg" if i == 2 else ".png"
            Image.fromarray(arr).save(root / cls / f"{i}{ext}")
    (root / "a_dogs" / "readme.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("mode", ["resize", "center_crop"])
def test_both_readers_give_the_same_tensors(folder, mode):
    kw = {"mode": mode, "channels": 3}
    mem = ImageFolderDataset(folder, (8, 6), normalize="auto", **kw)
    lazy = StreamingImageFolder(folder, (8, 6), normalize="auto", **kw)
    assert len(lazy) == len(mem) == 12 and lazy.shape == mem.shape == (3, 8, 6)
    assert lazy.classes == mem.classes == ["a_dogs", "b_cats", "c_owls"]
    assert lazy.class_to_idx == mem.class_to_idx
    assert (
        torch.equal(lazy.labels, mem.labels) and lazy.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    )
    assert [lazy.path(i) for i in range(12)] == [p for p, _ in mem.samples]
    # statistics streamed in batches (Chan's merge) equal the in-memory two-pass ones
    torch.testing.assert_close(lazy.mean, mem.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lazy.std, mem.std, rtol=1e-6, atol=1e-7)
    for i in (0, 5, 11):
        x, y = lazy[i]
        torch.testing.assert_close(x, mem[i][0], rtol=1e-5, atol=1e-5)
        assert x.dtype == torch.float32 and int(y) == int(mem[i][1])
    # with the same explicit normalisation the pixels are bit for bit the same
    fixed = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    mem2 = ImageFolderDataset(folder, (8, 6), normalize=fixed, **kw)
    lazy2 = StreamingImageFolder(folder, (8, 6), normalize=fixed, **kw)
    assert all(torch.equal(lazy2[i][0], mem2[i][0]) for i in range(12))
    # subset and renormalisation compose the same way
    m, s = mem2.channel_stats()
    a = mem2.subset([7, 2]).normalized(m, s)
    b = lazy2.subset([7, 2]).normalized(m, s)
    assert b.labels.tolist() == a.labels.tolist() == [1, 0]
    assert torch.equal(b[0][0], a[0][0]) and torch.equal(b.mean, a.mean)


def test_loader_workers_and_augmentation_agree(folder):
    mem = ImageFolderDataset(folder, 8, normalize=(0.5, 0.25))
    lazy = StreamingImageFolder(folder, 8, normalize=(0.5, 0.25))
    xb, yb = next(iter(DataLoader(lazy, batch_size=12, num_workers=1)))
    xa, ya = next(iter(DataLoader(mem, batch_size=12)))
    assert torch.equal(xb, xa) and torch.equal(yb, ya)
    aug = make_augment(["flip", "crop:2"])
    out_a = aug(xa, torch.Generator().manual_seed(3))
    out_b = aug(xb, torch.Generator().manual_seed(3))
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, xa)


def test_streaming_decodes_lazily(folder):
    (folder / "c_owls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    lazy = StreamingImageFolder(folder, 8)  # listing only: the broken file is not opened
    assert len(lazy) == 13 and isinstance(lazy.files, np.ndarray)
    with pytest.raises(ValueError, match="broken.png"):
        lazy[12]
    with pytest.raises(ValueError, match="broken.png"):
        StreamingImageFolder(folder, 8, normalize="auto")  # the statistics read every image
    with pytest.raises(ValueError, match="normalize"):
        StreamingImageFolder(folder, 8, normalize="zscore")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        StreamingImageFolder(folder / "nowhere", 8)


def test_stats_of_a_sample_match_the_in_memory_sample(folder):
    mem = ImageFolderDataset(folder, 8)
    lazy = StreamingImageFolder(folder, 8)
    for got, want in zip(lazy.channel_stats(5, seed=2, batch_size=2), mem.channel_stats(5, seed=2)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(lazy.channel_stats(5, seed=2)[0], lazy.channel_stats()[0])


def test_choice_by_size_or_by_the_user(folder):
    assert decoded_bytes(12, 8, 3) == 12 * 3 * 8 * 8 * 5
    assert isinstance(load_image_folder(folder, 8), ImageFolderDataset)  # small: in memory
    assert isinstance(load_image_folder(folder, 8, memory_limit=1000), StreamingImageFolder)
    assert isinstance(load_image_folder(folder, 8, streaming=True), StreamingImageFolder)
    forced = load_image_folder(folder, 8, streaming=False, memory_limit=1)
    assert isinstance(forced, ImageFolderDataset)
    by_name = load_image_dataset("folder", root=folder, size=8, streaming=True)
    assert isinstance(by_name, StreamingImageFolder) and len(by_name) == 12
    with pytest.raises(ValueError, match="streaming"):
        load_image_folder(folder, 8, streaming="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_limit"):
        load_image_folder(folder, 8, memory_limit=0)


def test_source_and_experiment_stream_the_same_images(folder):
    src = image_folder(folder, "pretrain", True, size=8, streaming=True)
    assert isinstance(src, StreamingImageFolder) and src.mean is not None
    spec = {"name": "folder", "fallback": None, "test_fraction": 0.25}
    images = {
        s: load_images(DatasetSpec(**spec, kwargs={"root": str(folder), "size": 8, "streaming": s}))
        for s in (True, False)
    }
    lazy, mem = images[True], images[False]
    assert isinstance(lazy.train, StreamingImageFolder) and lazy.modality == mem.modality
    assert torch.equal(lazy.train_labels, mem.train_labels)
    assert torch.equal(lazy.test_labels, mem.test_labels) and len(lazy.test) == 3
    torch.testing.assert_close(lazy.test[1][0], mem.test[1][0], rtol=1e-5, atol=1e-5)


def test_imagenet_preset_streams():
    cfg = load_image_config("imagenet1k-paper")
    assert cfg.dataset.name == "folder" and cfg.dataset.kwargs["streaming"] is True
    assert cfg.pretrain.runtime.num_workers > 0
