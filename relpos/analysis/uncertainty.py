"""Patch uncertainty (paper section 5.1): the spread of a target's absolute position as
predicted from every other reference span (:func:`patch_uncertainty` for one target with its
placements, :func:`uncertainty_all` for every target at once), and the variance a PART trained
with ``loss="gaussian_nll"`` predicts per pair (:func:`predicted_variance`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from relpos.analysis.pairs import batched_pairs, call_all_pairs, one_example, pair_matrix
from relpos.core.spans import Spans

__all__ = ["UncertaintyResult", "patch_uncertainty", "predicted_variance", "uncertainty_all"]


@dataclass
class UncertaintyResult:
    """Where every other reference places one target span.

    Attributes:
        target: the target span's index.
        references: ``(N - 1,)`` indices of the references (every span but the target).
        placements: ``(N - 1, D)`` predicted absolute centres ``c_i + pred[i, target] * s_i``.
        mean: ``(D,)`` their mean; ``covariance``: ``(D, D)`` their covariance (population,
            divided by ``N - 1`` placements).
        uncertainty: ``trace(covariance)`` in squared input samples.
        uncertainty_rel: the same with each axis in units of the target's size
            (``sum_a cov_aa / s_target,a^2``).
        true: ``(D,)`` the true centre; ``size``: ``(D,)`` the target's size.
        bias: ``|mean - true|`` in input samples.
    """

    target: int
    references: Tensor
    placements: Tensor
    mean: Tensor
    covariance: Tensor
    uncertainty: float
    uncertainty_rel: float
    true: Tensor
    size: Tensor
    bias: float

    @property
    def ndim(self) -> int:
        return int(self.true.shape[0])


@torch.no_grad()
def patch_uncertainty(pred_rel: Tensor, spans: Spans, target: int) -> UncertaintyResult:
    """Agreement of all references on the position of one target span (paper Figure 5).

    Args:
        pred_rel: ``(N, N, T)`` all-pairs predictions of one example.
        spans: its spans ``(1, N, D)``.
        target: the target's index.

    Returns:
        :class:`UncertaintyResult`; ``uncertainty`` equals ``uncertainty_all(...)[target]``.
    """
    c, s = one_example(spans, "patch_uncertainty")
    n, d = c.shape
    if n < 2:
        raise ValueError("patch_uncertainty needs at least two spans")
    if not 0 <= target < n:
        raise ValueError(f"patch_uncertainty: target must lie in [0, {n}); got {target}")
    pred = pair_matrix(pred_rel, n, d, "patch_uncertainty").to(c.device, c.dtype)
    refs = torch.arange(n, device=c.device)
    refs = refs[refs != target]
    pts = c[refs] + pred[refs, target, :d] * s[refs]  # (N - 1, D)
    mean = pts.mean(0)
    centred = pts - mean
    cov = centred.T @ centred / pts.shape[0]
    var = torch.diagonal(cov)
    return UncertaintyResult(
        target=int(target),
        references=refs,
        placements=pts,
        mean=mean,
        covariance=cov,
        uncertainty=float(var.sum()),
        uncertainty_rel=float((var / s[target] ** 2).sum()),
        true=c[target],
        size=s[target],
        bias=float((mean - c[target]).norm()),
    )


@torch.no_grad()
def uncertainty_all(pred_rel: Tensor, spans: Spans, *, relative: bool = False) -> Tensor:
    """Patch uncertainty of every span as the target, vectorised.

    ``trace`` of the (population) covariance of ``c_i + pred[i, j, :D] * s_i`` over the
    references ``i != j``.

    Args:
        pred_rel: ``(N, N, T)`` (one-example spans) or ``(B, N, N, T)``.
        spans: ``(B, N, D)``.
        relative: express each axis in units of the target's size.

    Returns:
        ``(N,)`` or ``(B, N)``.
    """
    pred, c, s, single = batched_pairs(pred_rel, spans, "uncertainty_all")
    n, d = spans.num, spans.ndim
    pts = c[:, :, None, :] + pred[..., :d] * s[:, :, None, :]  # (B, N_ref, N_tgt, D)
    w = (1 - torch.eye(n, device=pred.device, dtype=pred.dtype))[None, :, :, None]
    mean = (pts * w).sum(1) / (n - 1)  # (B, N_tgt, D)
    var = (((pts - mean[:, None]) ** 2) * w).sum(1) / (n - 1)  # (B, N_tgt, D)
    if relative:
        var = var / s**2
    out = var.sum(-1)
    return out[0] if single else out


@torch.no_grad()
def predicted_variance(
    model: Any,
    tokens: Tensor,
    spans: Spans | None,
    *,
    max_pairs: int = 4096,
    eval_mode: bool = True,
) -> Tensor:
    """The model's own variance for every ordered pair: ``(B, N, N, T)``, ``[b, i, j]`` = (ref
    ``i``, target ``j``), in the units of the relative targets (squared reference sizes for the
    translations).

    Needs a model with ``predict_with_logvar(tokens, spans, pairs) -> (mean, logvar)``, e.g. a
    :class:`~relpos.core.part.PART` with ``loss="gaussian_nll"``; the means are what
    :func:`~relpos.analysis.pairs.predict_all_pairs` returns.

    Args:
        model: the predictor.
        tokens: ``(B, N, C, *token_shape)``; spans: ``(B, N, D)``.
        max_pairs, eval_mode: as :func:`~relpos.analysis.pairs.predict_all_pairs`.
    """

    def variance(t: Tensor, s: Spans | None, pairs: Tensor) -> Tensor:
        _, logvar = model.predict_with_logvar(t, s, pairs)
        if logvar is None:
            raise ValueError(
                "predicted_variance: the model predicts no variance (train PART with "
                "loss='gaussian_nll')"
            )
        return cast(Tensor, logvar).exp()

    if not hasattr(model, "predict_with_logvar"):
        raise ValueError("predicted_variance: the model has no predict_with_logvar")
    return call_all_pairs(model, variance, tokens, spans, max_pairs, eval_mode)
