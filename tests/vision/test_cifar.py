"""CIFAR-10/100 python-pickle reader (relpos.vision.cifar) and its errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from relpos.vision.cifar import load_cifar
from relpos.vision.registry import load_image_dataset


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
