"""Issue 12, item 7: the library's edges give one-line ValueErrors naming the argument.

PART checks its head's ``out_dim`` against the targets (MSE used to broadcast silently);
``extract`` handles B=0 and C=0; a NaN or infinite span is refused where the spans are made
(it used to surface as an ``IndexError``); a token shape such as ``2.5`` is refused (it used
to raise ``'float' object is not iterable``, or was truncated); ``sample_pairs`` with self
pairs accepts one token; ``ViT`` and the heads refuse sizes and rates that cannot work.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos.core.checks import check_names, int_shape, positive_int
from relpos.core.extract import extract
from relpos.core.modality import MODALITIES, Modality, image, video
from relpos.core.part import PART, head_out_dim
from relpos.core.sampler_configs import SAMPLERS
from relpos.core.samplers import Grid, RandomBoxes, RandomSpans, RandomWindows
from relpos.core.spans import Spans, sample_pairs
from relpos.core.tokenizer import Tokenizer
from relpos.nn.heads import HEADS, CrossAttentionHead, MLPHead, PairwiseMLPHead, create_head
from relpos.nn.vit import MODELS, ViT
from relpos.train.config import TrainConfig, build_model
from relpos.train.methods import get_method, list_methods


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------- PART out_dim
def _encoder(token_dim: int = 20, dim: int = 16) -> ViT:
    return ViT(token_dim, dim=dim, depth=1, heads=2, class_token=False)


@pytest.mark.parametrize("head", ["cross_attention", "pairwise_mlp", "mlp"])
def test_part_refuses_a_head_of_the_wrong_width_at_construction(head):
    """The issue's case: 1-D windows with a head of out_dim=2."""
    h = create_head(head, 16, 2, **({"num_tokens": 5} if head == "mlp" else {}))
    with pytest.raises(ValueError) as info:
        PART(_encoder(), h, 4, ndim=1)
    assert "out_dim is 2" in _one_line(info) and "need out_dim=1" in str(info.value)
    PART(_encoder(), create_head(head, 16, 1, **({"num_tokens": 5} if head == "mlp" else {})), 4,
         ndim=1)  # fmt: skip


def test_part_refuses_a_head_of_the_wrong_width_in_forward():
    """Without ``ndim`` the check runs on the first batch, before any loss is computed (the MSE
    of (B, M, 2) predictions against (B, M, 1) targets used to broadcast and train)."""
    model = PART(_encoder(), CrossAttentionHead(16, out_dim=2), 4)
    x = torch.randn(2, 2, 100)
    with pytest.raises(ValueError, match=r"out_dim is 2 but 1-D spans .* need out_dim=1"):
        model.forward_raw(x, RandomWindows(10, 5), 10)
    scaled = PART(_encoder(), CrossAttentionHead(16, out_dim=1), 4, scale="log")
    with pytest.raises(ValueError, match="need out_dim=2"):
        scaled.forward_raw(x, RandomWindows(10, 5), 10)
    nll = PART(_encoder(), CrossAttentionHead(16, out_dim=2), 4, loss="gaussian_nll")
    out = nll.forward_raw(x, RandomWindows(10, 5), 10)  # 1-D: mean and log-variance
    assert out.pred.shape == out.target.shape == (2, 4, 1) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="need out_dim=4"):
        PART(_encoder(), CrossAttentionHead(16, out_dim=2), 4, scale="ratio",
             loss="gaussian_nll", ndim=1)  # fmt: skip


@pytest.mark.parametrize("scale", [None, "ratio", "log"])
@pytest.mark.parametrize("loss", ["mse", "gaussian_nll"])
def test_configs_build_parts_whose_heads_fit(scale, loss):
    cfg = TrainConfig.model_validate(
        {
            "modality": {"name": "image", "channels": 1, "extent": [8, 8], "token_shape": [2, 2]},
            "encoder": {"preset": "vit_mini", "dim": 16, "depth": 1, "heads": 2},
            "pretext": {"sampler": {"kind": "boxes", "size": 2, "count": 6}, "scale": scale,
                        "loss": loss, "num_pairs": 4},
        }
    )  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, PART)
    assert model.head.out_dim == head_out_dim(2, scale, loss)
    out = model.forward_raw(torch.randn(2, 1, 8, 8), cfg.pretext_sampler(), (2, 2))
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------------- extract B=0, C=0
@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 3),
    batch=st.integers(0, 3),
    channels=st.integers(0, 2),
    num=st.integers(0, 4),
    token=st.integers(1, 3),
    margin=st.integers(1, 3),
    offgrid=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.uint8]),
)
def test_extract_of_empty_batches_and_channels(
    d, batch, channels, num, token, margin, offgrid, dtype
):
    """Any of B, C, N zero: the empty result of the right shape and dtype (it used to fail with
    "Storage size calculation overflowed"); otherwise the usual result."""
    extent = (token + margin,) * d
    x = torch.zeros((batch, channels, *extent), dtype=dtype)
    size = torch.full((batch, num, d), token + (0.5 if offgrid else 0.0))
    centre = size / 2 + 0.25 * offgrid
    tokens = extract(x, Spans(centre, size), token)
    assert tokens.shape == (batch, num, channels, *(token,) * d)
    assert tokens.dtype == (dtype if dtype.is_floating_point else torch.float32)
    assert not tokens.any()


