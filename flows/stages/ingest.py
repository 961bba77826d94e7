"""ingest: every new batch in the landing zones ends curated once or quarantined once, nothing lost.

Reads each folder in ``params.ingest.sources`` (laid out ``<device_id>/<file>.{parquet,csv}``), in a
deterministic order (device, file name, source order). A batch ``(device_id, sha256 of its bytes)``
is done when ``data/curated/parts/<device_id>/<batch_id>.parquet`` exists (the atomic write is the
commit) or when ``data/quarantine/<device_id>/<batch_id>.reason.txt`` exists (written last). So a
rerun, or a rerun after a crash, skips what is done and finishes the rest. Per batch: size check,
read, normalise, validate with one GX suite built from ``params.schema`` (context and suites built
once per run), drop events already curated from earlier batches, commit. Writes
``data/metrics/ingest.json`` (totals derived from the folders) and Data Docs. Never modifies or deletes
a source file. Does not split, train or judge drift; does not import Prefect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.layout import Paths
from edge.contracts.names import BATCH_ID_PATTERN
from edge.contracts.record import MODEL_VERSION, PREDICTION, batch_id
from flows.ingest.discover import Found, discover, source_locations
from flows.ingest.ledger import done_keys, remove_temp_files, run_lock, totals
from flows.ingest.normalise import normalise
from flows.ingest.offline_docs import make_site_offline
from flows.ingest.quarantine import not_validated, one_line, quarantine, quarantine_root
from flows.ingest.reader import Unreadable, read_batch
from flows.ingest.store import curated_events, curated_frame, drop_seen, part_path, write_part
from flows.ingest.validate import BatchValidator
from flows.params import Params

log = logging.getLogger(__name__)

METRICS_FILE = "ingest.json"
DOCS_FOLDER = "data_docs"


@dataclass
class _Run:
    """State of one ingest run: what is done, which events are curated, this run's counts."""

    params: Params
    paths: Paths
    done: set[tuple[str, str]]
    seen: dict[str, set[object]]
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    _validator: BatchValidator | None = None

    @property
    def validator(self) -> BatchValidator:
        if self._validator is None:  # built once, on first use: GX costs seconds to import
            self._validator = BatchValidator(self.params.schema, self.params.ingest)
        return self._validator


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _precheck(item: Found, bid: str, size: int, max_bytes: int) -> str | None:
    """Why the file cannot be read as a batch at all, or None."""
    if item.problem is not None:
        return item.problem
    if size > max_bytes:
        return f"file is {size} bytes, above ingest.max_bytes ({max_bytes}); not read"
    stem = item.path.stem
    if BATCH_ID_PATTERN.match(stem) and stem != bid:
        return f"content does not match its batch id (named {stem[:12]}..., bytes hash to {bid[:12]}...)"
    return None


def _text_columns(params: Params) -> list[str]:
    """CSV columns read as text: device ids ("007" stays "007"), model versions ("7" is a version, not a
    number: edge runners upload CSV) and string class labels with the predictions made of them."""
    schema = params.schema
    text = [schema.device_id, MODEL_VERSION]
    if isinstance(schema.label.classes[0], str):
        text += [schema.label.name, PREDICTION]
    return text


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the project root when it is inside it (shorter in logs and artifacts)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _reject(run: _Run, item: Found, bid: str, reason: str, result: dict[str, Any]) -> None:
    folder = quarantine_root(run.params, run.paths) / item.device_id
    quarantine(folder, bid, item.extension, item.path, result, reason)
    run.counts["quarantined"] += 1
    source = _shown(item.path, run.paths.root)
    entry = {"device_id": item.device_id, "batch_id": bid, "source": source, "reason": one_line(reason)}
    run.quarantined.append(entry)
    log.warning("quarantined %s/%s: %s", item.device_id, bid[:12], entry["reason"])


def _curate(run: _Run, item: Found, bid: str, frame: pd.DataFrame) -> None:
    schema = run.params.schema
    frame = curated_frame(frame, schema)
    frame, dropped = drop_seen(frame, schema.event_id, run.seen.setdefault(item.device_id, set()))
    write_part(part_path(run.paths.curated, item.device_id, bid), frame, dropped)
    run.counts["curated"] += 1
    run.counts["rows"] += len(frame)
    run.counts["duplicates_dropped"] += dropped


