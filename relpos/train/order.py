"""Deterministic, resumable, shardable example order for the training loop.

Each epoch's order is a pure function of ``(seed, epoch)``, so a resumed run replays exactly
the batches an uninterrupted run would have seen. With ``groups`` (e.g. the record each EEG
epoch comes from), examples are shuffled as contiguous chunks of one group. Under DDP, when
there are at least two groups per rank, whole groups are assigned to ranks (greedily balanced
by size), so each rank reads its own records in contiguous chunks; with fewer groups the
contiguous chunks themselves are dealt out round-robin, so no rank is starved. Every rank
takes the same number of examples per epoch (the shortest share), keeping ranks in lock-step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Per-epoch permutation of ``n`` examples for one rank, resumable from any position.

    Args:
        n: dataset size.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        shuffle: permute (else keep order).
        rank, world_size: this rank's share (all ranks get the same length).
        groups: optional ``(n,)`` group id per example (record); enables chunked shuffling and
            per-record sharding (whole records per rank when there are at least two per rank,
            else the contiguous chunks are dealt out).
        chunk: examples per contiguous chunk when ``groups`` is given.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        groups: np.ndarray | None = None,
        chunk: int = 32,
    ) -> None:
        if groups is not None and len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} examples")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.groups = None if groups is None else np.asarray(groups)
        self.chunk = max(1, chunk)
        self.epoch = 0
        self.start = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` examples (resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def _rank_orders(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        if self.groups is None:
            order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            return [order[r :: self.world_size] for r in range(self.world_size)]
        ids, inverse = np.unique(self.groups, return_inverse=True)
        members = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(ids)))])
        gorder = rng.permutation(len(ids)) if self.shuffle else np.arange(len(ids))
        # contiguous chunks of each group (record), groups in shuffled order
        per_group = [
            np.array_split(idx, max(1, -(-len(idx) // self.chunk)))
            for idx in (members[bounds[g] : bounds[g + 1]] for g in gorder)
        ]
        shares: list[list[np.ndarray]] = [[] for _ in range(self.world_size)]
        if len(ids) >= 2 * self.world_size:
            # whole records per rank, greedily balanced: each rank reads its own files
            loads = np.zeros(self.world_size, dtype=np.int64)
            for chunks in per_group:
                r = int(np.argmin(loads))
                shares[r].extend(chunks)
                loads[r] += sum(len(c) for c in chunks)
        else:
            # too few records to share out whole: deal out contiguous chunks, small enough
            # that every rank gets several
            size = max(1, min(self.chunk, self.n // (4 * self.world_size)))
            flat = [
                c
                for chunks in per_group
                for c in np.array_split(
                    np.concatenate(chunks), max(1, -(-sum(map(len, chunks)) // size))
                )
            ]
            if self.shuffle:
                flat = [flat[i] for i in rng.permutation(len(flat))]
            for i, c in enumerate(flat):
                shares[i % self.world_size].append(c)
        out = []
        for chunks in shares:
            if self.shuffle and chunks:
                chunks = [chunks[i] for i in rng.permutation(len(chunks))]
            out.append(np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64))
        return out

    def _order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            orders = self._rank_orders(epoch)
            length = min(len(o) for o in orders)  # lock-step ranks
            self._cache = (epoch, orders[self.rank][:length])
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        order = self._order(self.epoch)
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return max(0, self.epoch_length() - self.start)

    def epoch_length(self, epoch: int | None = None) -> int:
        """Examples in an epoch for this rank (before any resume offset)."""
        return len(self._order(self.epoch if epoch is None else epoch))
