"""ingest: every new batch in the landing zones ends curated once or quarantined once, nothing lost.

Reads each source in ``params.ingest.sources`` (a folder or an object-store prefix, laid out
``<device_id>/<file>.{parquet,csv}``), in a deterministic order (device, file name, source order). A
batch ``(device_id, sha256 of its bytes)`` is done when a curated file under ``data/curated`` commits
it (``flows.ingest.store``: the atomic write of a chunk file, whose footer lists its batches, is the
commit) or when its quarantine ``reason.txt`` exists (written last). So a rerun, or a rerun after a
crash, skips what is done and finishes the rest.

New batches are taken in chunks (at most ``ingest.chunk_rows`` rows or ``ingest.chunk_batches``
batches). Per chunk: each file is read once (size check, batch id, decode); same-shaped batches are
concatenated and normalised together, each row keeping its batch key (``flows.ingest.combine``); the
checks that only make sense per batch (columns, row count, column types) set suspects aside
(``flows.ingest.structure``); ONE Great Expectations validation runs over the rest, and every failed
row is attributed back to its batch (``flows.ingest.attribute``), whose reason reads as a per-batch
validation's would; the suspects are validated one by one with the per-batch suite. Bad batches are
quarantined alone; the good ones lose the events already curated (earlier batches and runs) and are
committed together in one chunk file. Event ids must be whole numbers and event times must lie between
``ingest.min_event_time`` and the run's clock plus ``ingest.max_future_s``. Writes
``data/metrics/ingest.json`` (totals derived from the folders) and Data Docs (one page per chunk).

A quarantined batch stays quarantined (``skipped_already_done``) until asked: with ``retry=True``
(``edgeloop ingest --retry-quarantined``) every batch still in quarantine is read again from its raw
copy, before the landing zones, and judged by the current params like a new batch: one that passes is
curated by the same chunk commit (so at most once, ever: the ledger lists it, and later copies of it in
a landing zone or a second retry skip it), one that fails keeps its entry with the new reason. Each
attempt is recorded beside the entry (``flows.ingest.quarantine``). Files quarantined under ``_unsorted``
(not in a device folder) cannot be retried: they need moving into one and landing again.
Never modifies or deletes a source file. Does not split, train or judge drift; does not import Prefect.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.layout import Paths
from flows.ingest.attribute import Attribution, attribute
from flows.ingest.combine import Piece, combine, could_not_process
from flows.ingest.discover import UNSORTED, Found, discover, extension_of, source_locations
from flows.ingest.events import SeenEvents
from flows.ingest.ledger import curated_keys, done_keys, iter_quarantined, remove_temp_files, run_lock, totals
from flows.ingest.loader import Loaded, decode, open_file, text_columns
from flows.ingest.normalise import normalise
from flows.ingest.offline_docs import make_site_offline
from flows.ingest.quarantine import (
    is_marked_curated,
    mark_curated,
    not_validated,
    one_line,
    quarantine,
    quarantine_root,
    raw_copy,
    requarantine,
)
from flows.ingest.reader import Unreadable
from flows.ingest.reasons import describe_failures
from flows.ingest.store import curated_frame, curated_ids, write_chunk
from flows.ingest.structure import set_aside, suspects
from flows.ingest.validate import BatchValidator, BulkValidator, TimeBounds
from flows.params import Params
from flows.storage import StoragePath

log = logging.getLogger(__name__)

METRICS_FILE = "ingest.json"
DOCS_FOLDER = "data_docs"
READ_THREADS = 4  # at most; never more than the machine's cores
READ_WINDOW = 256  # files read ahead of the one being decided
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Run:
    """State of one ingest run: what is done, which events are curated, this run's counts."""

    params: Params
    paths: Paths
    quarantine: StoragePath
    done: set[tuple[str, str]]
    seen: SeenEvents
    bounds: TimeBounds
    name: str  # labels this run's validations in Data Docs
    text: list[str]  # CSV columns read as text
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    retrying: set[tuple[str, str]] = field(default_factory=set)  # quarantined batches judged again this run
    at: str = ""  # the run's clock, ISO 8601 (retry records)
    _bulk: BulkValidator | None = None
    _single: BatchValidator | None = None

    @property
    def bulk(self) -> BulkValidator:
        if self._bulk is None:  # built on first use: GX costs seconds to import
            self._bulk = BulkValidator(self.params.schema, self.params.ingest, self.bounds)
        return self._bulk

    @property
    def single(self) -> BatchValidator:
        if self._single is None:  # a context of its own: per-batch results are evidence, not Data Docs pages
            self._single = BatchValidator(self.params.schema, self.params.ingest, self.bounds)
        return self._single


