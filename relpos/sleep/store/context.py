"""Multi-epoch context: windows of ``k`` consecutive 30-s epochs of one record.

The window of an anchor epoch with grid number ``e`` (``epoch_index``) holds the epochs
``e - k // 2, ..., e + k - 1 - k // 2`` of the same record, so the anchor sits at position
``k // 2`` (the centre for odd ``k``). A neighbour is missing when the record has no such
epoch: before its start, after its end, or where an epoch was dropped at preparation (a gap
in ``epoch_index``). A window never reaches into another record.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_CONTEXT", "check_context", "context_offsets", "context_table"]

#: the most epochs one context window may hold
MAX_CONTEXT = 101


def check_context(k: int) -> int:
    """``k`` as an int, or a one-line ``ValueError`` when it is not ``1..MAX_CONTEXT``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_CONTEXT:
        raise ValueError(f"context must be a whole number of epochs in 1..{MAX_CONTEXT}, got {k!r}")
    return int(k)


def context_offsets(k: int) -> np.ndarray:
    """(k,) int64 epoch offsets of a window from its anchor: ``-(k // 2) ... k - 1 - k // 2``."""
    return np.arange(check_context(k), dtype=np.int64) - k // 2


def context_table(
    record_index: np.ndarray, epoch_index: np.ndarray, anchors: np.ndarray, k: int
) -> np.ndarray:
    """The window of ``k`` epochs around each anchor, as positions in the given arrays.

    Vectorised: one sort of the ``(record, epoch)`` keys and one ``searchsorted``.

    Args:
        record_index: (N,) record of each epoch.
        epoch_index: (N,) epoch number in its record's 30-s grid; ``(record, epoch)`` pairs are
            unique, in any order.
        anchors: (n,) positions in ``0..N-1`` of the anchor epochs (any order, repeats allowed).
        k: epochs per window.

    Returns:
        (n, k) int64: entry ``[i, j]`` is the position of the epoch of record
        ``record_index[anchors[i]]`` with grid number ``epoch_index[anchors[i]] + j - k // 2``,
        or ``-1`` when there is none. Column ``k // 2`` is ``anchors``; a row without ``-1``
        is a complete window.
    """
    offsets = context_offsets(k)
    rec = np.asarray(record_index, dtype=np.int64).reshape(-1)
    ep = np.asarray(epoch_index, dtype=np.int64).reshape(-1)
    anc = np.asarray(anchors, dtype=np.int64).reshape(-1)
    if rec.shape != ep.shape:
        raise ValueError(f"record_index {rec.shape} and epoch_index {ep.shape} differ in shape")
    if anc.size == 0:
        return np.zeros((0, k), np.int64)
    if ep.min() < 0 or rec.min() < 0:
        raise ValueError("record_index and epoch_index must be >= 0")
    span = int(ep.max()) + 1  # keys record * span + epoch are unique and ordered by record
    keys = rec * span + ep
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    want = ep[anc][:, None] + offsets[None, :]  # (n, k) wanted grid numbers
    valid = (want >= 0) & (want < span)
    wanted_keys = rec[anc][:, None] * span + np.where(valid, want, 0)
    pos = np.minimum(np.searchsorted(sorted_keys, wanted_keys), keys.shape[0] - 1)
    found = valid & (sorted_keys[pos] == wanted_keys)
    return np.where(found, order[pos], -1)
