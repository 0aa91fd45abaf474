"""Off-grid reconstruction (paper section 5.1): place every span relative to one reference at
its predicted position and paste the tokens onto a canvas.

:func:`paste_tokens` pastes tokens at spans for D = 1..3 axes; :func:`reconstruct` places the
spans from all-pairs predictions (:mod:`relpos.analysis.pairs`) and reports the placement
errors in a :class:`ReconstructionResult`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from relpos.analysis.pairs import (
    RelativePredictor,
    one_example,
    pair_matrix,
    predict_all_pairs,
    size_ratios,
)
from relpos.core.spans import Scale, Spans

__all__ = ["ReconstructionResult", "paste_tokens", "reconstruct"]


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
    c, s = one_example(spans, "reconstruct")
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
    pred = pair_matrix(pred_rel, n, d, "reconstruct").to(c.device, c.dtype)
    ratio = size_ratios(pred, d, scale)
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