def _shown(path: StoragePath, root: Path) -> str:
    """``path`` relative to the project root when it is inside it (shorter in logs and artifacts)."""
    return str(path.relative_to(root)) if isinstance(path, Path) and path.is_relative_to(root) else str(path)


def _reject(run: _Run, item: Found, bid: str, reason: str, result: dict[str, Any]) -> None:
    folder = run.quarantine / item.device_id
    if (item.device_id, bid) in run.retrying:  # its entry stays; the attempt and new reason are recorded
        requarantine(folder, bid, result, reason, run.at)
        run.counts["retried_still_quarantined"] += 1
    else:
        quarantine(folder, bid, item.extension, item.path, result, reason)
        run.counts["quarantined"] += 1
    source = _shown(item.path, run.paths.root)
    entry = {"device_id": item.device_id, "batch_id": bid, "source": source, "reason": one_line(reason)}
    run.quarantined.append(entry)
    log.warning("quarantined %s/%s: %s", item.device_id, bid[:12], entry["reason"])


@dataclass(frozen=True)
class _Read:
    """One file after ``_read``: its batch id, and its decoded batch or the reason it has none."""

    item: Found
    batch_id: str
    batch: Loaded | None
    reason: str | None  # None with no batch: done already (decoding skipped)


def _read(run: _Run, item: Found) -> _Read:
    """Read, hash and decode one file (runs in a worker thread: it only reads ``run``)."""
    opened = open_file(item, run.params.ingest.max_bytes)
    if (item.device_id, opened.batch_id) in run.done:  # read-only here; the caller updates it
        return _Read(item, opened.batch_id, None, None)
    reason = opened.problem
    if reason is None:
        try:
            return _Read(item, opened.batch_id, decode(opened, run.text, run.params.schema.column_names), None)
        except Unreadable as exc:
            reason = str(exc)
        except Exception as exc:  # one poisonous file must not block every run; traceback goes to the log
            log.exception("unexpected error while reading %s", _shown(item.path, run.paths.root))
            reason = could_not_process(exc)
    return _Read(item, opened.batch_id, None, reason)


def _take(run: _Run, read: _Read) -> Loaded | None:
    """The decoded batch, or None when it is done already or was rejected here (unreadable...)."""
    key = (read.item.device_id, read.batch_id)
    if key in run.done:
        run.counts["skipped"] += 1
        return None
    run.done.add(key)
    if read.batch is not None:
        return read.batch
    reason = read.reason or "not read"
    _reject(run, read.item, read.batch_id, reason, not_validated(reason, _shown(read.item.path, run.paths.root)))
    return None


def _read_all(run: _Run, items: list[Found]) -> Iterator[Loaded]:
    """New batches in discovery order; files are read and decoded a window at a time by worker threads
    (Parquet decoding releases the GIL), so memory holds at most one window beyond the current chunk."""
    workers = max(1, min(READ_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), READ_WINDOW):
            for read in pool.map(lambda item: _read(run, item), items[start : start + READ_WINDOW]):
                batch = _take(run, read)
                if batch is not None:
                    yield batch


