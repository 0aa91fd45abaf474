"""What a ``relpos prepare`` run did and what the store holds (``summary.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from relpos.sleep.format import STAGES
from relpos.sleep.store.layout import CLASS_NAMES, SKIPPED_DIR, is_temporary, read_json
from relpos.sleep.store.reader import EpochStore

__all__ = ["PrepareSummary", "store_totals"]


@dataclass
class PrepareSummary:
    """What a :func:`prepare_store` run did and what the store now holds.

    Run counts: ``n_found`` records found, ``n_new`` prepared now, ``n_existing`` finished
    before, ``n_skipped_new`` skipped now, ``n_skipped_existing`` skipped before, ``n_failed``
    lost to a crashed worker or an unexpected error (not marked; retried next run). Store
    totals: ``n_records``, ``n_epochs``, ``class_counts`` (W N1 N2 N3 R unlabelled),
    ``dropped`` ({"nan", "flat"} epochs), ``skipped`` / ``failed`` (record id -> reason).
    ``warnings``: records prepared now whose signal looks implausible (record id -> why, see
    :func:`relpos.sleep.preprocess.implausible_signal`; also in their meta). ``repaired``:
    records whose store files were damaged and are prepared again (record id -> what was
    wrong). ``timings``: seconds summed over this run's new records per phase (read,
    bandpass, resample, drop, write).
    """

    store_dir: str
    n_found: int = 0
    n_new: int = 0
    n_existing: int = 0
    n_skipped_new: int = 0
    n_skipped_existing: int = 0
    n_failed: int = 0
    n_records: int = 0
    n_epochs: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=lambda: {"nan": 0, "flat": 0})
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """Human-readable table."""
        rows = [
            ("store", self.store_dir),
            ("records found", self.n_found),
            ("  prepared now", self.n_new),
            ("  already prepared", self.n_existing),
            ("  skipped now", self.n_skipped_new),
            ("  skipped before", self.n_skipped_existing),
            ("  failed (retry)", self.n_failed),
            ("records in store", self.n_records),
            ("epochs in store", self.n_epochs),
        ]
        total = max(self.n_epochs, 1)
        for k in CLASS_NAMES:
            v = self.class_counts.get(k, 0)
            rows.append((f"  {k}", f"{v} ({100 * v / total:.1f}%)"))
        rows.append(("dropped NaN epochs", self.dropped.get("nan", 0)))
        rows.append(("dropped flat epochs", self.dropped.get("flat", 0)))
        for k, secs in self.timings.items():
            rows.append((f"time {k} (s, summed)", f"{secs:.2f}"))
        rows.append(("elapsed (s)", f"{self.elapsed_s:.2f}"))
        w = max(len(str(r[0])) for r in rows)
        out = [f"{k!s:<{w}}  {v}" for k, v in rows]
        sections = (
            ("skipped", self.skipped),
            ("failed", self.failed),
            ("repaired (damaged files, prepared again)", self.repaired),
            ("warnings (implausible signal; check the record)", self.warnings),
        )
        for title, d in sections:
            if d:
                out.append(f"{title}:")
                out.extend(f"  {rid}: {reason}" for rid, reason in sorted(d.items()))
        return "\n".join(out)


def store_totals(root: Path) -> dict[str, Any]:
    """Totals over the finished records (via the cached index) and the skipped ones."""
    out: dict[str, Any] = {"skipped": {}}
    for p in sorted((root / SKIPPED_DIR).glob("*.json")):
        if is_temporary(p.name):
            continue
        try:
            out["skipped"][p.stem] = read_json(p).get("reason", "")
        except (OSError, ValueError):
            continue
    store = EpochStore(root)
    out["n_records"] = len(store.record_ids)
    out["n_epochs"] = len(store)
    cc = np.bincount(store.labels.astype(np.int64) + 1, minlength=len(STAGES) + 1)
    out["class_counts"] = {k: int(cc[i + 1]) for i, k in enumerate(STAGES)}
    out["class_counts"]["unlabelled"] = int(cc[0])
    out["dropped"] = {"nan": int(store.dropped[:, 0].sum()), "flat": int(store.dropped[:, 1].sum())}
    return out
