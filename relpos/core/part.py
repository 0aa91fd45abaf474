"""The PART objective: encode off-grid tokens without positions, predict relative positions of
random (reference, target) pairs, regress them with MSE.

Options (all off by default, which is the paper's objective):

- position dropping: when the encoder has position encodings (``pos_embed_type != "none"``)
  and ``pos_drop > 0``, PART draws the ``(B, N)`` keep mask itself with its generator, in
  training and in eval, and hands it to the encoder (DropPos-style);
- ``score``: average the loss over all pairs, or only over the pairs whose target
  (``"dropped_target"``) or either member (``"dropped_either"``) lost its position;
- ``loss``: ``"mse"``, or ``"gaussian_nll"`` with a predicted log-variance per component (the
  head then outputs ``2 T`` values: means, then log-variances);
- ``normalize``: divide each component's squared error by the batch's error of the neutral
  prediction for that component, so that every component weighs the same whatever its units
  (a translation in window units can have a variance in the hundreds, a log size ratio below
  one) and predicting nothing costs 1 per component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

import torch
from torch import Tensor, nn

from relpos.core.checks import positive_int
from relpos.core.extract import tokenize
from relpos.core.random import draw
from relpos.core.samplers import SpanSampler
from relpos.core.spans import Scale, Spans, relative_targets, sample_pairs, target_names
from relpos.core.tokenizer import Tokenizer

__all__ = [
    "PART",
    "LossKind",
    "PARTOutput",
    "Score",
    "head_out_dim",
    "pair_mask",
    "pretext_errors",
]

Score = Literal["all", "dropped_target", "dropped_either"]
LossKind = Literal["mse", "gaussian_nll"]
#: log-variances of the Gaussian NLL are clamped to this range
LOGVAR_RANGE = (-10.0, 10.0)


class Encoder(Protocol):
    """What PART needs of an encoder: ``forward_features(tokens (B, N, ...), spans)`` returning
    ``(B, P + N, d)``, where P is the encoder's ``num_prefix_tokens`` (0 when absent). It gets
    ``pos_keep (B, N)`` bool only when PART drops positions."""

    def forward_features(
        self, tokens: Tensor, spans: Spans | None = None, pos_keep: Tensor | None = None
    ) -> Tensor: ...


@dataclass
class PARTOutput:
    """Result of a PART forward pass.

    Attributes:
        loss: scalar loss averaged over the scored pairs and components: the MSE
            ``1 / (T M) * sum (theta - theta_hat)^2`` averaged over the batch (default), or the
            Gaussian NLL ``exp(-logvar) (theta - theta_hat)^2 + logvar``.
        pred, target: ``(B, M, T)`` predicted (means) and true relative positions.
        pairs: ``(B, M, 2)`` (reference, target) indices.
        errors: detached scalars (see :func:`pretext_errors`): per-component MSE over all pairs
            (``"t"``, ``"y"``, ``"x"``, ``"s_y"``, ...), ``"euclidean"``, ``"baseline"``, the
            per-component MSE of the neutral prediction ``"zero_<name>"``; with position
            dropping also ``"<name>@dropped"``, ``"zero_<name>@dropped"`` and ``"scored_frac"``;
            with the Gaussian NLL also ``"nll"`` (over all pairs).
        logvar: ``(B, M, T)`` predicted log-variances (``loss="gaussian_nll"``), else None.
        pos_keep: ``(B, N)`` bool, the tokens that kept their position encoding (None when PART
            dropped none).
        scored: ``(B, M)`` bool, the pairs the loss averages over.
    """

    loss: Tensor
    pred: Tensor
    target: Tensor
    pairs: Tensor
    errors: dict[str, Tensor] = field(default_factory=dict)
    logvar: Tensor | None = None
    pos_keep: Tensor | None = None
    scored: Tensor | None = None


def head_out_dim(ndim: int, scale: Scale = None, loss: LossKind = "mse") -> int:
    """Values per pair a PART head outputs for ``ndim``-D spans: D translations, D more size
    terms with ``scale``, all doubled (means, then log-variances) with ``"gaussian_nll"``."""
    return ndim * (2 if scale else 1) * (2 if loss == "gaussian_nll" else 1)


def _neutral(target: Tensor, ndim: int, scale: Scale) -> Tensor:
    """The constant no-information prediction for each target component."""
    neutral = torch.zeros_like(target)
    if scale == "ratio":
        neutral[..., ndim:] = 1.0
    return neutral


def pair_mask(pos_keep: Tensor, pairs: Tensor, score: Score) -> Tensor:
    """Which pairs ``(B, M)`` a score selects, from ``pos_keep (B, N)`` and ``pairs (B, M, 2)``.

    ``"all"``: every pair; ``"dropped_target"``: the target lost its position;
    ``"dropped_either"``: the reference or the target did.
    """
    dropped = ~pos_keep.to(pairs.device, torch.bool)
    ref, tgt = dropped.gather(1, pairs[..., 0]), dropped.gather(1, pairs[..., 1])
    if score == "all":
        return torch.ones_like(tgt)
    if score == "dropped_target":
        return tgt
    if score == "dropped_either":
        return ref | tgt
    raise ValueError(f"score must be 'all', 'dropped_target' or 'dropped_either'; got {score!r}")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values (B, M, ...)`` over the pairs where ``mask (B, M)``; 0 when none is."""
    w = mask.to(values.dtype).reshape(*mask.shape, *(1,) * (values.ndim - mask.ndim))
    count = w.sum() * (values[0, 0].numel() if values.ndim > mask.ndim else 1)
    return (values * w).sum() / count.clamp_min(1.0)