def _check_one(run: _Run, batch: Loaded) -> tuple[pd.DataFrame | None, str, dict[str, Any]]:
    """A batch judged on its own with the per-batch suite: (frame, "", {}) or (None, reason, evidence).

    Any unexpected error on one file's contents rejects that file (logged with its traceback).
    """
    schema, shown = run.params.schema, _shown(batch.item.path, run.paths.root)
    try:
        frame = normalise(batch.raw_frame(), schema)
        verdict = run.single.validate(frame, batch.device_id, run_name=f"{batch.device_id}.{batch.batch_id[:16]}")
    except Unreadable as exc:
        return None, str(exc), not_validated(str(exc), shown)
    except Exception as exc:
        log.exception("unexpected error while checking %s", shown)
        reason = could_not_process(exc)
        return None, reason, not_validated(reason, shown)
    if not verdict.success:
        return None, verdict.reason, verdict.result
    return frame, "", {}


def _bulk_rows(pieces: list[Piece]) -> tuple[pd.DataFrame, np.ndarray]:
    """The chunk's normalised rows and their batch keys."""
    frame = pieces[0].frame if len(pieces) == 1 else pd.concat([p.frame for p in pieces], ignore_index=True)
    return frame.reset_index(drop=True), np.concatenate([p.keys for p in pieces])


def _validate_bulk(run: _Run, frame: pd.DataFrame, keys: np.ndarray, batches: list[Loaded], chunk: int) -> Attribution:
    """One GX validation of the chunk's rows, its failures attributed to their batches."""
    folders = np.array([b.device_id for b in batches], dtype=object)
    try:
        checked = run.bulk.frame(frame, keys, folders)
        result = run.bulk.validate(checked, run_name=f"{run.name}.chunk-{chunk}")
    except Exception:  # the batches are then judged one by one, as before bulk ingest
        log.exception("bulk validation failed; checking this chunk's batches one by one")
        return Attribution(unattributed=True)
    return Attribution() if result.success else attribute(result.results, dict(enumerate(folders)), run.params.schema)


def _bulk_evidence(run: _Run, batch: Loaded, results: list[dict[str, Any]], chunk: int) -> dict[str, Any]:
    return {
        "success": False,
        "validated": True,
        "validation": "bulk",  # this batch's failed expectations, from the run's one validation of the chunk
        "run_name": f"{run.name}.chunk-{chunk}",
        "source": _shown(batch.item.path, run.paths.root),
        "batch_rows": batch.rows,
        "results": results,
    }


def _curate(run: _Run, batches: list[Loaded], frame: pd.DataFrame, keys: np.ndarray) -> None:
    """Drop events already curated, then commit the chunk's good batches (in chunk order) in one file."""
    schema = run.params.schema
    members = np.unique(keys)  # ``keys`` is sorted: rows are in chunk order
    accepted = [int(k) for k in members]
    kept, repeated = run.seen.drop_repeated(frame, schema.device_id, schema.event_id)
    kept_keys = keys[~repeated]
    rows = np.searchsorted(kept_keys, members, side="right") - np.searchsorted(kept_keys, members, side="left")
    all_rows = np.searchsorted(keys, members, side="right") - np.searchsorted(keys, members, side="left")
    entries = [(batches[k].device_id, batches[k].batch_id, int(r), int(a - r))
               for k, r, a in zip(accepted, rows, all_rows, strict=True)]
    batch_of_row = np.searchsorted(members, kept_keys)
    _, unstorable = write_chunk(run.paths.curated, curated_frame(kept, schema), entries, batch_of_row)
    # (a batch that cannot be stored still counts as seen for the rest of this run: later batches lose
    # those events as repeats; the next run reads what is curated afresh)
    for index, reason in unstorable.items():
        batch = batches[accepted[index]]
        _reject(run, batch.item, batch.batch_id, reason, not_validated(reason, _shown(batch.item.path, run.paths.root)))
    for index, (device_id, bid, kept_rows, dropped) in enumerate(entries):
        if index not in unstorable:
            run.counts["curated"] += 1
            run.counts["rows"] += kept_rows
            run.counts["duplicates_dropped"] += dropped
            if (device_id, bid) in run.retrying:  # committed above: now record it beside its entry
                mark_curated(run.quarantine / device_id, bid, run.at)
                run.counts["retried_curated"] += 1
                run.counts["retried_rows"] += kept_rows


