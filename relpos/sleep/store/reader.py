"""Read access to a prepared epoch store (see :mod:`relpos.sleep.store.layout`).

:class:`EpochStore` opens the store (index as numpy arrays, one memmap per record file);
:class:`EpochDataset` serves instance-normalised epochs to PyTorch with a batched
``__getitems__``. The training loop's example order (contiguous per-record chunks) is
:class:`relpos.train.order.EpochSampler`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from relpos.core.atomic import atomic_path
from relpos.sleep.preprocess import Pipeline, instance_norm
from relpos.sleep.store.context import check_context, context_table
from relpos.sleep.store.layout import (
    FORMAT,
    INDEX_FILE,
    RECORDS_DIR,
    STORE_FILE,
    VERSION,
    StoreMismatchError,
    is_temporary,
    read_json,
    record_npy_path,
)

logger = logging.getLogger(__name__)

__all__ = ["EpochDataset", "EpochStore"]


def _raise_nofile_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (never above the hard limit);
    returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        return 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft != inf and soft < wanted:
        new = wanted if hard == inf else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return 1 << 20 if soft == inf else int(soft)


#: The arrays of ``index.npz`` (besides its ``fingerprint``).
_INDEX_KEYS = (
    "record_ids",
    "record_subjects",
    "offsets",
    "labels",
    "record_index",
    "epoch_index",
    "onsets",
    "dropped",
    "epoch_shape",
    "fingerprint",
)


def _fingerprint(meta_files: list[os.DirEntry]) -> str:
    h = hashlib.sha1()
    for e in meta_files:
        st = e.stat()
        h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class EpochStore:
    """Read access to a prepared store.

    Attributes (N epochs, R records):
        config: store.json contents.
        record_ids: (R,) str; record_subjects: (R,) str; offsets: (R + 1,) int64 -- epochs
            of record r are ``offsets[r]:offsets[r + 1]`` in the global order.
        subjects: sorted unique subject ids (list[str]).
        labels: (N,) int8 (-1 unlabelled); record_index: (N,) int32; epoch_index: (N,) int32
            (epoch number in the record's 30-s grid); onsets: (N,) float64 seconds;
            subject_index: (N,) int32 into ``subjects``.
        dropped: (R, 2) int64 dropped NaN / flat epochs per record.

    Args:
        store_dir: the store.
        rebuild_index: rebuild ``index.npz`` even if it is fresh.
        max_open: most record memmaps kept open (each holds a file descriptor; LRU). Default:
            the soft open-files limit (raised towards records + 256 where the hard limit
            allows) minus 128.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike,
        *,
        rebuild_index: bool = False,
        max_open: int | None = None,
    ) -> None:
        self.root = Path(store_dir)
        cfg_path = self.root / STORE_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path}: not an epoch store (run `relpos prepare`)")
        config = read_json(cfg_path)
        if not isinstance(config, dict):
            raise StoreMismatchError(f"{cfg_path}: not a store config (a JSON object expected)")
        self.config: dict[str, Any] = config
        if self.config.get("format") != FORMAT or self.config.get("version") != VERSION:
            raise StoreMismatchError(
                f"{cfg_path}: unsupported store format {self.config.get('format')!r} "
                f"version {self.config.get('version')!r} (this code reads {FORMAT} v{VERSION})"
            )
        idx = self._load_index(rebuild_index)
        self.record_ids: np.ndarray = idx["record_ids"]
        self.record_subjects: np.ndarray = idx["record_subjects"]
        self.offsets: np.ndarray = idx["offsets"]
        self.labels: np.ndarray = idx["labels"]
        self.record_index: np.ndarray = idx["record_index"]
        self.epoch_index: np.ndarray = idx["epoch_index"]
        self.onsets: np.ndarray = idx["onsets"]
        self.dropped: np.ndarray = idx["dropped"]
        shape = idx["epoch_shape"]
        self.epoch_shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.subjects: list[str] = sorted(set(self.record_subjects.tolist()))
        subj_of_rec = np.searchsorted(np.asarray(self.subjects), self.record_subjects)
        self.record_subject_index = subj_of_rec.astype(np.int32)
        self.subject_index: np.ndarray = self.record_subject_index[self.record_index]
        # Each memmap holds a file descriptor: keep at most `max_open` (LRU), after raising
        # the soft RLIMIT_NOFILE towards what the store needs.
        if max_open is None:
            soft = _raise_nofile_limit(len(self.record_ids) + 256)
            max_open = max(16, soft - 128)
        self.max_open = int(max_open)
        self._mm: OrderedDict[int, np.ndarray] = OrderedDict()

    # -- index ----------------------------------------------------------------------------

    def _load_index(self, rebuild: bool) -> dict[str, np.ndarray]:
        rec_dir = self.root / RECORDS_DIR
        metas = (
            sorted(
                (
                    e
                    for e in os.scandir(rec_dir)
                    if e.name.endswith(".json") and not is_temporary(e.name)
                ),
                key=lambda e: e.name,
            )
            if rec_dir.is_dir()
            else []
        )
        fp = _fingerprint(metas)
        path = self.root / INDEX_FILE
        if not rebuild and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["fingerprint"]) == fp:
                        return {k: z[k] for k in _INDEX_KEYS}
            except Exception as e:  # a cache: any damage (BadZipFile, EOFError, ...) rebuilds it
                logger.warning("%s unreadable (%s: %s); rebuilding", path, type(e).__name__, e)
        idx = self._build_index(metas)
        idx["fingerprint"] = np.asarray(fp)
        arrays: dict[str, Any] = idx
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        except OSError as e:  # read-only store: keep the index in memory
            logger.info("cannot cache the index in %s (%s)", path, e)
        return idx

    def _build_index(self, metas: list[os.DirEntry]) -> dict[str, np.ndarray]:
        rids, subs, counts, labels, epochs, onsets, dropped = [], [], [], [], [], [], []
        shapes: dict[tuple[int, ...], list[str]] = {}
        for e in metas:
            try:
                m = read_json(Path(e.path))
            except ValueError as ex:
                raise ValueError(f"{ex}; rerun relpos prepare to redo the record") from ex
            try:
                rid = str(m["record_id"])
                if not record_npy_path(self.root, rid).is_file():
                    logger.warning("%s: meta without .npy; ignored (re-run prepare)", rid)
                    continue
                row = (
                    str(m.get("subject_id", rid)),
                    int(m["n_epochs"]),
                    np.asarray(m["labels"], np.int8),
                    np.asarray(m["epoch_index"], np.int32),
                    np.asarray(m["onset_s"], np.float64),
                    [int(m["dropped"].get("nan", 0)), int(m["dropped"].get("flat", 0))],
                    tuple(int(v) for v in m["shape"][1:]),
                )
            except (KeyError, TypeError, ValueError, AttributeError) as ex:
                raise ValueError(
                    f"{e.path}: damaged record meta ({type(ex).__name__}: {ex}); rerun relpos "
                    f"prepare to redo the record"
                ) from ex
            if not row[1] == len(row[2]) == len(row[3]) == len(row[4]):
                raise ValueError(
                    f"{e.path}: damaged record meta (n_epochs {row[1]}, but {len(row[2])} "
                    f"labels); rerun relpos prepare to redo the record"
                )
            rids.append(rid)
            subs.append(row[0])
            counts.append(row[1])
            labels.append(row[2])
            epochs.append(row[3])
            onsets.append(row[4])
            dropped.append(row[5])
            shapes.setdefault(row[6], []).append(rid)
        if len(shapes) > 1:
            detail = "; ".join(f"{k}: {v[:3]}" for k, v in shapes.items())
            raise StoreMismatchError(f"{self.root}: records have different epoch shapes: {detail}")
        shape = next(
            iter(shapes), (len(self.config["channels"]), int(self.config.get("epoch_samples") or 0))
        )
        R = len(rids)
        offsets = np.zeros(R + 1, np.int64)
        offsets[1:] = np.cumsum(counts)
        return {
            "record_ids": np.asarray(rids, dtype=str),
            "record_subjects": np.asarray(subs, dtype=str),
            "offsets": offsets,
            "labels": np.concatenate(labels) if R else np.zeros(0, np.int8),
            "record_index": np.repeat(np.arange(R, dtype=np.int32), counts),
            "epoch_index": np.concatenate(epochs) if R else np.zeros(0, np.int32),
            "onsets": np.concatenate(onsets) if R else np.zeros(0, np.float64),
            "dropped": np.asarray(dropped, np.int64).reshape(R, 2),
            "epoch_shape": np.asarray(shape, np.int64),
        }

    # -- properties -----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"EpochStore({str(self.root)!r}: {len(self.record_ids)} records, {len(self)} "
            f"epochs of {self.epoch_shape}, {self.dtype})"
        )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config["dtype"])

    @property
    def channels(self) -> list[str]:
        return list(self.config["channels"])

    @property
    def fs(self) -> float | None:
        return self.config.get("fs")

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline.model_validate(self.config["pipeline"])

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened after pickling
        d = self.__dict__.copy()
        d["_mm"] = OrderedDict()
        return d

    # -- reading --------------------------------------------------------------------------

    def _mmap(self, r: int) -> np.ndarray:
        mm = self._mm.get(r)
        if mm is not None:
            self._mm.move_to_end(r)
        else:
            while len(self._mm) >= self.max_open:
                self._mm.popitem(last=False)
            path = record_npy_path(self.root, str(self.record_ids[r]))
            try:
                mm = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise StoreMismatchError(
                    f"{path}: unreadable record file ({' '.join(str(e).split())}); rerun relpos "
                    f"prepare to redo it"
                ) from e
            n = self.offsets[r + 1] - self.offsets[r]
            if mm.shape != (n, *self.epoch_shape):
                raise StoreMismatchError(
                    f"{path}: shape {mm.shape}, index says {(n, *self.epoch_shape)}"
                )
            self._mm[r] = mm
        return mm

    def read_record(self, r: int) -> np.ndarray:
        """All epochs of record ``r``: (n, C, S) memmap (store dtype, read-only)."""
        return self._mmap(int(r))

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Epochs at global ``indices`` (any order, repeats allowed).

        Indices are sorted and grouped by record; each record's rows are read as one
        contiguous memmap slice where they are contiguous (or span at most twice their count),
        else by fancy indexing.

        Returns:
            (n, C, S) array in the store dtype, in the order of ``indices``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = idx.shape[0]
        out = np.empty((n, *self.epoch_shape), dtype=self.dtype)
        if n == 0:
            return out
        N = len(self)
        if idx.min() < -N or idx.max() >= N:
            raise IndexError(f"epoch index out of range for a store of {N} epochs")
        idx = np.where(idx < 0, idx + N, idx)
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        rec = self.record_index[s]
        row = s - self.offsets[rec]
        cuts = np.flatnonzero(rec[1:] != rec[:-1]) + 1
        starts = np.concatenate([[0], cuts]).tolist()
        ends = np.concatenate([cuts, [n]]).tolist()
        for a, b in zip(starts, ends):  # one iteration per record touched, not per epoch
            mm = self._mmap(int(rec[a]))
            lo, hi = int(row[a]), int(row[b - 1]) + 1
            if hi - lo == b - a:
                block = mm[lo:hi]
            elif hi - lo <= 2 * (b - a):
                block = mm[lo:hi][row[a:b] - lo]
            else:
                block = mm[row[a:b]]
            dst = order[a:b]
            if dst[-1] - dst[0] == b - a - 1 and b - a > 1 and (np.diff(dst) == 1).all():
                out[dst[0] : dst[-1] + 1] = block
            else:
                out[dst] = block
        return out


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


