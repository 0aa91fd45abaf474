"""The conv-stem tokenizer (``ViT(embed="conv")``) and explicit position keep masks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from relpos import PART, CrossAttentionHead, Grid, RandomBoxes, ViT
from relpos.nn.vit import ConvStem


@pytest.mark.parametrize(
    "channels,token_shape,convs",
    [(2, (10,), 3), (6, (100,), 3), (3, (4, 4), 2), (1, (2, 8), 1), (2, (4, 4, 4), 2)],
)
def test_conv_stem_shapes(channels, token_shape, convs):
    torch.manual_seed(0)
    enc = ViT(
        channels * int(torch.tensor(token_shape).prod()),
        dim=32,
        depth=1,
        heads=2,
        embed="conv",
        token_shape=token_shape,
    )
    assert isinstance(enc.embed, ConvStem) and enc.config["channels"] == channels
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in enc.embed.modules()) == convs
    tokens = torch.randn(3, 5, channels, *token_shape)
    feats = enc.forward_features(tokens)
    assert feats.shape == (3, 6, 32)
    # flat tokens give the same result; examples do not mix (per-token norm)
    torch.testing.assert_close(enc.forward_features(tokens.flatten(2)), feats)
    torch.testing.assert_close(enc.forward_features(tokens[:1]), feats[:1], atol=1e-5, rtol=1e-4)


def test_config_rebuilds_the_conv_encoder():
    enc = ViT(48, dim=32, depth=1, heads=2, embed="conv", token_shape=(4, 4))
    config = json.loads(json.dumps(enc.config))
    again = ViT(**config)
    again.load_state_dict(enc.state_dict())
    tokens = torch.randn(2, 5, 3, 4, 4)
    torch.testing.assert_close(again.forward_features(tokens), enc.forward_features(tokens))


def test_linear_embedding_is_unchanged():
    torch.manual_seed(0)
    a = ViT(48, dim=32, depth=1, heads=2)
    torch.manual_seed(0)
    b = ViT(48, dim=32, depth=1, heads=2, embed="linear", token_shape=(4, 4), channels=3)
    assert isinstance(a.embed, torch.nn.Linear) and a.config["embed"] == "linear"
    tokens = torch.randn(2, 5, 48)
    assert torch.equal(a.forward_features(tokens), b.forward_features(tokens))


def test_bad_conv_arguments():
    with pytest.raises(ValueError, match="needs token_shape"):
        ViT(48, dim=32, depth=1, heads=2, embed="conv")
    with pytest.raises(ValueError, match="must equal channels"):
        ViT(48, dim=32, depth=1, heads=2, embed="conv", token_shape=(4, 4), channels=2)
    with pytest.raises(ValueError, match="embed must be"):
        ViT(48, dim=32, depth=1, heads=2, embed="mlp")
    with pytest.raises(ValueError, match="1 to 3 axes"):
        ConvStem(1, (2, 2, 2, 2), 8)


def test_explicit_pos_keep_is_used_in_train_and_eval():
    enc = ViT(48, dim=32, depth=1, heads=2, pos_embed="sincos", pos_drop=0.5)
    tokens, spans = torch.randn(2, 4, 48), Grid(4)((8, 8), 2)
    keep = torch.tensor([[True, False, True, True], [False, False, True, True]])
    enc.train()
    a = enc.forward_features(tokens, spans, pos_keep=keep)
    torch.testing.assert_close(enc.forward_features(tokens, spans, pos_keep=keep), a)
    enc.eval()
    torch.testing.assert_close(enc.forward_features(tokens, spans, pos_keep=keep), a)
    full = enc.forward_features(tokens, spans)
    torch.testing.assert_close(enc.forward_features(tokens, spans, pos_keep=keep | True), full)
    assert not torch.allclose(a, full)
    pos = enc._position(torch.zeros(2, 4, 32), spans, keep)
    assert torch.equal(pos.abs().sum(-1) == 0, ~keep)
    assert enc(tokens, spans, pos_keep=keep).shape == (2, 32)
    with pytest.raises(ValueError, match="pos_keep must be"):
        enc.forward_features(tokens, spans, pos_keep=keep[:, :3])


def _smooth_images(b: int, g: torch.Generator, size: int = 16) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    gain = torch.rand(b, 2, 1, 1, generator=g) * 1.5 + 0.5
    ramps = torch.stack([yy, xx])[None] / size * 4 * gain + torch.randn(b, 2, 1, 1, generator=g)
    noise = F.avg_pool2d(torch.randn(b, 2, size, size, generator=g), 5, stride=1, padding=2)
    return ramps + 0.5 * noise


def test_part_with_conv_stem_learns():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    enc = ViT(32, dim=32, depth=2, heads=2, embed="conv", token_shape=(4, 4))
    model = PART(enc, CrossAttentionHead(32, 2), num_pairs=32)
    sampler = RandomBoxes(size=4, count=12)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        out = model.forward_raw(_smooth_images(16, g), sampler, (4, 4), generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
