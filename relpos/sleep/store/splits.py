"""Seeded, disjoint subject-level splits of a store: pretrain / finetune / val / test."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relpos.core.atomic import atomic_write_text
from relpos.sleep.store.layout import read_json

__all__ = ["SPLIT_KEYS", "load_splits", "make_splits", "save_splits", "split_changes"]

SPLIT_KEYS: tuple[str, ...] = ("pretrain", "finetune", "val", "test")


def make_splits(
    subjects: Sequence[str],
    n_finetune: int = 10,
    n_test: int = 200,
    n_val: int = 0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Disjoint, seeded subject-level splits ``pretrain`` / ``finetune`` / ``val`` / ``test``.

    The unique subjects are sorted, permuted with ``numpy.random.default_rng(seed)`` and taken
    in the order test, val, finetune; the rest is ``pretrain``. Each list is sorted.

    Shrink rule (warns): if ``n_test + n_val + n_finetune`` leaves no pretraining subject, the
    held-out total becomes ``max(floor(n / 2), k)`` (k = number of nonzero requests), capped
    at ``n - 1``, shared in proportion to the requests (largest remainder, never above a
    request); each nonzero request gets at least 1 subject in the priority order test,
    finetune, val while the budget lasts. So at least one subject pretrains and, with >= 3
    subjects, test and finetune are non-empty when requested (val may end up empty).

    Raises:
        ValueError: fewer than 3 distinct subjects, or negative sizes.
    """
    subs = sorted(set(map(str, subjects)))
    n = len(subs)
    if n < 3:
        raise ValueError(f"need at least 3 subjects for subject-level splits, got {n}")
    req = {"test": int(n_test), "val": int(n_val), "finetune": int(n_finetune)}
    if min(req.values()) < 0:
        raise ValueError(f"split sizes must be >= 0, got {req}")
    total = sum(req.values())
    sizes = dict(req)
    if total > n - 1:
        nz = [key for key in ("test", "finetune", "val") if req[key] > 0]  # priority order
        budget = min(max(n // 2, len(nz)), n - 1)
        target = {key: budget * req[key] / total for key in nz}
        sizes = dict.fromkeys(req, 0)
        for key in nz[:budget]:
            sizes[key] = min(max(1, math.floor(target[key])), req[key])
        while sum(sizes.values()) < budget:  # largest remainder, capped by the request
            key = max((q for q in nz if 0 < sizes[q] < req[q]), key=lambda q: target[q] - sizes[q])
            sizes[key] += 1
        while sum(sizes.values()) > budget:
            key = max((q for q in reversed(nz) if sizes[q] > 1), key=lambda q: sizes[q])
            sizes[key] -= 1
        warnings.warn(
            f"only {n} subjects for test={req['test']}, val={req['val']}, "
            f"finetune={req['finetune']}: using test={sizes['test']}, val={sizes['val']}, "
            f"finetune={sizes['finetune']}, pretrain={n - sum(sizes.values())}",
            stacklevel=2,
        )
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = [subs[i] for i in perm]
    out: dict[str, list[str]] = {}
    a = 0
    for key in ("test", "val", "finetune"):
        out[key] = sorted(shuffled[a : a + sizes[key]])
        a += sizes[key]
    out["pretrain"] = sorted(shuffled[a:])
    return {k: out[k] for k in SPLIT_KEYS}


def _check_splits(splits: dict[str, list[str]]) -> None:
    missing = [k for k in SPLIT_KEYS if k not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}")
    seen: dict[str, str] = {}
    for k in SPLIT_KEYS:
        for s in splits[k]:
            if s in seen:
                raise ValueError(f"subject {s!r} is in both {seen[s]!r} and {k!r}")
            seen[s] = k


def split_changes(old: dict[str, list[str]], new: dict[str, list[str]]) -> list[str]:
    """``subject: old split -> new split`` for each subject whose split differs (sorted)."""
    where_old = {s: k for k in SPLIT_KEYS for s in old.get(k, [])}
    where_new = {s: k for k in SPLIT_KEYS for s in new.get(k, [])}
    subjects = sorted(set(where_old) | set(where_new))
    return [
        f"{s}: {where_old.get(s, 'absent')} -> {where_new.get(s, 'absent')}"
        for s in subjects
        if where_old.get(s) != where_new.get(s)
    ]


def save_splits(
    splits: dict[str, list[str]], path: str | os.PathLike, *, force: bool = False
) -> None:
    """Write splits as JSON (checked disjoint). An existing file that holds a different split
    is replaced only with ``force``: models trained on it would otherwise be evaluated on their
    own training subjects without anyone noticing."""
    _check_splits(splits)
    p = Path(path)
    if p.exists() and not force:
        try:
            changes = split_changes(load_splits(p), splits)
        except ValueError as exc:
            raise FileExistsError(
                f"{p} exists and is not a valid splits file ({exc}); replace it with --force"
            ) from exc
        if changes:
            raise FileExistsError(
                f"{p} holds a different split ({len(changes)} subjects would move, e.g. "
                f"{changes[0]}); runs trained on it would be tested on their training subjects. "
                "Give another --out, or --force to replace it"
            )
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps({k: list(splits[k]) for k in SPLIT_KEYS}, indent=1))


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (checked disjoint)."""
    d = read_json(Path(path))
    splits = {k: [str(s) for s in d.get(k, [])] for k in SPLIT_KEYS}
    _check_splits(splits)
    return splits
