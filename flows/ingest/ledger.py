"""What ingest has already done, derived from the folders alone (no separate state to fall out of step).

A batch ``(device_id, batch_id)`` is done when a curated file commits it (a chunk's footer ledger lists
it, or its one-batch part of the older layout exists: ``flows.ingest.store``) or when its quarantine
``reason.txt`` exists. A quarantined batch that ``--retry-quarantined`` curated later is both: its
quarantine entry stays (never deleted), and it counts as curated, not quarantined (``still_quarantined``).
Totals for ``data/metrics/ingest.json`` are recomputed from the same folders every run (footers only), so
they are deterministic and survive crashes. Also: the run lock (one
ingest at a time) and the removal of temp files that a killed run left behind. Does not write curated
files or quarantine entries.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.contracts.errors import UserError
from edge.contracts.names import BATCH_ID_PATTERN
from flows.ingest.quarantine import REASON_SUFFIX
from flows.ingest.store import chunks_root, committed, parts_root

LOCK_NAME = ".ingest.lock"


def iter_quarantined(quarantine: Path) -> Iterator[tuple[str, str, Path]]:  # or a UPath (a bucket prefix)
    """(device id or _unsorted, batch id, reason file) of every finished quarantine entry, sorted."""
    if not quarantine.is_dir():
        return
    for folder in sorted(p for p in quarantine.iterdir() if p.is_dir()):
        for path in sorted(folder.glob(f"*{REASON_SUFFIX}")):
            stem = path.name.removesuffix(REASON_SUFFIX)
            if BATCH_ID_PATTERN.match(stem):
                yield folder.name, stem, path


def curated_keys(curated: Path) -> set[tuple[str, str]]:
    return {(c.device_id, c.batch_id) for c in committed(curated, with_stats=False)}


def done_keys(curated: Path, quarantine: Path) -> set[tuple[str, str]]:
    keys = curated_keys(curated)
    keys.update((device, batch) for device, batch, _ in iter_quarantined(quarantine))
    return keys


def still_quarantined(curated: Path, quarantine: Path) -> Iterator[tuple[str, str, Path]]:
    """``iter_quarantined`` less the batches curated since (by ``ingest --retry-quarantined``)."""
    done = curated_keys(curated)
    return ((d, b, p) for d, b, p in iter_quarantined(quarantine) if (d, b) not in done)


def totals(curated: Path, quarantine: Path) -> dict[str, int | float]:
    """The ingest.json metrics: totals over everything curated or still quarantined so far (a batch
    curated after a retry counts once, as curated)."""
    rows = duplicates = 0
    keys: set[tuple[str, str]] = set()
    for batch in committed(curated):
        rows += batch.rows
        duplicates += batch.duplicates_dropped
        keys.add((batch.device_id, batch.batch_id))
    entries = [(device, batch) for device, batch, _ in iter_quarantined(quarantine)]
    quarantined = sum(1 for key in entries if key not in keys)
    batches = len(keys) + quarantined
    return {
        "batches": batches,
        "curated": len(keys),
        "quarantined": quarantined,
        "rows": rows,
        "duplicates_dropped": duplicates,
        "quarantined_share": round(quarantined / batches, 6) if batches else 0.0,
    }


def remove_temp_files(curated: Path, quarantine: Path) -> int:
    """Delete ``.*.tmp`` files a killed run left in our own folders (call only under the run lock)."""
    removed = 0
    places = ((parts_root(curated), "*/.*.tmp"), (chunks_root(curated), ".*.tmp"), (quarantine, "*/.*.tmp"))
    for root, pattern in places:
        if root.is_dir():
            for path in root.glob(pattern):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock for the whole run; a second concurrent ingest is a UserError.

    ``folder`` should be outside the DVC-tracked outputs (the stage uses ``data/``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another ingest is running ({path} is locked)") from None
        yield
    finally:
        os.close(fd)