@torch.no_grad()
def pretext_errors(
    pred: Tensor,
    target: Tensor,
    ndim: int,
    scale: Scale = None,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-component MSE, Euclidean error of the translation part, and the constant baseline.

    Over all pairs: ``<name>`` (MSE of component ``name``), ``"euclidean"`` (and
    ``"zero_euclidean"``, the neutral prediction's), ``"baseline"``
    (the neutral prediction's MSE over all components) and ``"zero_<name>"`` (the neutral
    prediction's MSE per component: 0 for translations and log-scales, 1 for ratios), so
    ``errors[name] / errors["zero_" + name]`` is the error relative to predicting nothing.
    With ``mask (B, M)`` bool also ``"<name>@dropped"``, ``"zero_<name>@dropped"`` over the
    masked pairs (0 when none is masked) and ``"scored_frac"``, the masked fraction.
    """
    names = target_names(ndim, scale)
    sq = (pred.float() - target.float()) ** 2
    zero = (_neutral(target, ndim, scale).float() - target.float()) ** 2
    errors = {n: sq[..., i].mean() for i, n in enumerate(names)}
    errors["euclidean"] = sq[..., :ndim].sum(-1).sqrt().mean()
    errors["zero_euclidean"] = zero[..., :ndim].sum(-1).sqrt().mean()
    errors["baseline"] = zero.mean()
    errors.update({f"zero_{n}": zero[..., i].mean() for i, n in enumerate(names)})
    if mask is not None:
        for i, n in enumerate(names):
            errors[f"{n}@dropped"] = _masked_mean(sq[..., i], mask)
            errors[f"zero_{n}@dropped"] = _masked_mean(zero[..., i], mask)
        errors["scored_frac"] = mask.float().mean()
    return errors


class PART(nn.Module):
    """PAirwise Relative Translations.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` (or any module with ``forward_features(tokens,
            spans)`` returning ``(B, P + N, d)`` and a ``num_prefix_tokens`` attribute).
        head: a relative head ``(features (B, N, d), pairs (B, M, 2)) -> (B, M, T)``, or
            ``(B, M, 2 T)`` (means, then log-variances) with ``loss="gaussian_nll"``.
        num_pairs: M, pairs drawn per example.
        scale: ``None`` (translations), ``"ratio"`` or ``"log"`` (plus size terms).
        self_pairs: allow a token to be paired with itself.
        score: the pairs the loss averages over: ``"all"``, ``"dropped_target"`` (the target
            lost its position) or ``"dropped_either"``; the last two need position dropping
            (an encoder with ``pos_embed_type != "none"`` and ``pos_drop > 0``, or ``pos_keep``
            given to ``forward``).
        loss: ``"mse"`` or ``"gaussian_nll"`` (``mean(exp(-logvar) (pred - target)^2 +
            logvar)``, log-variances clamped to ``LOGVAR_RANGE``; equals the MSE at
            ``logvar = 0``).
        normalize: weigh every target component equally: its squared error is divided by the
            batch mean (over the scored pairs) of the neutral prediction's squared error for
            that component (detached). Off by default (the paper's plain MSE).
        ndim: D of the spans, when known: the head's ``out_dim`` (when it has one) is checked
            against :meth:`out_dim` now; ``forward`` checks the head's output width always.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        num_pairs: int,
        scale: Scale = None,
        self_pairs: bool = False,
        score: Score = "all",
        loss: LossKind = "mse",
        normalize: bool = False,
        ndim: int | None = None,
    ) -> None:
        super().__init__()
        if scale not in (None, "ratio", "log"):
            raise ValueError(f"scale must be None, 'ratio' or 'log'; got {scale!r}")
        if num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1; got {num_pairs}")
        if score not in ("all", "dropped_target", "dropped_either"):
            raise ValueError(
                f"score must be 'all', 'dropped_target' or 'dropped_either'; got {score!r}"
            )
        if loss not in ("mse", "gaussian_nll"):
            raise ValueError(f"loss must be 'mse' or 'gaussian_nll'; got {loss!r}")
        self.encoder = encoder
        self.head = head
        self.num_pairs = positive_int(num_pairs, "PART: num_pairs")
        self.scale = scale
        self.self_pairs = self_pairs
        self.score: Score = score
        self.loss: LossKind = loss
        self.normalize = bool(normalize)
        head_out = getattr(head, "out_dim", None)
        if ndim is not None and isinstance(head_out, int):
            self._check_out_dim(head_out, ndim)

    def _check_out_dim(self, got: int, ndim: int) -> None:
        need = head_out_dim(ndim, self.scale, self.loss)
        if got != need:
            raise ValueError(
                f"PART: the head's out_dim is {got} but {ndim}-D spans with scale={self.scale!r} "
                f"and loss={self.loss!r} need out_dim={need}"
            )

    @property
    def drops_positions(self) -> bool:
        """Whether PART draws a position keep mask (encoder positions with ``pos_drop > 0``)."""
        enc = self.encoder
        return getattr(enc, "pos_embed_type", "none") != "none" and getattr(enc, "pos_drop", 0) > 0

    def draw_pos_keep(
        self, batch: int, num: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """A ``(B, N)`` bool keep mask: each token loses its position with ``encoder.pos_drop``."""
        u = draw(torch.rand, (batch, num), generator=generator, device=device)
        return u >= float(getattr(self.encoder, "pos_drop", 0.0))

    def predict_with_logvar(
        self,
        tokens: Tensor,
        spans: Spans | None,
        pairs: Tensor,
        pos_keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Predicted means ``(B, M, T)`` and log-variances ``(B, M, T)`` (None with the MSE).

        ``pos_keep (B, N)`` bool is handed to the encoder when given; without it the encoder
        uses its own rule (no drop in eval mode).
        """
        enc = cast(Encoder, self.encoder)
        if pos_keep is None:
            feats = enc.forward_features(tokens, spans)
        else:
            feats = enc.forward_features(tokens, spans, pos_keep=pos_keep)
        out = self.head(feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :], pairs)
        if self.loss == "mse":
            return out, None
        if out.shape[-1] % 2:
            raise ValueError(
                f"loss='gaussian_nll' needs a head with 2 T outputs; got {out.shape[-1]}"
            )
        mean, logvar = out.chunk(2, dim=-1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def predict(
        self, tokens: Tensor, spans: Spans | None, pairs: Tensor, pos_keep: Tensor | None = None
    ) -> Tensor:
        """Predicted relative positions ``(B, M, T)`` (the means) for given pairs."""
        return self.predict_with_logvar(tokens, spans, pairs, pos_keep)[0]

    def forward(
        self,
        tokens: Tensor,
        spans: Spans,
        *,
        pairs: Tensor | None = None,
        generator: torch.Generator | None = None,
        pos_keep: Tensor | None = None,
    ) -> PARTOutput:
        """Loss and predictions for ``tokens (B, N, ...)`` cut at ``spans (B, N, D)``.

        ``pairs (B, M, 2)`` are drawn (``num_pairs`` per example) unless given; then, when the
        encoder drops positions, the keep mask ``(B, N)`` is drawn with ``generator`` (in train
        and eval mode alike) unless ``pos_keep`` is given.
        """
        b, n = tokens.shape[:2]
        if spans.batch != b or spans.num != n:
            raise ValueError(
                f"spans (B={spans.batch}, N={spans.num}) do not match tokens (B={b}, N={n})"
            )
        if pairs is None:
            pairs = sample_pairs(
                b,
                n,
                self.num_pairs,
                generator=generator,
                device=tokens.device,
                self_pairs=self.self_pairs,
            )
        if pos_keep is None and self.drops_positions:
            pos_keep = self.draw_pos_keep(b, n, tokens.device, generator)
        if pos_keep is None and self.score != "all":
            raise ValueError(
                f"score={self.score!r} needs position dropping: an encoder with position "
                "encodings and pos_drop > 0, or pos_keep"
            )
        target = relative_targets(spans.to(tokens.device), pairs, self.scale)
        pred, logvar = self.predict_with_logvar(tokens, spans, pairs, pos_keep)
        if pred.shape[-1] != target.shape[-1]:  # MSE would broadcast silently
            self._check_out_dim(pred.shape[-1] * (1 if logvar is None else 2), spans.ndim)
        sq = (pred.float() - target.float()) ** 2
        scored = None if pos_keep is None else pair_mask(pos_keep, pairs, self.score)
        weighted = sq / self._component_scale(target, scored) if self.normalize else sq
        per = weighted if logvar is None else torch.exp(-logvar.float()) * weighted + logvar.float()
        loss = per.mean() if self.score == "all" else _masked_mean(per, cast(Tensor, scored))
        dropped = None if pos_keep is None else pair_mask(pos_keep, pairs, self._dropped_score)
        errors = pretext_errors(pred, target, spans.ndim, self.scale, dropped)
        if logvar is not None:
            errors["nll"] = per.detach().mean()
        if scored is None:
            scored = torch.ones(pairs.shape[:2], dtype=torch.bool, device=pairs.device)
        return PARTOutput(loss, pred, target, pairs, errors, logvar, pos_keep, scored)

    def _component_scale(self, target: Tensor, scored: Tensor | None) -> Tensor:
        """``(T,)`` the neutral prediction's mean squared error per component over the scored
        pairs of this batch (detached, at least 1e-6): the divisor of ``normalize``."""
        ndim = target.shape[-1] // 2 if self.scale else target.shape[-1]
        zero = (_neutral(target, ndim, self.scale).float() - target.float()) ** 2
        if scored is not None and self.score != "all":
            w = scored.to(zero.dtype)[..., None]
            mean = (zero * w).sum((0, 1)) / w.sum().clamp_min(1.0)
        else:
            mean = zero.mean((0, 1))
        return mean.detach().clamp_min(1e-6)

    @property
    def _dropped_score(self) -> Score:
        """The pairs the ``@dropped`` errors cover: the scored ones, or dropped targets."""
        return "dropped_target" if self.score == "all" else self.score

    def forward_raw(
        self,
        x: Tensor,
        sampler: SpanSampler,
        token_shape: int | Sequence[int] | Tokenizer,
        *,
        generator: torch.Generator | None = None,
    ) -> PARTOutput:
        """One line from a raw batch: sample spans, extract tokens, run PART.

        ``x`` is ``(B, C, *extent)``; e.g. ``model.forward_raw(images, RandomBoxes(8, 64), (4, 4))``;
        ``token_shape`` may be a :class:`~relpos.core.tokenizer.Tokenizer`.
        """
        tokens, spans = tokenize(x, sampler, token_shape, generator=generator)
        return self(tokens, spans, generator=generator)
