"""All-pairs relative predictions, the shared ground of PART's capabilities (paper section 5.1).

Everything here uses only spans and relative predictions, so it works for any number of axes
``D`` (1D signals, 2D images; pasting supports D <= 3). Conventions (as :mod:`relpos.core.spans`):

- ``pred_rel[i, j]`` is the prediction for the pair (reference ``i``, target ``j``): the first
  ``D`` components are ``(c_j - c_i) / s_i`` per axis, optionally followed by ``D`` size terms
  ``s_j / s_i`` (``scale="ratio"``) or ``log(s_j / s_i)`` (``scale="log"``).
- spans of one example are a :class:`~relpos.core.spans.Spans` with batch 1, centres and sizes in
  input samples.
- devices may differ (e.g. predictions on CUDA, spans on CPU): geometry is computed on the
  spans' device, pasting on the tokens' device. Nothing here tracks gradients that matter:
  these are analysis tools, not training code.

:func:`predict_all_pairs` / :func:`true_all_pairs` give ``(B, N, N, T)`` matrices for every
ordered pair (diagonal included); :func:`placements` turns them into absolute positions. The
checks and conversions the capability modules share (:func:`one_example`, :func:`pair_matrix`,
:func:`batched_pairs`, :func:`size_ratios`) live here too. The capabilities:
:mod:`~relpos.analysis.reconstruction`, :mod:`~relpos.analysis.uncertainty`,
:mod:`~relpos.analysis.symmetry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from einops import rearrange
from torch import Tensor, nn

from relpos.core.spans import Scale, Spans, relative_targets

__all__ = [
    "RelativePredictor",
    "all_pairs",
    "batched_pairs",
    "call_all_pairs",
    "one_example",
    "pair_matrix",
    "placements",
    "predict_all_pairs",
    "size_ratios",
    "true_all_pairs",
]


class RelativePredictor(Protocol):
    """Anything with PART's ``predict(tokens, spans, pairs) -> (B, M, T)``."""

    def predict(self, tokens: Tensor, spans: Spans | None, pairs: Tensor) -> Tensor: ...


# ---------------------------------------------------------------------------- all pairs
def all_pairs(num: int, batch: int = 1, device: Any = None) -> Tensor:
    """Every ordered (reference, target) pair, row-major: ``(B, N * N, 2)`` long.

    Pair ``i * N + j`` is ``(i, j)``; the diagonal ``(i, i)`` is included.
    """
    i, j = torch.meshgrid(
        torch.arange(num, device=device), torch.arange(num, device=device), indexing="ij"
    )
    pairs = torch.stack([i.reshape(-1), j.reshape(-1)], dim=-1)
    return pairs.unsqueeze(0).expand(batch, -1, -1)


@torch.no_grad()
def predict_all_pairs(
    model: RelativePredictor,
    tokens: Tensor,
    spans: Spans | None,
    *,
    max_pairs: int = 4096,
    eval_mode: bool = True,
) -> Tensor:
    """Predictions for every ordered pair: ``(B, N, N, T)``, ``[b, i, j]`` = (ref i, target j).

    One ``model.predict(tokens, spans, pairs)`` call with all ``N * N`` pairs (built with a
    meshgrid) when ``N * N <= max_pairs``; otherwise the pairs are split into chunks of
    ``max_pairs`` and ``predict`` is called once per chunk (which re-encodes the tokens: simple
    and correct for any model, at the cost of repeated encoder passes for very large N).

    Args:
        model: e.g. :class:`~relpos.core.part.PART`.
        tokens: ``(B, N, C, *token_shape)``.
        spans: ``(B, N, D)`` spans of the tokens (passed through to the encoder, e.g. for
            position encodings; PART ignores them with ``pos_embed="none"``).
        max_pairs: most pairs per ``predict`` call.
        eval_mode: run an ``nn.Module`` in eval mode (dropout off), restoring its mode after.

    Returns:
        ``(B, N, N, T)`` on the model's output device. With a PART trained with
        ``loss="gaussian_nll"`` these are the predicted means (see
        :func:`~relpos.analysis.uncertainty.predicted_variance` for the variances).
    """
    return call_all_pairs(model, model.predict, tokens, spans, max_pairs, eval_mode)