def test_extract_still_checks_spans_of_empty_channels():
    x = torch.zeros(2, 0, 10)
    outside = Spans(torch.full((2, 3, 1), 9.0), torch.full((2, 3, 1), 4.0))
    with pytest.raises(ValueError, match="inside the input extent"):
        extract(x, outside, 4)


def test_tokenizers_of_empty_channels():
    x = torch.zeros(2, 0, 40)
    spans = RandomWindows(10, 3)(40, 2, generator=torch.Generator().manual_seed(0))
    for tok in (Tokenizer((8,)), Tokenizer((8,), oversample=2, band=3.0, standardize=True)):
        assert tok(x, spans).shape == (2, 3, 0, 8)


# ---------------------------------------------------------------------- non-finite spans
@pytest.mark.parametrize(
    ("centre", "size", "message"),
    [
        (math.nan, 4.0, r"Spans.centre must be finite; got values such as \[nan\]"),
        (math.inf, 4.0, r"Spans.centre must be finite; got values such as \[inf\]"),
        (5.0, math.nan, r"Spans.size must be positive and finite; got values such as \[nan\]"),
        (5.0, math.inf, r"Spans.size must be positive and finite; got values such as \[inf\]"),
        (5.0, 0.0, r"Spans.size must be positive and finite; got values such as \[0.0\]"),
    ],
)
def test_non_finite_spans_are_refused_naming_the_value(centre, size, message):
    c = torch.full((2, 3, 1), 5.0)
    s = torch.full((2, 3, 1), 4.0)
    c[1, 2, 0], s[1, 2, 0] = centre, size
    with pytest.raises(ValueError, match=message) as info:
        Spans(c, s)
    _one_line(info)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RandomWindows(math.nan, 4),
        lambda: RandomWindows(math.inf, 4),
        lambda: RandomWindows((math.nan, 10.0), 4),
        lambda: RandomBoxes(size=(4.0, math.nan), count=4),
        lambda: RandomSpans(math.inf, 4),
        lambda: RandomWindows(10, 4, scale=(0.5, math.inf)),
    ],
)
def test_samplers_refuse_non_finite_sizes(build):
    with pytest.raises(ValueError, match="finite") as info:
        build()
    _one_line(info)


# ---------------------------------------------------------------------- token shapes
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: extract(torch.zeros(1, 1, 20), _spans(), 2.5), "token_shape"),
        (lambda: extract(torch.zeros(1, 1, 20), _spans(), [2.5]), "token_shape"),
        (lambda: extract(torch.zeros(1, 1, 20), _spans(), [0]), "token_shape"),
        (lambda: extract(torch.zeros(1, 1, 20), _spans(), "4"), "token_shape"),
        (lambda: Grid(2.5), "Grid: token_shape"),
        (lambda: Grid((2, 2.5)), "Grid: token_shape"),
        (lambda: Grid(4, stride=1.5), "Grid: stride"),
        (lambda: Grid(4, size=True), "Grid: size"),
        (lambda: Tokenizer((2.5,)), "Tokenizer: token_shape"),
        (lambda: Tokenizer(2.5), "Tokenizer: token_shape"),
        (lambda: image(patch=2.5), "image: patch"),
        (lambda: video(tubelet=(2, 2.5, 4)), "video: tubelet"),
        (lambda: Modality("m", 1, (2.5,), RandomWindows(2, 4), Grid(2)), "m: token_shape"),
        (lambda: Modality("m", 0, (2,), RandomWindows(2, 4), Grid(2)), "m: channels"),
        (lambda: ViT(10, dim=8, depth=1, heads=2, embed="conv", token_shape=(2.5,)),
         "ViT: token_shape"),
    ],
)  # fmt: skip
def test_a_fractional_token_shape_is_refused_naming_it(call, field):
    with pytest.raises(ValueError) as info:
        call()
    assert field in _one_line(info)


def _spans() -> Spans:
    return Spans(torch.full((1, 2, 1), 5.0), torch.full((1, 2, 1), 4.0))


def test_whole_number_token_shapes_still_work():
    x = torch.arange(20.0).view(1, 1, 20)
    want = extract(x, _spans(), 4)
    for ts in (4, [4], (4,), 4.0, np.int64(4), torch.tensor([4])):
        assert torch.equal(extract(x, _spans(), ts), want)
    assert Grid(4).token_shape == 4 and Grid([2, 2]).token_shape == (2, 2)
    assert Tokenizer((4.0,)).token_shape == (4,)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(-10, 10), st.sampled_from([math.nan, math.inf]), st.integers(-5, 5)))
def test_int_shape_accepts_only_whole_positive_numbers(value):
    ok = math.isfinite(value) and value == int(value) and value >= 1
    if ok:
        assert int_shape(value, "f", 2) == (int(value),) * 2
    else:
        with pytest.raises(ValueError, match=r"^f must be a positive integer"):
            int_shape(value, "f", 2)


