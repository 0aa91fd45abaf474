"""In-memory and folder image datasets, normalisation, few-label splits (relpos.vision.datasets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from einops import rearrange

from relpos.vision.augment import channel_stats, normalize
from relpos.vision.datasets import (
    ArrayImageDataset,
    ChannelMoments,
    ImageFolderDataset,
    split_per_class,
    train_test_split_indices,
)
from relpos.vision.registry import load_image_dataset

Image = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------------------- image folders
def _write(path, colour, size=(20, 12), mode="RGB") -> None:
    Image.new(mode, size, colour).save(path)


def test_image_folder_resize_and_crop(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        _write(tmp_path / cls / "a.png", colour, (20, 12))
        _write(tmp_path / cls / "b.JPG", colour, (9, 30))
        _write(tmp_path / cls / "c.bmp", colour, (16, 16))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path, size=8)
    assert ds.classes == ["cats", "dogs"] and ds.class_to_idx == {"cats": 0, "dogs": 1}
    assert ds.images.shape == (6, 3, 8, 8) and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [p.name for p, _ in ds.samples] == ["a.png", "b.JPG", "c.bmp"] * 2
    red = ds.images[0]
    torch.testing.assert_close(red[0], torch.ones(8, 8))
    torch.testing.assert_close(red[1:], torch.zeros(2, 8, 8))
    crop = load_image_dataset("folder", root=tmp_path, size=(6, 10), mode="center_crop")
    assert crop.images.shape == (6, 3, 6, 10)
    jpg = crop.images[1]  # JPEG: close to pure red
    assert float((jpg[0] - 1).abs().max()) < 0.05 and float(jpg[1:].abs().max()) < 0.05
    gray = ImageFolderDataset(tmp_path, size=(5, 7), channels=1)
    assert gray.images.shape == (6, 1, 5, 7)
    x, y = gray[4]
    assert x.dtype == torch.float32 and int(y) == 1


def test_image_folder_center_crop_keeps_the_centre(tmp_path):
    # 30 x 10 (W x H) image: left third black, middle white, right third black
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, 10:20] = 255
    (tmp_path / "a").mkdir()
    Image.fromarray(arr).save(tmp_path / "a" / "x.png")
    ds = ImageFolderDataset(tmp_path, size=10, mode="center_crop")
    assert float(ds.images.min()) > 0.95  # only the white centre survives
    squashed = ImageFolderDataset(tmp_path, size=10, mode="resize")
    assert float(squashed.images[0, 0, :, 0].max()) < 0.05  # stretched: black left border


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageFolderDataset(tmp_path / "empty", 8)
    root = tmp_path / "ds"
    (root / "ok").mkdir(parents=True)
    (root / "bad").mkdir()
    _write(root / "ok" / "fine.png", (1, 2, 3))
    (root / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        ImageFolderDataset(root, 8)
    (root / "bad" / "broken.png").unlink()
    with pytest.raises(ValueError, match="bad"):  # an empty class folder is named
        ImageFolderDataset(root, 8)


def test_flat_folder_is_unlabelled(tmp_path):
    _write(tmp_path / "one.png", (0, 255, 0))
    _write(tmp_path / "two.webp", (0, 255, 0))
    ds = ImageFolderDataset(tmp_path, 4)
    assert ds.labels.tolist() == [-1, -1] and ds.num_classes == 0


# ---------------------------------------------------------------------------- arrays
def test_layout_detection_and_scaling():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    ds = ArrayImageDataset(nhwc)
    assert ds.images.shape == (5, 3, 12, 10) and ds.images.dtype == torch.float32
    assert float(ds.images[2, 1, 4, 7]) == pytest.approx(nhwc[2, 4, 7, 1] / 255.0)
    assert ds.labels.tolist() == [-1] * 5 and ds.num_classes == 0
    nchw = torch.rand(4, 1, 9, 9)
    assert torch.equal(ArrayImageDataset(nchw).images, nchw)
    gray = ArrayImageDataset(np.full((3, 6, 6), 255, dtype=np.uint8), [0, 1, 1])
    assert gray.images.shape == (3, 1, 6, 6) and float(gray.images.max()) == 1.0
    assert gray.num_classes == 2 and gray.classes == ["0", "1"]
    rgba = ArrayImageDataset(np.zeros((2, 4, 16, 16), dtype=np.float32))
    assert rgba.shape == (4, 16, 16)
    # floats are kept as they are
    assert float(ArrayImageDataset(np.full((1, 3, 5, 5), 7.5)).images.max()) == 7.5
    # explicit layout overrides detection
    forced = ArrayImageDataset(np.zeros((2, 3, 3, 3)), layout="NHWC")
    assert forced.images.shape == (2, 3, 3, 3)


def test_array_dataset_errors():
    with pytest.raises(ValueError, match="layout"):
        ArrayImageDataset(np.zeros((2, 3, 3, 3)))  # ambiguous
    with pytest.raises(ValueError, match="layout"):
        ArrayImageDataset(np.zeros((2, 7, 8, 9)))  # no channel axis
    with pytest.raises(ValueError, match="axes"):
        ArrayImageDataset(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        ArrayImageDataset(np.zeros((4, 8, 8)), labels=[0, 1, 2])
    with pytest.raises(ValueError, match="classes"):
        ArrayImageDataset(np.zeros((2, 8, 8)), labels=[0, 3], classes=["a", "b"])


def test_normalisation_and_subset():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=g) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    mean, std = channel_stats(x)
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(std, x.std((0, 2, 3), correction=0))
    z = normalize(x, mean, std)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), correction=0), torch.ones(3))
    ds = ArrayImageDataset(x, torch.arange(16) % 4, normalize="auto")
    torch.testing.assert_close(ds.images, z)
    assert torch.equal(ds.mean, mean)
    fixed = ArrayImageDataset(x, normalize=(0.5, 0.25))
    torch.testing.assert_close(fixed.images, (x - 0.5) / 0.25)
    sub = ds.subset([3, 1])
    assert sub.labels.tolist() == [3, 1] and sub.num_classes == 4
    assert torch.equal(sub.images[0], ds.images[3])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch[0].shape == (5, 3, 8, 8) and batch[1].tolist() == [0, 1, 2, 3, 0]


# ---------------------------------------------------------------------------- splits
def test_split_per_class_exact_and_seeded():
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate((30, 12, 50))])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    labels = torch.cat([labels, torch.full((7,), -1)])  # unlabelled are never chosen
    idx = split_per_class(labels, 10, seed=0)
    assert idx.shape == (30,) and torch.equal(idx, idx.sort().values)
    assert len(set(idx.tolist())) == 30
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert torch.equal(idx, split_per_class(labels.numpy(), 10, seed=0))
    assert not torch.equal(idx, split_per_class(labels, 10, seed=1))
    assert torch.bincount(labels[split_per_class(labels, 12, seed=5)]).tolist() == [12] * 3
    with pytest.raises(ValueError, match="class 1"):
        split_per_class(labels, 13, seed=0)


def test_train_test_split_indices():
    train, test = train_test_split_indices(101, 0.2, seed=0)
    assert len(test) == 20 and len(train) == 81
    assert sorted(train.tolist() + test.tolist()) == list(range(101))
    again = train_test_split_indices(101, 0.2, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert not torch.equal(test, train_test_split_indices(101, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split_indices(10, 1.0)


def test_package_exports_the_modules_names():
    import relpos.vision as vision
    from relpos.vision import augment, bundled, cifar, datasets, registry, streaming

    modules = (augment, bundled, cifar, datasets, registry, streaming)
    for name in vision.__all__:
        homes = [m for m in modules if name in m.__all__]
        assert len(homes) == 1 and getattr(vision, name) is getattr(homes[0], name), name


def test_channel_moments_in_chunks_and_inputs_left_alone(monkeypatch):
    x = torch.rand(40, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    x = x * torch.tensor([1.0, 4.0, 9.0])[:, None, None] + 2.0
    want = channel_stats(x)
    monkeypatch.setattr(ChannelMoments, "CHUNK", 3 * 5 * 7 * 6)  # 6 images a chunk, 4 left over
    for got, ref in zip(ChannelMoments.of(x), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)
    keep = x.clone()
    ds = ArrayImageDataset(
        x, normalize="auto"
    )  # the caller's float tensor is not normalised in place
    assert torch.equal(x, keep)
    torch.testing.assert_close(ds.images, normalize(x, *want))
    u8 = torch.randint(0, 256, (6, 9, 9, 3), dtype=torch.uint8)
    own = ArrayImageDataset(u8, normalize=(0.5, 0.2))  # a tensor made here: normalised in place
    ref = normalize(rearrange(u8, "n h w c -> n c h w").float() / 255.0, 0.5, 0.2)
    assert torch.equal(own.images, ref) and own.images.is_contiguous()
    with pytest.raises(ValueError, match="no images"):
        ChannelMoments(3).result()