def _process_chunk(run: _Run, batches: list[Loaded], chunk: int) -> None:
    """Validate a chunk of batches together and commit it (see the module docstring)."""
    schema, ingest = run.params.schema, run.params.ingest
    combined = combine(batches, schema, normalise)
    rejected = {key: (reason, not_validated(reason, _shown(batches[key].item.path, run.paths.root)))
                for key, reason in combined.rejected.items()}
    alone: set[int] = set()  # judged one by one with the per-batch suite
    pieces: list[Piece] = []
    for piece in combined.pieces:
        try:
            odd = suspects(piece, schema, ingest)
            cleaned = set_aside(piece, odd, schema, normalise)
        except Exception:  # noqa: BLE001 - the piece's batches are judged one by one, which names the bad one
            log.info("could not set suspects aside; checking %d batches one by one", len(piece.members))
            odd, cleaned = set(piece.members), None
        alone |= odd
        if cleaned is not None:
            pieces.append(cleaned)
    frame, keys = pd.DataFrame(), np.zeros(0, dtype=np.int64)
    if pieces:
        frame, keys = _bulk_rows(pieces)
        attribution = _validate_bulk(run, frame, keys, batches, chunk)
        if attribution.unattributed:
            alone |= {int(k) for p in pieces for k in p.members}
        for key, results in attribution.failed.items():
            if key not in alone:
                reason = describe_failures(results, schema) or "validation failed (see the GX result)"
                rejected[key] = (reason, _bulk_evidence(run, batches[key], results, chunk))
    passed: list[tuple[int, pd.DataFrame]] = []
    for key in sorted(alone):
        checked, reason, evidence = _check_one(run, batches[key])
        if checked is None:
            rejected[key] = (reason, evidence)
        else:
            passed.append((key, checked))
    for key in sorted(rejected):
        _reject(run, batches[key].item, batches[key].batch_id, *rejected[key])
    out = set(rejected) | alone
    good = ~np.isin(keys, np.fromiter(out, dtype=np.int64, count=len(out)))
    frames = [frame if good.all() else frame.loc[good]] + [f for _, f in passed]
    all_keys = np.concatenate([keys[good]] + [np.full(len(f), k, dtype=np.int64) for k, f in passed])
    if not len(all_keys):
        return
    curated = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if np.any(np.diff(all_keys) < 0):  # chunk order: earlier batches win repeated events
        order = np.argsort(all_keys, kind="stable")
        curated, all_keys = curated.iloc[order], all_keys[order]
    _curate(run, batches, curated.reset_index(drop=True), all_keys)