def test_checks_name_the_field():
    with pytest.raises(ValueError, match=r"^n must be a positive integer; got True$"):
        positive_int(True, "n")
    with pytest.raises(ValueError, match=r"ts \(1, 2\) must have one entry per axis \(D=3\)"):
        int_shape((1, 2), "ts", 3)
    with pytest.raises(ValueError, match=r"^unknown colour 'red'; known: blue, green$"):
        check_names(["blue", "red"], ["blue", "green"], "colour")
    with pytest.raises(ValueError, match=r"^colours repeat: 'blue'$"):
        check_names(["blue", "green", "blue"], ["blue", "green"], "colour")


# ---------------------------------------------------------------------- pairs
def test_self_pairs_accept_a_single_token():
    pairs = sample_pairs(3, 1, 5, self_pairs=True, generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (3, 5, 2) and not pairs.any()
    with pytest.raises(ValueError, match=r"num_tokens must be >= 1 .*self pairs allowed.*got 0"):
        sample_pairs(3, 0, 5, self_pairs=True)
    with pytest.raises(ValueError, match=r"num_tokens must be >= 2 .*distinct tokens; got 1"):
        sample_pairs(3, 1, 5)


def test_part_with_self_pairs_trains_on_one_token():
    model = PART(_encoder(), CrossAttentionHead(16, out_dim=1), 4, self_pairs=True, ndim=1)
    tokens = torch.randn(2, 1, 2, 10)
    spans = Spans(torch.full((2, 1, 1), 5.0), torch.full((2, 1, 1), 10.0))
    out = model(tokens, spans)
    assert out.target.abs().max() == 0 and torch.isfinite(out.loss)


# ---------------------------------------------------------------------- ViT and heads
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=0), "ViT: dim must be a positive integer; got 0"),
        (dict(depth=0), "ViT: depth must be a positive integer; got 0"),
        (dict(heads=0), "ViT: heads must be a positive integer; got 0"),
        (dict(token_dim=0), "ViT: token_dim must be a positive integer; got 0"),
        (dict(dim=7, heads=2), "ViT: dim (7) must be divisible by heads (2)"),
        (dict(dim=8.5), "ViT: dim must be a positive integer; got 8.5"),
        (dict(drop=1.0), "ViT: drop must lie in [0, 1); got 1.0"),
        (dict(attn_drop=-0.1), "ViT: attn_drop must lie in [0, 1); got -0.1"),
        (dict(drop_path=1.5), "ViT: drop_path must lie in [0, 1); got 1.5"),
        (dict(pos_drop=1.0), "ViT: pos_drop must lie in [0, 1); got 1.0"),
        (dict(drop=math.nan), "ViT: drop must lie in [0, 1); got nan"),
        (dict(mlp_ratio=0), "ViT: mlp_ratio must be positive and finite; got 0"),
        (dict(pos_unit=math.inf), "ViT: pos_unit must be positive and finite; got inf"),
        (dict(pos_embed="sincos", num_tokens=-1), "ViT: num_tokens must be a positive integer"),
        (dict(num_classes=-1), "ViT: num_classes (0: no head) must be a positive integer"),
    ],
)
def test_vit_refuses_bad_arguments_naming_them(kwargs, message):
    args = {"token_dim": 10, "dim": 8, "depth": 1, "heads": 2, **kwargs}
    with pytest.raises(ValueError) as info:
        ViT(**args)
    assert message in _one_line(info)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CrossAttentionHead(0, 2), "CrossAttentionHead: dim must be a positive integer"),
        (lambda: CrossAttentionHead(8, 0), "CrossAttentionHead: out_dim must be a positive"),
        (lambda: CrossAttentionHead(8, 2, heads=3), "dim (8) must be divisible by heads (3)"),
        (lambda: PairwiseMLPHead(8, 2.5), "PairwiseMLPHead: out_dim must be a positive integer"),
        (lambda: PairwiseMLPHead(8, 2, hidden=-1), "PairwiseMLPHead: hidden must be a positive"),
        (lambda: MLPHead(8, 2, num_tokens=2.5), "MLPHead: num_tokens must be a positive integer"),
        (lambda: MLPHead(8, 2, num_tokens=4, hidden=0.5), "MLPHead: hidden must be a positive"),
    ],
)
def test_heads_refuse_bad_sizes_naming_them(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert message in _one_line(info)


# ---------------------------------------------------------------------- registries
@pytest.mark.parametrize(
    ("registry", "kind"),
    [(MODALITIES, "modality"), (SAMPLERS, "sampler"), (HEADS, "head"), (MODELS, "model preset")],
)
def test_every_registry_words_an_unknown_name_the_same_way(registry, kind):
    with pytest.raises(ValueError) as info:
        registry.get("nope")
    assert _one_line(info) == f"unknown {kind} 'nope'; known: {', '.join(registry.names())}"


def test_unknown_method_is_worded_like_the_registries():
    with pytest.raises(ValueError) as info:
        get_method("part_gird")
    assert _one_line(info) == f"unknown method 'part_gird'; known: {', '.join(list_methods())}"
