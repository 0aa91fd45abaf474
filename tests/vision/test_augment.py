"""Batched, seeded image augmentation (relpos.vision.augment)."""

from __future__ import annotations

import pytest
import torch

from relpos.vision.augment import make_augment, random_crop, random_flip


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
    with pytest.raises(ValueError, match=r"^unknown augmentation 'rotate'; known: flip, crop$"):
        make_augment(["rotate"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flip:1.5", r"augmentation 'flip:1.5': p must lie in \[0.0, 1.0\]"),
        ("flip:nan", r"augmentation 'flip:nan': p must lie in"),
        ("crop:-2", r"augmentation 'crop:-2': padding must lie in \[0, 1024\]"),
        ("crop:2.5", r"augmentation 'crop:2.5': bad padding '2.5'"),
    ],
)
def test_augment_arguments_are_checked_when_named(name, message):
    """Out-of-range arguments fail when the list is read (the image config validates it at
    load), not as a silently always-on flip or at the first batch."""
    with pytest.raises(ValueError, match=message):
        make_augment([name])
