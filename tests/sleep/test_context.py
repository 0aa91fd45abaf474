"""Multi-epoch context: windows of consecutive epochs never cross records or dropped epochs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos.sleep.sources import eeg_store, store_dataset
from relpos.sleep.store import (
    MAX_CONTEXT,
    EpochDataset,
    EpochStore,
    context_table,
    prepare_store,
    save_splits,
)
from relpos.sleep.synthetic import synthesize_dataset


# --------------------------------------------------------------------------------------------
# the index: property test on random stores
# --------------------------------------------------------------------------------------------
@st.composite
def stores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(record_index, epoch_index) of a random store: 1-5 records, each a random subset of its
    30-s grid (gaps = dropped epochs), record-major like a real store or shuffled."""
    n_rec = draw(st.integers(1, 5))
    recs, eps = [], []
    for r in range(n_rec):
        grid = draw(st.sets(st.integers(0, 40), min_size=1, max_size=25))
        recs += [r] * len(grid)
        eps += sorted(grid)
    rec, ep = np.asarray(recs, np.int32), np.asarray(eps, np.int32)
    if draw(st.booleans()):
        perm = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(rec.shape[0])
        rec, ep = rec[perm], ep[perm]
    return rec, ep


@settings(max_examples=150, deadline=None)
@given(stores(), st.integers(1, 9), st.data())
def test_context_windows_never_cross_records_or_gaps(store, k, data) -> None:
    rec, ep = store
    N = rec.shape[0]
    anchors = np.asarray(
        data.draw(st.lists(st.integers(0, N - 1), max_size=3 * N), label="anchors"), np.int64
    )
    table = context_table(rec, ep, anchors, k)
    assert table.shape == (anchors.shape[0], k) and table.dtype == np.int64
    np.testing.assert_array_equal(table[:, k // 2], anchors)  # anchors keep order, centred
    where = {(int(r), int(e)): i for i, (r, e) in enumerate(zip(rec, ep))}
    for a, row in zip(anchors, table):
        for j, g in enumerate(row):
            wanted = (int(rec[a]), int(ep[a]) + j - k // 2)
            assert g == where.get(wanted, -1)  # -1 exactly where the neighbour is missing
        if (row >= 0).all():  # a complete window: one record, consecutive grid numbers
            assert (rec[row] == rec[a]).all()
            np.testing.assert_array_equal(np.diff(ep[row]), np.ones(k - 1))


def test_context_table_edges_and_errors() -> None:
    rec = np.array([0, 0, 0, 0, 1, 1, 1])
    ep = np.array([0, 1, 3, 4, 0, 1, 2])  # record 0 lost its epoch 2
    t = context_table(rec, ep, np.array([1, 3, 4, 5]), 3)
    np.testing.assert_array_equal(t, [[0, 1, -1], [2, 3, -1], [-1, 4, 5], [4, 5, 6]])
    even = context_table(rec, ep, np.array([5]), 4)  # anchor at position k // 2
    np.testing.assert_array_equal(even, [[-1, 4, 5, 6]])
    assert context_table(rec, ep, np.zeros(0, np.int64), 5).shape == (0, 5)
    for bad in (0, MAX_CONTEXT + 1, 2.5, True):
        with pytest.raises(ValueError, match="context must be"):
            context_table(rec, ep, np.array([0]), bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the dataset on a real (small, synthetic) store with a dropped and an unlabelled epoch
# --------------------------------------------------------------------------------------------
DROPPED = 4  # grid epoch removed from the first record
UNLABELLED = 6  # grid epoch of the second record whose label is removed


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> EpochStore:
    root = tmp_path_factory.mktemp("ctx")
    synthesize_dataset(root / "rec", 2, seed=0, max_hours=0.1, unlabelled=1, progress=False)
    prepare_store(root / "rec", root / "store", progress=False)
    first, second = sorted((root / "store" / "records").glob("tr90-*.json"))[:2]
    _edit(first, drop=DROPPED)
    _edit(second, unlabel=UNLABELLED)
    s = EpochStore(root / "store", rebuild_index=True)
    first_id, second_id, unlabelled_id = s.subjects
    splits = {"pretrain": [first_id, unlabelled_id], "finetune": [], "test": [second_id], "val": []}
    save_splits(splits, s.root / "splits.json")
    return s


def _edit(meta_path: Path, *, drop: int | None = None, unlabel: int | None = None) -> None:
    """Remove grid epoch ``drop`` from a prepared record (as preparation drops a NaN epoch), or
    remove the label of grid epoch ``unlabel``."""
    m = json.loads(meta_path.read_text())
    if drop is not None:
        row = m["epoch_index"].index(drop)
        npy = meta_path.with_suffix(".npy")
        np.save(npy, np.delete(np.load(npy), row, axis=0))
        for key in ("labels", "epoch_index", "onset_s"):
            del m[key][row]
        m["n_epochs"] -= 1
        m["shape"][0] -= 1
        m["dropped"]["nan"] += 1
    if unlabel is not None:
        m["labels"][m["epoch_index"].index(unlabel)] = -1
    meta_path.write_text(json.dumps(m))


def _single(store: EpochStore, g: int) -> torch.Tensor:
    """The one-epoch item at store index ``g`` (-1: zeros)."""
    if g < 0:
        return torch.zeros(store.epoch_shape)
    one = EpochDataset(store)
    return one[int(np.flatnonzero(one.indices == g)[0])][0]


def test_context_one_is_todays_dataset(store: EpochStore) -> None:
    for kw in ({}, {"labelled_only": True}, {"subjects": store.subjects[:1]}):
        a, b = EpochDataset(store, **kw), EpochDataset(store, **kw, context=1, complete=True)
        np.testing.assert_array_equal(a.indices, b.indices)
        xa, ya, sa = a[np.arange(len(a))]
        xb, yb, sb = b[np.arange(len(b))]
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(sa, sb)
        assert xb.shape[1:] == (6, 3000)


def test_context_items_concatenate_single_epochs(store: EpochStore) -> None:
    k, S = 5, store.epoch_shape[1]
    ds = EpochDataset(store, labelled_only=True, context=k)
    one = EpochDataset(store, labelled_only=True)
    np.testing.assert_array_equal(ds.indices, one.indices)  # the same scored epochs
    np.testing.assert_array_equal(ds.labels, one.labels)
    np.testing.assert_array_equal(ds.record_index, one.record_index)
    x = ds[np.arange(len(ds))][0]
    assert x.shape == (len(ds), 6, k * S)
    torch.testing.assert_close(x[:, :, 2 * S : 3 * S], one[np.arange(len(one))][0])
    missing = 0
    for i in range(len(ds)):  # every window: the single-epoch items side by side, zeros if none
        want = torch.cat([_single(store, int(g)) for g in ds.context_index[i]], dim=-1)
        torch.testing.assert_close(x[i], want, rtol=0, atol=0)
        missing += int((ds.context_index[i] < 0).sum())
    assert missing > 0
    # neighbours cross neither the dropped epoch nor the record edge; unlabelled ones are used
    r0 = ds.record_index == 0
    ep0 = store.epoch_index[ds.indices[r0]]
    row = int(np.flatnonzero(r0)[np.flatnonzero(ep0 == DROPPED - 1)[0]])
    assert ds.context_index[row, 3] == -1 and (x[row, :, 3 * S : 4 * S] == 0).all()
    assert (x[0, :, : 2 * S] == 0).all() and (ds.context_index[0, :2] == -1).all()
    assert not (store.labels[ds.indices] < 0).any()
    used = ds.context_index[ds.context_index >= 0]
    assert (store.labels[used] < 0).any()  # the unlabelled epoch serves as a neighbour
    assert ds[3][0].shape == (6, k * S) and len(ds.__getitems__([0, 3])) == 2


def test_complete_windows_only(store: EpochStore) -> None:
    k = 3
    ds = EpochDataset(store, context=k, complete=True)
    whole = ds.context_index
    assert (whole >= 0).all() and len(ds) < len(store)
    assert (store.record_index[whole] == ds.record_index[:, None]).all()
    assert (np.diff(store.epoch_index[whole], axis=1) == 1).all()
    starts = store.offsets[:-1]
    assert not np.isin(ds.indices, starts).any()  # record edges are no anchors
    gap = store.offsets[0] + DROPPED  # first epoch after the dropped one
    assert not np.isin([gap - 1, gap], ds.indices).any()
    x = ds[np.arange(len(ds))][0]
    assert x.shape == (len(ds), 6, k * store.epoch_shape[1])
    assert (rearrange(x, "n c (k s) -> n c k s", k=k).std(-1) > 0).all()  # no zero-filled epoch
    with pytest.raises(ValueError, match="context must be"):
        EpochDataset(store, context=0)


def test_store_sources_context(store: EpochStore) -> None:
    pt = store_dataset(store.root, "pretrain", False, context=3)
    plain = store_dataset(store.root, "pretrain", False)
    assert pt.complete and (pt.context_index >= 0).all() and len(pt) < len(plain)
    assert plain.context == 1 and set(pt.indices) < set(plain.indices)
    ft = store_dataset(store.root, "test", True, context=3)
    assert not ft.complete and (ft.context_index < 0).any()
    np.testing.assert_array_equal(ft.indices, store_dataset(store.root, "test", True).indices)
    src = eeg_store(store.root, "test", True, context=3, complete=True)
    assert src.dataset.complete and (src.groups == src.dataset.record_index).all()  # type: ignore[attr-defined]
