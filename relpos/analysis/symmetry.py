"""Negative symmetry (paper section 5.1, Figure 6): a perfect predictor has
``p_ij = -p_ji * s_j / s_i``. :func:`symmetry_matrices` gives the per-axis prediction and
ground-truth matrices, :func:`negative_symmetry_score` and :func:`symmetry_error` score it."""

from __future__ import annotations

from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor

from relpos.analysis.pairs import batched_pairs, one_example, pair_matrix, true_all_pairs
from relpos.core.spans import Spans, axis_names

__all__ = ["negative_symmetry_score", "symmetry_error", "symmetry_matrices"]


def _position_order(c: Tensor, s: Tensor) -> Tensor:
    """Row-major order of centres ``(N, D)``: rows of one median span size along every leading
    axis (so off-grid spans on roughly the same row sort together), then the last axis."""
    d = c.shape[1]
    keys = [torch.floor(c[:, a] / s[:, a].median()) for a in range(d - 1)] + [c[:, -1]]
    order = torch.arange(c.shape[0], device=c.device)
    for key in reversed(keys):  # least significant first; stable sorts keep earlier keys
        order = order[torch.sort(key[order], stable=True).indices]
    return order


@torch.no_grad()
def symmetry_matrices(
    pred_rel: Tensor,
    spans: Spans,
    order: Literal["position", "index", "random"] | Tensor = "position",
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Prediction and ground-truth ``N x N`` matrices per axis (paper Figure 6).

    Element ``[a, i, j]`` is the translation along axis ``a`` of target ``j`` relative to
    reference ``i`` (``(c_j - c_i) / s_i``). With the spans ordered by position, perfect
    predictions show the negative symmetry ``M[i, j] ~ -M[j, i]`` (exactly antisymmetric for
    equal sizes).

    Args:
        pred_rel: ``(N, N, T)`` all-pairs predictions of one example.
        spans: its spans ``(1, N, D)``.
        order: ``"position"`` (row-major: by row of one median span height, then by x, for 2D;
            by t in 1D), ``"index"`` (as given), ``"random"`` (shuffled with ``seed``, as the
            paper's shuffled panel), or an explicit ``(N,)`` permutation.

    Returns:
        dict with ``"axes"`` (axis names, e.g. ``("y", "x")``), ``"order"`` ``(N,)``,
        ``"pred"`` and ``"true"`` ``(D, N, N)`` (rows/columns in that order), ``"centre"``
        ``(N, D)`` the ordered centres.
    """
    c, s = one_example(spans, "symmetry_matrices")
    n, d = c.shape
    pred = pair_matrix(pred_rel, n, d, "symmetry_matrices")[..., :d].to(c.device, c.dtype)
    if isinstance(order, Tensor):
        perm = order.to(c.device).long()
        if perm.shape != (n,) or not torch.equal(
            perm.sort().values, torch.arange(n, device=c.device)
        ):
            raise ValueError(f"order must be a permutation of range({n})")
    elif order == "position":
        perm = _position_order(c, s)
    elif order == "index":
        perm = torch.arange(n, device=c.device)
    elif order == "random":
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(c.device)
    else:
        raise ValueError(f"order must be 'position', 'index', 'random' or a tensor; got {order!r}")
    true = true_all_pairs(spans)[0].to(c.dtype)
    sel = perm[:, None], perm[None, :]
    return {
        "axes": axis_names(d),
        "order": perm,
        "pred": rearrange(pred[sel], "i j d -> d i j"),
        "true": rearrange(true[sel], "i j d -> d i j"),
        "centre": c[perm],
    }


def _symmetric_parts(pred_rel: Tensor, spans: Spans, who: str) -> tuple[Tensor, Tensor, Tensor]:
    """``a[i, j] = pred[i, j, :D]``, ``b[i, j] = pred[j, i, :D] * s_j / s_i`` (both
    ``(B, N, N, D)``) and the ``(N, N)`` off-diagonal mask."""
    pred, _, s, _ = batched_pairs(pred_rel, spans, who)
    d, n = spans.ndim, spans.num
    a = pred[..., :d]
    ratio = s[:, None, :, :] / s[:, :, None, :]  # [b, i, j] = s_j / s_i
    b = a.transpose(1, 2) * ratio
    off = ~torch.eye(n, dtype=torch.bool, device=pred.device)
    return a, b, off


@torch.no_grad()
def negative_symmetry_score(
    pred_rel: Tensor, spans: Spans, *, reduction: Literal["pooled", "mean"] = "pooled"
) -> float:
    """How well predictions obey the negative symmetry of relative positions.

    For references ``i != j`` let ``a_ij = pred[i, j, :D]`` (target ``j`` in the frame of
    ``i``) and ``b_ij = pred[j, i, :D] * s_j / s_i`` (the reverse prediction, moved to the
    frame of ``i``, per axis). Exact positions satisfy ``a_ij = -b_ij``, since
    ``(c_j - c_i) / s_i = -((c_i - c_j) / s_j) * s_j / s_i``. The score is

        ``1 - sum ||a_ij + b_ij||^2 / sum (||a_ij||^2 + ||b_ij||^2)``

    with the sums over all ordered pairs ``i != j`` (and examples) (``reduction="pooled"``,
    the default: pairs weigh by their magnitude, so near-coincident spans with tiny
    translations cannot dominate), or the per-pair ratio averaged over pairs with a non-zero
    denominator (``reduction="mean"``).

    1.0 is perfect negative symmetry; predictions whose forward and reverse parts are
    independent with zero mean (e.g. random) score ~0; ``a = b`` (positive symmetry) scores
    -1, the minimum. Uses the true span sizes (known inputs) for the change of frame and only
    the translation components.

    Args:
        pred_rel: ``(N, N, T)`` (one-example spans) or ``(B, N, N, T)``.
        spans: ``(B, N, D)``.
    """
    a, b, off = _symmetric_parts(pred_rel, spans, "negative_symmetry_score")
    num = ((a + b) ** 2).sum(-1)[:, off]
    den = (a**2 + b**2).sum(-1)[:, off]
    if reduction == "pooled":
        total = den.sum()
        return float(1 - num.sum() / total) if total > 0 else 1.0
    if reduction == "mean":
        ok = den > 0
        return float(1 - (num[ok] / den[ok]).mean()) if bool(ok.any()) else 1.0
    raise ValueError(f"reduction must be 'pooled' or 'mean'; got {reduction!r}")


@torch.no_grad()
def symmetry_error(pred_rel: Tensor, spans: Spans) -> float:
    """Mean absolute deviation from negative symmetry, ``|a_ij + b_ij|`` (see
    :func:`negative_symmetry_score`), over ordered pairs ``i != j`` and axes, in units of the
    reference size ``s_i``. 0 is perfect."""
    a, b, off = _symmetric_parts(pred_rel, spans, "symmetry_error")
    return float((a + b).abs()[:, off].mean())