class EpochDataset(Dataset):
    """Epochs of a store as a torch Dataset.

    An item is ``(x, label, subject)``: x (C, S) float tensor (instance-normalised per channel
    when ``normalize``), label int (-1 unlabelled), subject int (index into
    ``store.subjects``).

    ``dataset[list_or_array]`` returns a whole batch ``(x (n, C, S), labels (n,) int64,
    subjects (n,) int64)`` from one vectorised read; :meth:`__getitems__` (used by
    ``DataLoader`` with ``batch_size``) does the same read and returns the list of items.

    With ``context`` k > 1 an item is the window of k consecutive epochs of one record around
    an anchor epoch (see :mod:`relpos.sleep.store.context`; the anchor is epoch ``k // 2``,
    the centre for odd k): x is (C, k * S), the k epochs concatenated in time, each
    instance-normalised on its own first; label and subject are the anchor's. Neighbours may be
    any epoch of the anchor's record (unlabelled ones too); a missing one (record edge, dropped
    epoch) is zeros, unless ``complete`` keeps only the anchors whose window is whole. The
    ``indices``, ``labels``, ``subject_index`` and ``record_index`` attributes are the anchors';
    ``context_index`` (n, k) holds the store indices of each window (-1: missing).

    Args:
        store: an :class:`EpochStore` or its directory.
        subjects: keep only epochs of these subject ids (unknown ids are warned about).
        labelled_only: keep only epochs with a stage label (as anchors).
        normalize: instance-normalise (eps from the store pipeline's InstanceNorm, else 1e-6).
        dtype: tensor dtype of x.
        context: epochs per item, 1 (one epoch, the default) to ``MAX_CONTEXT``.
        complete: with ``context`` > 1, serve only anchors whose k epochs all exist.
    """

    def __init__(
        self,
        store: EpochStore | str | os.PathLike,
        subjects: Sequence[str] | None = None,
        labelled_only: bool = False,
        normalize: bool = True,
        dtype: torch.dtype = torch.float32,
        context: int = 1,
        complete: bool = False,
    ) -> None:
        self.context = check_context(context)
        self.complete = bool(complete)
        self.subjects: list[str] | None = None if subjects is None else list(subjects)
        self.store = store if isinstance(store, EpochStore) else EpochStore(store)
        mask = np.ones(len(self.store), dtype=bool)
        if subjects is not None:
            wanted = set(subjects)
            unknown = wanted - set(self.store.subjects)
            if unknown:
                warnings.warn(
                    f"{len(unknown)} subject(s) not in the store, e.g. {sorted(unknown)[:5]}",
                    stacklevel=2,
                )
            sel = np.isin(np.asarray(self.store.subjects), sorted(wanted))
            mask &= sel[self.store.subject_index]
        if labelled_only:
            mask &= self.store.labels >= 0
        self.indices: np.ndarray = np.flatnonzero(mask).astype(np.int64)
        self.context_index: np.ndarray = self.indices[:, None]
        if self.context > 1:
            st = self.store
            table = context_table(st.record_index, st.epoch_index, self.indices, self.context)
            if self.complete:
                whole = (table >= 0).all(1)
                self.indices, table = self.indices[whole], table[whole]
            self.context_index = table
        self.labels: np.ndarray = self.store.labels[self.indices].astype(np.int64)
        self.subject_index: np.ndarray = self.store.subject_index[self.indices].astype(np.int64)
        self.record_index: np.ndarray = self.store.record_index[self.indices]
        self.normalize = normalize
        norm = self.store.pipeline.normalize
        self.eps = norm.eps if norm is not None else 1e-6
        self.dtype = dtype

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def batch(
        self, positions: Sequence[int] | np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch at dataset ``positions``: (x (n, C, S), labels (n,), subjects (n,))."""
        if isinstance(positions, torch.Tensor):
            positions = positions.numpy()
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self.context > 1:
            x = self._windows(self.context_index[pos])
        else:
            x = self._epochs(self.indices[pos])
        return x, torch.from_numpy(self.labels[pos]), torch.from_numpy(self.subject_index[pos])

    def _epochs(self, indices: np.ndarray) -> torch.Tensor:
        """(n, C, S) epochs at store ``indices``, normalised when asked."""
        x = torch.from_numpy(self.store.read(indices)).to(self.dtype)  # new: normalise in place
        if self.normalize:
            x = instance_norm(x, self.eps, inplace=True)
        return x

    def _windows(self, table: np.ndarray) -> torch.Tensor:
        """(n, C, k * S) windows of the (n, k) store-index ``table``; -1 entries are zeros."""
        flat = table.reshape(-1)
        have = flat >= 0
        if have.all():
            x = self._epochs(flat)
        else:
            x = torch.zeros((flat.shape[0], *self.store.epoch_shape), dtype=self.dtype)
            x[torch.from_numpy(have)] = self._epochs(flat[have])
        return rearrange(x, "(n k) c s -> n c (k s)", k=table.shape[1])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, (int, np.integer)) or (isinstance(i, torch.Tensor) and i.ndim == 0):
            x, y, s = self.batch([int(i)])
            return x[0], int(y[0]), int(s[0])
        if isinstance(i, slice):
            i = np.arange(len(self))[i]
        return self.batch(i)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int, int]]:
        x, y, s = self.batch(indices)
        return list(zip(x.unbind(0), y.tolist(), s.tolist()))
