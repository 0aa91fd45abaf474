"""PART's capabilities (paper section 5.1) as functions returning tensors.

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

Functions:

- :func:`predict_all_pairs` / :func:`true_all_pairs`: ``(B, N, N, T)`` matrices for every
  ordered pair (diagonal included).
- **off-grid reconstruction**: :func:`reconstruct` places every token relative to one reference
  span and pastes the tokens onto a canvas (:func:`paste_tokens`).
- **patch uncertainty**: :func:`patch_uncertainty` / :func:`uncertainty_all`: the spread of a
  target's absolute position as predicted from every other reference.
- **symmetry**: :func:`symmetry_matrices`, :func:`negative_symmetry_score`,
  :func:`symmetry_error`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from relpos.core.spans import Scale, Spans, axis_names, relative_targets

log = logging.getLogger(__name__)

__all__ = [
    "ReconstructionResult",
    "RelativePredictor",
    "UncertaintyResult",
    "all_pairs",
    "negative_symmetry_score",
    "paste_tokens",
    "patch_uncertainty",
    "placements",
    "predict_all_pairs",
    "reconstruct",
    "symmetry_error",
    "symmetry_matrices",
    "true_all_pairs",
    "uncertainty_all",
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
        ``(B, N, N, T)`` on the model's output device.
    """
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
        chunks = [model.predict(tokens, spans, p) for p in pairs.split(max_pairs, dim=1)]
    finally:
        if module is not None and eval_mode:
            module.train(was_training)
    return rearrange(torch.cat(chunks, dim=1), "b (i j) t -> b i j t", i=n)


def true_all_pairs(spans: Spans, scale: Scale = None) -> Tensor:
    """Ground-truth relative positions for every ordered pair: ``(B, N, N, T)`` (diagonal 0)."""
    pairs = all_pairs(spans.num, spans.batch, spans.device)
    return rearrange(relative_targets(spans, pairs, scale), "b (i j) t -> b i j t", i=spans.num)


# ---------------------------------------------------------------------------- helpers
def _single(spans: Spans, who: str) -> tuple[Tensor, Tensor]:
    """Centres and sizes ``(N, D)`` of a one-example Spans."""
    if spans.batch != 1:
        raise ValueError(f"{who}: spans must hold one example (B=1); got B={spans.batch}")
    return spans.centre[0], spans.size[0]


def _pred_matrix(pred_rel: Tensor, n: int, d: int, who: str) -> Tensor:
    """``(N, N, T)`` from ``(N, N, T)`` or ``(1, N, N, T)``."""
    if pred_rel.ndim == 4 and pred_rel.shape[0] == 1:
        pred_rel = pred_rel[0]
    if pred_rel.ndim != 3 or pred_rel.shape[:2] != (n, n) or pred_rel.shape[2] < d:
        raise ValueError(
            f"{who}: pred_rel must be (N, N, T) with N={n} and T >= D={d}; "
            f"got {tuple(pred_rel.shape)}"
        )
    return pred_rel


def _batched(pred_rel: Tensor, spans: Spans, who: str) -> tuple[Tensor, Tensor, Tensor, bool]:
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


def _size_terms(pred: Tensor, d: int, scale: Scale) -> Tensor | None:
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
    pred, c, s, single = _batched(pred_rel, spans, "placements")
    d = spans.ndim
    out = c[:, :, None, :] + pred[..., :d] * s[:, :, None, :]
    return out[0] if single else out


