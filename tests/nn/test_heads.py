"""Relative heads: shapes, what each head can see, registry."""

from __future__ import annotations

import pytest
import torch

from relpos import CrossAttentionHead, MLPHead, PairwiseMLPHead, create_head, list_heads


@pytest.mark.parametrize("name", ["cross_attention", "pairwise_mlp", "mlp"])
@pytest.mark.parametrize("out_dim", [1, 2, 4])
def test_shapes(name, out_dim):
    kw = {"num_tokens": 7} if name == "mlp" else {}
    head = create_head(name, dim=32, out_dim=out_dim, **kw)
    pairs = torch.randint(0, 7, (3, 11, 2))
    assert head(torch.randn(3, 7, 32), pairs).shape == (3, 11, out_dim)


def test_cross_attention_sees_all_tokens_pairwise_does_not():
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 32)
    pairs = torch.tensor([[[0, 1]], [[0, 1]]])
    other = feats.clone()
    other[:, 3] = torch.randn(2, 32)  # change a third token (neither ref nor tgt)
    cross = CrossAttentionHead(32, 2).eval()
    pair = PairwiseMLPHead(32, 2).eval()
    mlp = MLPHead(32, 2, num_tokens=5).eval()
    assert not torch.allclose(cross(feats, pairs), cross(other, pairs))
    assert not torch.allclose(mlp(feats, pairs), mlp(other, pairs))
    torch.testing.assert_close(pair(feats, pairs), pair(other, pairs))


def test_heads_order_sensitive():
    torch.manual_seed(0)
    feats = torch.randn(1, 4, 32)
    head = CrossAttentionHead(32, 2)
    a = head(feats, torch.tensor([[[0, 1]]]))
    b = head(feats, torch.tensor([[[1, 0]]]))
    assert not torch.allclose(a, b)


def test_registry_errors():
    assert {"cross_attention", "pairwise_mlp", "mlp"} <= set(list_heads())
    assert isinstance(create_head("cross-attention", 32, 2), CrossAttentionHead)
    with pytest.raises(ValueError, match="unknown head 'transformer'"):
        create_head("transformer", 32, 2)
    with pytest.raises(ValueError, match="needs num_tokens"):
        create_head("mlp", 32, 2)
    with pytest.raises(ValueError, match="built for 7 tokens; got 5"):
        MLPHead(32, 2, num_tokens=7)(torch.randn(1, 5, 32), torch.zeros(1, 1, 2, dtype=torch.long))
