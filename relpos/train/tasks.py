"""What one training step computes: the PART pretext or supervised classification.

A task turns a batch into ``(loss, metrics)``; the loop (``relpos.train.loop``) is the same for
both. Tokens are cut here, on the training device, with ``relpos.core.extract.tokenize`` and
the modality's tokenizer (``modality.tokenizer`` in the config), so data loading only moves raw
inputs, and pretraining, finetuning and prediction cut tokens the same way.
``Task.prepare(model)`` is the task's say over the model before training (the finetuning task
freezes the encoder for a linear probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relpos.core.extract import tokenize
from relpos.core.samplers import SpanSampler
from relpos.train.checkpoint import encoder_of
from relpos.train.config import TrainConfig

__all__ = ["FinetuneTask", "PretrainTask", "Task", "make_task", "split_batch"]

Augment = Callable[[Tensor, torch.Generator], Tensor]


def split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """``x`` or ``(x, y, ...)`` -> ``(x, y or None)``."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, dict):
        return batch["x"], batch.get("y")
    x = batch[0]
    y = batch[1] if len(batch) > 1 else None
    return x, y


class Task:
    """Base: ``task(model, batch, generator) -> (loss, metrics)``."""

    def __init__(self, cfg: TrainConfig, augment: Augment | None = None) -> None:
        self.cfg = cfg
        self.token_shape = tuple(cfg.modality.token_shape)
        self.modality = cfg.modality_object()
        self.tokenizer = self.modality.effective_tokenizer
        self.augment = augment

    def inputs(
        self, batch: Any, device: torch.device, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        x, y = split_batch(batch)
        x = x.to(device, non_blocking=True)
        if not x.is_floating_point():
            x = x.float()
        x = self.modality.prepare(x)  # the modality's on-the-fly transform (e.g. a spectrogram)
        if self.augment is not None:
            x = self.augment(x, generator)
        return x, (None if y is None else y.to(device, non_blocking=True))

    def prepare(self, model: nn.Module) -> None:
        """Called by the loop once ``model`` is on its device, before the optimiser is built."""

    def __call__(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class PretrainTask(Task):
    """PART: off-grid spans -> tokens -> encoder + relative head -> MSE."""

    def __init__(
        self, cfg: TrainConfig, sampler: SpanSampler | None = None, augment: Augment | None = None
    ) -> None:
        super().__init__(cfg, augment)
        self.sampler = sampler or cfg.pretext_sampler()

    def __call__(self, model, batch, generator):
        x, _ = self.inputs(batch, self._device(model), generator)
        tokens, spans = tokenize(x, self.sampler, self.tokenizer, generator=generator)
        out = model(tokens, spans, generator=generator)
        return out.loss, out.errors

    @staticmethod
    def _device(model: nn.Module) -> torch.device:
        return next(model.parameters()).device


class FinetuneTask(Task):
    """Supervised: on-grid tokens -> encoder with positions -> [CLS] -> cross-entropy.

    Examples labelled ``-1`` (unlabelled) are ignored by the loss.
    """

    def __init__(
        self, cfg: TrainConfig, class_weights: Tensor | None = None, augment: Augment | None = None
    ) -> None:
        super().__init__(cfg, augment)
        self.grid = cfg.grid_sampler()
        self.class_weights = class_weights

    def prepare(self, model: nn.Module) -> None:
        """With ``finetune.linear_probe``, train only the classifier (``head.*``)."""
        if self.cfg.finetune.linear_probe:
            for name, p in encoder_of(model).named_parameters():
                p.requires_grad = name.startswith("head.")

    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """``x (B, C, *extent)`` -> on-grid tokens -> class logits ``(B, K)``."""
        tokens, spans = tokenize(x, self.grid, self.tokenizer)
        return model(tokens, spans)

    def __call__(self, model, batch, generator):
        device = next(model.parameters()).device
        x, y = self.inputs(batch, device, generator)
        if y is None:
            raise ValueError("finetuning needs labelled batches (x, y)")
        logits = self.logits(model, x)
        weight = None if self.class_weights is None else self.class_weights.to(device)
        loss = F.cross_entropy(
            logits.float(),
            y.long(),
            weight=weight,
            ignore_index=-1,
            label_smoothing=self.cfg.finetune.label_smoothing,
        )
        with torch.no_grad():
            mask = y >= 0
            acc = (
                (logits.argmax(-1)[mask] == y[mask]).float().mean()
                if mask.any()
                else torch.tensor(float("nan"))
            )
        return loss, {"acc": acc}


def make_task(cfg: TrainConfig, **kwargs: Any) -> Task:
    return PretrainTask(cfg, **kwargs) if cfg.task == "pretrain" else FinetuneTask(cfg, **kwargs)