# ---------------------------------------------------------------------------- pasting
def paste_tokens(
    tokens: Tensor,
    spans: Spans,
    extent: Sequence[int],
    *,
    mode: Literal["bilinear", "nearest"] = "bilinear",
) -> tuple[Tensor, Tensor]:
    """Paste (resize back) every token at its span on a canvas; overlaps are averaged.

    Vectorised over examples and spans: one ``F.grid_sample`` call samples every token at the
    canvas positions its span covers (a canvas sample ``p`` covers ``[p, p + 1)``; it belongs
    to a span when its centre ``p + 0.5`` lies in ``[start, start + size)``). Tokens are
    sampled at the fractional token coordinate of each canvas sample (``border`` padding),
    so an integer span of exactly the token shape pastes a bit-for-bit copy of its token (up
    to float rounding). Parts of spans outside ``[0, extent)`` are clipped.

    Memory: ``B * N * C * prod(extent)`` values.

    Args:
        tokens: ``(B, N, C, *token_shape)`` with ``D = len(token_shape)`` in 1..3.
        spans: ``(B, N, D)`` where to paste them.
        extent: canvas size ``(*extent)``, D entries.
        mode: ``grid_sample`` interpolation.

    Returns:
        ``canvas (B, C, *extent)`` (0 where nothing is pasted) and ``coverage (B, *extent)``:
        how many spans cover each canvas sample.
    """
    if tokens.ndim < 4:
        raise ValueError(f"tokens must be (B, N, C, *token_shape); got {tuple(tokens.shape)}")
    b, n, c = tokens.shape[:3]
    ts = tuple(tokens.shape[3:])
    d = len(ts)
    ext = tuple(int(e) for e in extent)
    if spans.ndim != d or len(ext) != d:
        raise ValueError(f"tokens have D={d} axes but spans have D={spans.ndim} and extent {ext}")
    if spans.batch != b or spans.num != n:
        raise ValueError(
            f"spans (B={spans.batch}, N={spans.num}) do not match tokens (B={b}, N={n})"
        )
    if not 1 <= d <= 3:
        raise ValueError(f"paste_tokens supports D = 1, 2 or 3 axes; got D={d}")
    dtype = tokens.dtype if tokens.dtype in (torch.float32, torch.float64) else torch.float32
    dev = tokens.device
    start = spans.start.to(dev, dtype).reshape(b * n, d)
    size = spans.size.to(dev, dtype).reshape(b * n, d)
    norms, masks = [], []
    for a in range(d):  # D <= 3 axes
        p = torch.arange(ext[a], device=dev, dtype=dtype) + 0.5
        rel = (p - start[:, a, None]) / size[:, a, None]  # (BN, E_a): fraction across the span
        shape = [b * n] + [1] * d
        shape[1 + a] = ext[a]
        norms.append((2 * rel - 1).view(shape).expand(b * n, *ext))
        masks.append(((rel >= 0) & (rel < 1)).view(shape))
    mask = masks[0]
    for m in masks[1:]:
        mask = mask & m  # (BN, *extent)
    inp = tokens.reshape(b * n, c, *ts).to(dtype)
    if d == 1:
        inp = inp.unsqueeze(2)  # (BN, C, 1, T)
        grid = torch.stack([norms[0], torch.zeros_like(norms[0])], dim=-1).unsqueeze(1)
    else:
        grid = torch.stack(norms[::-1], dim=-1)  # grid_sample wants (x, y[, z]) order
    sampled = F.grid_sample(inp, grid, mode=mode, padding_mode="border", align_corners=False)
    if d == 1:
        sampled = sampled.squeeze(2)
    weight = mask.to(dtype)
    total = (sampled * weight.unsqueeze(1)).reshape(b, n, c, *ext).sum(1)
    coverage = weight.reshape(b, n, *ext).sum(1)
    canvas = total / coverage.clamp_min(1).unsqueeze(1)
    return canvas, coverage


# ---------------------------------------------------------------------------- reconstruction
@dataclass
class ReconstructionResult:
    """Off-grid reconstruction of one example around a reference span.

    Attributes:
        reference: index of the reference span (placed at its true position).
        extent: canvas extent ``(*extent)``.
        true_spans, pred_spans: ``(1, N, D)`` true and predicted placements.
        canvas: ``(C, *extent)`` tokens pasted at the predicted spans (average of overlaps,
            0 where uncovered); ``coverage``: ``(*extent)`` number of spans covering each sample.
        true_canvas, true_coverage: the same at the true spans (the ground truth).
        errors: ``(N,)`` Euclidean distance between predicted and true centres, in units of
            the reference size (per-axis ``/ s_ref``; 0 for the reference itself).
        errors_samples: ``(N,)`` the same in input samples.
        placement_error: mean of ``errors`` over the ``N - 1`` non-reference spans.
        placement_error_samples: mean of ``errors_samples`` over them.
        size_error: mean ``|log(s_pred / s_true)|`` over non-reference spans and axes (0 when
            the true sizes are used).
        image: the original input ``(C, *extent)`` when given, for plotting.
    """

    reference: int
    extent: tuple[int, ...]
    true_spans: Spans
    pred_spans: Spans
    canvas: Tensor
    coverage: Tensor
    true_canvas: Tensor
    true_coverage: Tensor
    errors: Tensor
    errors_samples: Tensor
    placement_error: float
    placement_error_samples: float
    size_error: float
    image: Tensor | None = None

    @property
    def ndim(self) -> int:
        return len(self.extent)


