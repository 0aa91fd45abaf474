"""Random draws from a ``torch.Generator`` that may live on another device than the data.

A ``torch.Generator`` can only fill tensors on its own device. Samplers, pair draws and
augmentations therefore draw on the generator's device and move the result to the data's
device, so that a CPU generator gives the same stream whether the model runs on a CPU or a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["draw"]


def draw(
    fn: Callable[..., Tensor],
    *args: Any,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> Tensor:
    """``fn(*args, generator=generator, device=<generator's device>, **kwargs)`` moved to
    ``device``.

    ``fn`` is a torch factory that takes ``generator`` and ``device`` (``torch.rand``,
    ``torch.randint``, ``torch.randn``, ...); e.g. ``draw(torch.rand, (B, N), generator=g,
    device=x.device)``. Without a generator the draw happens directly on ``device``.
    """
    where = generator.device if generator is not None else device
    out = fn(*args, generator=generator, device=where, **kwargs)
    return out if device is None else out.to(device)