def _build_docs(run: _Run) -> str | None:
    """Data Docs into data/reports/ingest/data_docs, built in a staging folder and swapped in."""
    if not run.params.ingest.data_docs:
        return None
    target = run.paths.reports / "ingest" / DOCS_FOLDER
    staging, old = target.with_name(f".{DOCS_FOLDER}.staging"), target.with_name(f".{DOCS_FOLDER}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    run.bulk.build_docs(staging)
    make_site_offline(staging)  # GX pages load CDN assets; ours must open on a closed network
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return str(target / "index.html")


def retry_items(run: _Run) -> list[Found]:
    """Every batch still quarantined, as items to judge again (their raw copies), sorted by device and
    batch. Also completes the record of a batch a crashed retry committed but did not mark."""
    curated = curated_keys(run.paths.curated)
    items: list[Found] = []
    for device_id, bid, _ in iter_quarantined(run.quarantine):  # type: ignore[arg-type]  # a UPath walks alike
        folder = run.quarantine / device_id
        if (device_id, bid) in curated:
            if not is_marked_curated(folder, bid):
                mark_curated(folder, bid, run.at)
            continue
        copy = raw_copy(folder, bid) if device_id != UNSORTED else None
        if copy is None:
            run.counts["retry_impossible"] += 1
            continue
        items.append(Found(copy, -1, device_id, extension_of(copy)))
        run.retrying.add((device_id, bid))
    run.done.difference_update(run.retrying)
    return items


def _summary(run: _Run, metrics: dict[str, Any], seconds: float, docs: str | None) -> dict[str, Any]:
    new = run.counts
    retried = new["retried_curated"] + new["retried_still_quarantined"]
    return {
        **metrics,
        "new_batches": new["curated"] - new["retried_curated"] + new["quarantined"],
        "new_curated": new["curated"] - new["retried_curated"],
        "new_quarantined": new["quarantined"],
        "retried": retried,
        "retried_curated": new["retried_curated"],
        "retried_rows": new["retried_rows"],
        "retried_still_quarantined": new["retried_still_quarantined"],
        "retry_impossible": new["retry_impossible"],
        "new_rows": new["rows"] - new["retried_rows"],
        "new_duplicates_dropped": new["duplicates_dropped"],
        "skipped_already_done": new["skipped"],
        "chunks": new["chunks"],
        "event_time_bounds": [run.bounds.earliest.isoformat(), run.bounds.latest.isoformat()],
        "quarantined_batches": run.quarantined,
        "seconds": round(seconds, 3),
        "metrics_file": str(run.paths.metrics / METRICS_FILE),
        "data_docs": docs,
    }


def ingest(params: Params, paths: Paths, clock: Clock = utc_now, retry: bool = False) -> dict[str, Any]:
    """The run itself, under the lock; see the module docstring."""
    started = time.perf_counter()
    now = clock()
    curated, quarantined = paths.curated, quarantine_root(params, paths)
    removed = remove_temp_files(curated, quarantined)
    if removed:
        log.info("removed %d temp files left by an interrupted run", removed)
    bounds = TimeBounds.for_run(params.ingest, now)
    name = "ingest-" + now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run = _Run(params, paths, quarantined, done_keys(curated, quarantined), curated_ids(curated, params.schema),
               bounds, name, text_columns(params), at=now.astimezone(dt.UTC).isoformat(timespec="seconds"))
    items = retry_items(run) if retry else []
    pending: list[Loaded] = []
    rows = 0
    for batch in _read_all(run, items + discover(source_locations(params, paths))):
        pending.append(batch)
        rows += batch.rows
        if len(pending) >= params.ingest.chunk_batches or rows >= params.ingest.chunk_rows:
            run.counts["chunks"] += 1
            _process_chunk(run, pending, run.counts["chunks"])
            pending, rows = [], 0
    if pending:
        run.counts["chunks"] += 1
        _process_chunk(run, pending, run.counts["chunks"])
    docs = _build_docs(run)
    metrics = totals(curated, quarantined)
    write_text_atomic(paths.metrics / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return _summary(run, metrics, time.perf_counter() - started, docs)


def main(params: Params, paths: Paths, clock: Clock = utc_now, retry_quarantined: bool = False) -> dict[str, Any]:
    """Ingest every new batch from the sources; returns totals, this run's counts and rejections.

    ``clock`` gives the run's time (event times later than it plus ``ingest.max_future_s`` are rejected).
    ``retry_quarantined`` first judges every batch still in quarantine again (module docstring).
    """
    # DVC declares these folders as outputs: they exist even when nothing has landed in them yet.
    for folder in (paths.curated, paths.quarantine, paths.reports / "ingest"):
        folder.mkdir(parents=True, exist_ok=True)
    with run_lock(paths.data):  # data/.ingest.lock: outside the DVC outputs
        return ingest(params, paths, clock, retry_quarantined)