@torch.no_grad()
def reconstruct(
    tokens: Tensor,
    spans: Spans,
    pred_rel: Tensor | RelativePredictor,
    reference: int = 0,
    extent: Sequence[int] | None = None,
    *,
    scale: Scale = None,
    predicted_size: bool = True,
    image: Tensor | None = None,
    mode: Literal["bilinear", "nearest"] = "bilinear",
) -> ReconstructionResult:
    """Place every span relative to one reference and paste the tokens there.

    Predicted centres: ``c_j = c_ref + pred[ref, j, :D] * s_ref``; sizes: the true ones, or,
    when the predictions carry size terms and ``predicted_size``, ``s_j = r_j * s_ref`` with
    ``r_j`` the predicted ratio (``exp`` of it for ``scale="log"``). The reference itself stays
    at its true span (it anchors the frame).

    Args:
        tokens: ``(N, C, *token_shape)`` (or ``(1, N, C, ...)``) of one example.
        spans: its spans, ``(1, N, D)``.
        pred_rel: ``(N, N, T)`` all-pairs predictions (:func:`predict_all_pairs`), or a model
            with ``predict`` (then computed here, and ``scale`` defaults to ``model.scale``).
        reference: index of the reference span.
        extent: canvas extent (default: the smallest one holding every true span).
        scale: how size terms in ``pred_rel`` are encoded (``"ratio"`` / ``"log"``) when
            ``T == 2D``.
        predicted_size: use the predicted sizes when available.
        image: the original input ``(C, *extent)``, kept for plotting.
        mode: interpolation used when pasting.

    Returns:
        :class:`ReconstructionResult`.
    """
    if tokens.ndim >= 4 and tokens.shape[0] == 1 and tokens.shape[1] == spans.num:
        tokens = tokens[0]
    c, s = _single(spans, "reconstruct")
    n, d = c.shape
    if tokens.shape[0] != n or tokens.ndim != 2 + d:
        raise ValueError(
            f"reconstruct: tokens must be (N, C, *token_shape) with N={n} and {d} token axes; "
            f"got {tuple(tokens.shape)}"
        )
    if not 0 <= reference < n:
        raise ValueError(f"reconstruct: reference must lie in [0, {n}); got {reference}")
    if not isinstance(pred_rel, Tensor):
        if scale is None:
            scale = getattr(pred_rel, "scale", None)
        pred_rel = predict_all_pairs(pred_rel, tokens[None], spans.to(tokens.device))[0]
    pred = _pred_matrix(pred_rel, n, d, "reconstruct").to(c.device, c.dtype)
    ratio = _size_terms(pred, d, scale)
    if extent is None:
        extent = tuple(math.ceil(v) for v in (c + s / 2).amax(0).tolist())
    extent = tuple(int(e) for e in extent)
    if len(extent) != d:
        raise ValueError(f"reconstruct: extent must have D={d} entries; got {extent}")

    row = pred[reference]  # (N, T): every span as target of the reference
    c_pred = c[reference] + row[:, :d] * s[reference]
    s_pred = s.clone()
    if ratio is not None and predicted_size:
        s_pred = (ratio[reference] * s[reference]).clamp_min(1e-3)
    c_pred[reference] = c[reference]
    s_pred[reference] = s[reference]

    pred_spans = Spans(c_pred[None], s_pred[None])
    tok = tokens[None]
    canvas, coverage = paste_tokens(tok, pred_spans, extent, mode=mode)
    true_canvas, true_coverage = paste_tokens(tok, spans.to(tokens.device), extent, mode=mode)

    diff = c_pred - c
    errors = (diff / s[reference]).norm(dim=-1)
    errors_samples = diff.norm(dim=-1)
    others = torch.arange(n, device=c.device) != reference
    size_error = (s_pred / s).log().abs()[others].mean()
    return ReconstructionResult(
        reference=int(reference),
        extent=extent,
        true_spans=spans,
        pred_spans=pred_spans,
        canvas=canvas[0],
        coverage=coverage[0],
        true_canvas=true_canvas[0],
        true_coverage=true_coverage[0],
        errors=errors,
        errors_samples=errors_samples,
        placement_error=float(errors[others].mean()),
        placement_error_samples=float(errors_samples[others].mean()),
        size_error=float(size_error),
        image=image,
    )


# ---------------------------------------------------------------------------- uncertainty
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
    c, s = _single(spans, "patch_uncertainty")
    n, d = c.shape
    if n < 2:
        raise ValueError("patch_uncertainty needs at least two spans")
    if not 0 <= target < n:
        raise ValueError(f"patch_uncertainty: target must lie in [0, {n}); got {target}")
    pred = _pred_matrix(pred_rel, n, d, "patch_uncertainty").to(c.device, c.dtype)
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
    pred, c, s, single = _batched(pred_rel, spans, "uncertainty_all")
    n, d = spans.num, spans.ndim
    pts = c[:, :, None, :] + pred[..., :d] * s[:, :, None, :]  # (B, N_ref, N_tgt, D)
    w = (1 - torch.eye(n, device=pred.device, dtype=pred.dtype))[None, :, :, None]
    mean = (pts * w).sum(1) / (n - 1)  # (B, N_tgt, D)
    var = (((pts - mean[:, None]) ** 2) * w).sum(1) / (n - 1)  # (B, N_tgt, D)
    if relative:
        var = var / s**2
    out = var.sum(-1)
    return out[0] if single else out


# ---------------------------------------------------------------------------- symmetry
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
    c, s = _single(spans, "symmetry_matrices")
    n, d = c.shape
    pred = _pred_matrix(pred_rel, n, d, "symmetry_matrices")[..., :d].to(c.device, c.dtype)
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
    pred, _, s, _ = _batched(pred_rel, spans, who)
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