@torch.no_grad()
def call_all_pairs(
    model: Any,
    fn: Callable[[Tensor, Spans | None, Tensor], Tensor],
    tokens: Tensor,
    spans: Spans | None,
    max_pairs: int = 4096,
    eval_mode: bool = True,
) -> Tensor:
    """``fn(tokens, spans, pairs) -> (B, M, T)`` over every ordered pair, in chunks of
    ``max_pairs``, as ``(B, N, N, T)``; ``model`` (an ``nn.Module``) runs in eval mode when
    ``eval_mode`` (its mode is restored after)."""
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1; got {max_pairs}")
    b, n = tokens.shape[:2]
    if spans is not None:
        if spans.batch != b or spans.num != n:
            raise ValueError(
                f"spans (B={spans.batch}, N={spans.num}) do not match tokens (B={b}, N={n})"
            )
        spans = spans.to(tokens.device)
    pairs = all_pairs(n, b, tokens.device)
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None and eval_mode:
        module.eval()
    try:
        chunks = [fn(tokens, spans, p) for p in pairs.split(max_pairs, dim=1)]
    finally:
        if module is not None and eval_mode:
            module.train(was_training)
    return rearrange(torch.cat(chunks, dim=1), "b (i j) t -> b i j t", i=n)


def true_all_pairs(spans: Spans, scale: Scale = None) -> Tensor:
    """Ground-truth relative positions for every ordered pair: ``(B, N, N, T)`` (diagonal 0)."""
    pairs = all_pairs(spans.num, spans.batch, spans.device)
    return rearrange(relative_targets(spans, pairs, scale), "b (i j) t -> b i j t", i=spans.num)


# ---------------------------------------------------------------------------- shared checks
def one_example(spans: Spans, who: str) -> tuple[Tensor, Tensor]:
    """Centres and sizes ``(N, D)`` of a one-example Spans."""
    if spans.batch != 1:
        raise ValueError(f"{who}: spans must hold one example (B=1); got B={spans.batch}")
    return spans.centre[0], spans.size[0]


def pair_matrix(pred_rel: Tensor, n: int, d: int, who: str) -> Tensor:
    """``(N, N, T)`` from ``(N, N, T)`` or ``(1, N, N, T)``."""
    if pred_rel.ndim == 4 and pred_rel.shape[0] == 1:
        pred_rel = pred_rel[0]
    if pred_rel.ndim != 3 or pred_rel.shape[:2] != (n, n) or pred_rel.shape[2] < d:
        raise ValueError(
            f"{who}: pred_rel must be (N, N, T) with N={n} and T >= D={d}; "
            f"got {tuple(pred_rel.shape)}"
        )
    return pred_rel


def batched_pairs(pred_rel: Tensor, spans: Spans, who: str) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``pred (B, N, N, T)``, centre, size ``(B, N, D)``; accepts ``(N, N, T)`` with B=1."""
    single = pred_rel.ndim == 3
    pred = pred_rel[None] if single else pred_rel
    b, n, d = spans.batch, spans.num, spans.ndim
    if pred.ndim != 4 or pred.shape[:3] != (b, n, n) or pred.shape[3] < d:
        raise ValueError(
            f"{who}: pred_rel must be (B, N, N, T) or (N, N, T) matching spans (B={b}, N={n}, "
            f"D={d}); got {tuple(pred_rel.shape)}"
        )
    if n < 2:
        raise ValueError(f"{who}: needs at least two spans; got N={n}")
    c = spans.centre.to(pred.device, pred.dtype)
    s = spans.size.to(pred.device, pred.dtype)
    return pred, c, s, single


def size_ratios(pred: Tensor, d: int, scale: Scale) -> Tensor | None:
    """Size ratios ``s_tgt / s_ref`` from the scale components of ``pred (..., T)``, or None."""
    t = pred.shape[-1]
    if t == d:
        if scale is not None:
            raise ValueError(f"scale={scale!r} but predictions have only D={d} components")
        return None
    if t != 2 * d:
        raise ValueError(f"predictions must have D={d} or 2D={2 * d} components; got T={t}")
    if scale not in ("ratio", "log"):
        raise ValueError(
            f"predictions have {t} = 2D components (translations + sizes): pass scale='ratio' "
            "or scale='log' to say how the size terms are encoded"
        )
    terms = pred[..., d:]
    return terms.exp() if scale == "log" else terms


def placements(pred_rel: Tensor, spans: Spans) -> Tensor:
    """Absolute target positions implied by every reference: ``c_i + pred[i, j, :D] * s_i``.

    Args:
        pred_rel: ``(B, N, N, T)`` or ``(N, N, T)`` (with one-example spans).
        spans: ``(B, N, D)``.

    Returns:
        ``(B, N, N, D)`` (or ``(N, N, D)``): ``[.., i, j]`` is where reference ``i`` puts
        target ``j``, in input samples.
    """
    pred, c, s, single = batched_pairs(pred_rel, spans, "placements")
    d = spans.ndim
    out = c[:, :, None, :] + pred[..., :d] * s[:, :, None, :]
    return out[0] if single else out