def _check(run: _Run, item: Found, bid: str, body: bytes) -> tuple[pd.DataFrame | None, str, dict[str, Any]]:
    """(frame, "", {}) for a batch that passed; (None, reason, evidence) for one that did not.

    Any unexpected error on one file's contents also rejects that file (logged with its traceback):
    a single poisonous upload must not stop every future run at the same place.
    """
    schema, shown = run.params.schema, _shown(item.path, run.paths.root)
    try:
        raw = read_batch(body, item.extension, _text_columns(run.params), schema.column_names)
        frame = normalise(raw, schema)
        verdict = run.validator.validate(frame, item.device_id, run_name=f"{item.device_id}.{bid[:16]}")
    except Unreadable as exc:
        return None, str(exc), not_validated(str(exc), shown)
    except Exception as exc:  # one poisonous file must not block every run; traceback goes to the log
        log.exception("unexpected error while checking %s", shown)
        reason = f"could not be processed ({type(exc).__name__}: {str(exc).strip()[:200]})"
        return None, reason, not_validated(reason, shown)
    if not verdict.success:
        return None, verdict.reason, verdict.result
    return frame, "", {}


def _validate_and_store(run: _Run, item: Found, bid: str, body: bytes) -> None:
    frame, reason, evidence = _check(run, item, bid, body)
    if frame is None:
        _reject(run, item, bid, reason, evidence)
    else:
        _curate(run, item, bid, frame)


def process(run: _Run, item: Found) -> None:
    """Curate or quarantine one file, unless its (device, batch id) is already done."""
    size = item.path.stat().st_size
    max_bytes = run.params.ingest.max_bytes
    body = item.path.read_bytes() if size <= max_bytes and item.problem is None else None
    bid = batch_id(body) if body is not None else _sha256_file(item.path)
    key = (item.device_id, bid)
    if key in run.done:
        run.counts["skipped"] += 1
        return
    run.done.add(key)
    reason = _precheck(item, bid, size, max_bytes)  # never None when the body was not read
    if reason is not None or body is None:
        reason = reason or "not read"
        _reject(run, item, bid, reason, not_validated(reason, _shown(item.path, run.paths.root)))
    else:
        _validate_and_store(run, item, bid, body)


def _build_docs(run: _Run) -> str | None:
    """Data Docs into data/reports/ingest/data_docs, built in a staging folder and swapped in."""
    if not run.params.ingest.data_docs:
        return None
    target = run.paths.reports / "ingest" / DOCS_FOLDER
    staging, old = target.with_name(f".{DOCS_FOLDER}.staging"), target.with_name(f".{DOCS_FOLDER}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    run.validator.build_docs(staging)
    make_site_offline(staging)  # GX pages load CDN assets; ours must open on a closed network
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return str(target / "index.html")


def _summary(run: _Run, metrics: dict[str, Any], seconds: float, docs: str | None) -> dict[str, Any]:
    new = run.counts
    return {
        **metrics,
        "new_batches": new["curated"] + new["quarantined"],
        "new_curated": new["curated"],
        "new_quarantined": new["quarantined"],
        "new_rows": new["rows"],
        "new_duplicates_dropped": new["duplicates_dropped"],
        "skipped_already_done": new["skipped"],
        "quarantined_batches": run.quarantined,
        "seconds": round(seconds, 3),
        "metrics_file": str(run.paths.metrics / METRICS_FILE),
        "data_docs": docs,
    }


def ingest(params: Params, paths: Paths) -> dict[str, Any]:
    """The run itself, under the lock; see the module docstring."""
    started = time.perf_counter()
    curated, quarantined = paths.curated, quarantine_root(params, paths)
    removed = remove_temp_files(curated, quarantined)
    if removed:
        log.info("removed %d temp files left by an interrupted run", removed)
    run = _Run(params, paths, done_keys(curated, quarantined), curated_events(curated, params.schema.event_id))
    for item in discover(source_locations(params, paths)):
        process(run, item)
    docs = _build_docs(run)
    metrics = totals(curated, quarantined)
    write_text_atomic(paths.metrics / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return _summary(run, metrics, time.perf_counter() - started, docs)


def main(params: Params, paths: Paths) -> dict[str, Any]:
    """Ingest every new batch from the sources; returns totals, this run's counts and rejections."""
    # DVC declares these folders as outputs: they exist even when nothing has landed in them yet.
    for folder in (paths.curated, paths.quarantine, paths.reports / "ingest"):
        folder.mkdir(parents=True, exist_ok=True)
    with run_lock(paths.data):  # data/.ingest.lock: outside the DVC outputs
        return ingest(params, paths)
