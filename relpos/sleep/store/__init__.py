"""The prepared-epoch store: writer (``prepare_store``), reader (``EpochStore``,
``EpochDataset``) and subject-level splits.

Modules: :mod:`~relpos.sleep.store.layout` (file names, format version, temporary names),
:mod:`~relpos.sleep.store.context` (windows of consecutive epochs of one record),
:mod:`~relpos.sleep.store.writer` (``relpos prepare``), :mod:`~relpos.sleep.store.summary`
(what a run did), :mod:`~relpos.sleep.store.reader` (memory-mapped reading, torch dataset) and
:mod:`~relpos.sleep.store.splits`.
"""

from relpos.sleep.store.context import MAX_CONTEXT, context_table
from relpos.sleep.store.layout import (
    FORMAT,
    VERSION,
    StoreLockedError,
    StoreMismatchError,
    StoreWriteError,
)
from relpos.sleep.store.reader import EpochDataset, EpochStore
from relpos.sleep.store.splits import SPLIT_KEYS, load_splits, make_splits, save_splits
from relpos.sleep.store.summary import PrepareSummary
from relpos.sleep.store.writer import prepare_store

__all__ = [
    "FORMAT",
    "MAX_CONTEXT",
    "SPLIT_KEYS",
    "VERSION",
    "EpochDataset",
    "EpochStore",
    "PrepareSummary",
    "StoreLockedError",
    "StoreMismatchError",
    "StoreWriteError",
    "context_table",
    "load_splits",
    "make_splits",
    "prepare_store",
    "save_splits",
]
