"""The prepared-epoch store: writer (``prepare_store``), reader (``EpochStore``,
``EpochDataset``) and subject-level splits."""

from relpos.sleep.store.reader import *  # noqa: F403
from relpos.sleep.store.reader import __all__  # noqa: F401
