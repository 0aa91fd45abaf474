"""Data sources: the registry, the generic arrays source, the image sources and normalisation of
what a factory returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import relpos
from relpos.train.data import SourceData, class_weights, load_arrays, load_data


def test_builtin_sources_are_listed_without_importing_them():
    names = relpos.list_data_sources()
    assert {"eeg_store", "images", "image_folder", "image_arrays", "arrays", "digits"} <= set(names)
    with pytest.raises(ValueError, match=r"unknown data source 'hdf5'; known: .*arrays"):
        relpos.get_data_source("hdf5")


def test_load_data_normalises_what_factories_return():
    x = torch.zeros(4, 1, 3)
    relpos.register_data_source("plain_test", lambda p, s, lab: TensorDataset(x))
    relpos.register_data_source("pair_test", lambda p, s, lab: (TensorDataset(x), [0, 0, 1, 1]))
    relpos.register_data_source("bad_test", lambda p, s, lab: [1, 2])
    assert load_data("plain_test", None, "pretrain", False).groups is None
    assert load_data("pair_test", None, "pretrain", False).groups.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="returned list, not a Dataset"):
        load_data("bad_test", None, "pretrain", False)


def test_arrays_source(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((5, 2, 7), np.float32), y=np.array([0, 1, -1, 1, 1]))
    data = load_arrays(path, "finetune", labelled=True)
    assert len(data.dataset) == 4 and data.labels.tolist() == [0, 1, 1, 1]
    assert len(load_arrays(path, "pretrain", labelled=False).dataset) == 5
    np.savez(tmp_path / "s.npz", finetune_x=np.ones((2, 1, 3)), finetune_y=np.array([1, 0]))
    assert load_arrays(tmp_path / "s.npz", "finetune", True).labels.tolist() == [1, 0]
    np.save(tmp_path / "u.npy", np.ones((3, 1, 4)))
    with pytest.raises(ValueError, match="labelled training needs an array 'y'"):
        load_arrays(tmp_path / "u.npy", "finetune", True)
    with pytest.raises(FileNotFoundError, match="no.npz"):
        load_arrays(tmp_path / "no.npz", "pretrain", False)
    with pytest.raises(ValueError, match="must be a .npz or .npy file"):
        load_arrays(tmp_path, "pretrain", False)


def test_class_weights():
    w = class_weights(np.array([0, 0, 0, 1, -1]), 3)
    assert torch.allclose(w, torch.tensor([4 / 3 / 3, 4 / 1 / 3, 4 / 1 / 3]))


def test_image_sources(tmp_path):
    from PIL import Image

    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (10, 6), (40 * i, 100 * k, 7)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    folder = load_data("images", tmp_path / "imgs", "finetune", True, size=8)
    assert isinstance(folder, SourceData) and folder.dataset.images.shape == (4, 3, 8, 8)
    assert folder.labels.tolist() == [0, 0, 1, 1]

    np.savez(tmp_path / "a.npz", images=np.zeros((3, 5, 5), np.uint8), labels=np.array([-1, 0, 1]))
    arrays = load_data("images", tmp_path / "a.npz", "finetune", True, normalize=None)
    assert arrays.dataset.images.shape == (2, 1, 5, 5)
    assert len(load_data("image_arrays", tmp_path / "a.npz", "pretrain", False).dataset) == 3
    np.savez(tmp_path / "none.npz", x=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="needs labelled images"):
        load_data("image_arrays", tmp_path / "none.npz", "finetune", True)

    digits = load_data("images", "digits", "test", True)
    assert digits.dataset.images.shape[1:] == (1, 8, 8) and len(digits.dataset) == 359
    with pytest.raises(ValueError, match="expected an image folder, a .npz/.npy file"):
        load_data("images", tmp_path / "missing", "pretrain", False)


def test_eeg_store_source_errors(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError)):
        load_data("eeg_store", tmp_path / "no-store", "pretrain", False)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_damaged_array_files_are_named(tmp_path, suffix):
    """A truncated file, or one holding pickled objects, is a ValueError naming the file (numpy
    raises EOFError, BadZipFile or a ValueError that does not name it)."""
    path = tmp_path / f"x{suffix}"
    if suffix == ".npz":
        np.savez(path, x=np.zeros((50, 3)))
    else:
        np.save(path, np.zeros((50, 3)))
    path.write_bytes(path.read_bytes()[:150])
    with pytest.raises(ValueError, match=rf"{path.name}: cannot read the data file: ") as info:
        load_arrays(path, "train", False)
    assert "\n" not in str(info.value)
    if suffix == ".npy":
        np.save(path, np.array([object()], dtype=object), allow_pickle=True)
        with pytest.raises(ValueError, match="Object arrays cannot be loaded"):
            load_arrays(path, "train", False)
