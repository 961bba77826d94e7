"""Stream mode: rows on stdin (CSV with a header, or JSON lines), one prediction per line on stdout.

Input formats:
- JSON lines: each line an object keyed by feature name (an ``event_id`` key, if present, is passed
  through; any other unknown key is an error) or an array in the model's feature order.
- CSV: a header row naming at least every feature (other columns are ignored, ``event_id`` is passed
  through), or ``header=False`` for bare rows in feature order. Empty fields are missing values. A
  header without a column for some feature stops the stream before any output with ``RunnerError``: one
  line naming the missing and unexpected columns and the expected ones.

Output follows the input: JSON lines give one JSON object per row (``label``, ``probabilities``,
``model_version``, ``event_id``, and ``out_of_range`` when non-empty); CSV gives a header
(``event_id,label,p_<class>...,model_version,error``) and one row per input row. A bad row yields an
error line in the same place (so outputs stay aligned with inputs) and a note on stderr; the stream goes
on. Each output line is flushed as it is written.

Leaves out: spooling and uploading (stream mode only scores), and model updates: the model is the one
``current`` points at when the stream starts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import TextIO

from edge.config import RunnerConfig
from edge.control import RunnerError
from edge.inference import InputError, Predictor

__all__ = ["stream_predictions"]

EVENT_ID = "event_id"


def stream_predictions(config: RunnerConfig, source: TextIO, sink: TextIO, notes: TextIO, fmt: str = "auto",
                       header: bool = True) -> int:
    """Score every row of ``source``; returns the number of rows that could not be scored."""
    from edge.control import load_active_predictor

    predictor = load_active_predictor(config)
    lines = iter(source)
    first = next(lines, None)
    if first is None:
        return 0
    if fmt == "auto":
        fmt = "jsonl" if first.lstrip().startswith(("{", "[")) else "csv"
    chained = _chain(first, lines)
    if fmt == "jsonl":
        return _jsonl(predictor, chained, sink, notes)
    return _csv(predictor, chained, sink, notes, header)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _jsonl(predictor: Predictor, lines: Iterator[str], sink: TextIO, notes: TextIO) -> int:
    bad = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            event_id = None
            if isinstance(row, dict) and EVENT_ID in row:
                row = dict(row)
                event_id = _event_id(row.pop(EVENT_ID))
            out = predictor.predict(row, event_id).to_json_dict()
        except (ValueError, InputError) as exc:  # json.JSONDecodeError is a ValueError
            bad += 1
            message = f"line {number}: {exc}"
            notes.write(f"edge-runner: {message}\n")
            out = {"error": message}
        sink.write(json.dumps(out, separators=(",", ":")) + "\n")
        sink.flush()
    return bad


def _event_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"event_id: expected a non-negative integer, got {value!r}", EVENT_ID)
    return value


def _csv(predictor: Predictor, lines: Iterator[str], sink: TextIO, notes: TextIO, header: bool) -> int:
    names = predictor.manifest.feature_names
    classes = predictor.manifest.classes
    reader = csv.reader(lines)
    positions: list[int] = list(range(len(names)))
    event_position: int | None = None
    if header:
        head = next(reader, None)
        if head is None:
            return 0
        problem = _header_problem(head, names, predictor.version)
        if problem is not None:
            raise RunnerError(problem)
        positions = [head.index(n) for n in names]
        event_position = head.index(EVENT_ID) if EVENT_ID in head else None
    writer = csv.writer(buffer := io.StringIO(), lineterminator="\n")
    writer.writerow([EVENT_ID, "label", *(f"p_{c}" for c in classes), "model_version", "error"])
    _flush(buffer, sink)
    bad = 0
    for number, fields in enumerate(reader, start=2 if header else 1):
        if not fields:
            continue
        try:
            if len(fields) <= max(positions) or (event_position is not None and len(fields) <= event_position):
                raise InputError(f"expected at least {max(positions) + 1} fields, got {len(fields)}")
            values = [_csv_value(fields[i], n) for i, n in zip(positions, names, strict=True)]
            event_id = None if event_position is None or not fields[event_position] else \
                _event_id(int(fields[event_position]))
            p = predictor.predict(values, event_id)
            writer.writerow([p.event_id, p.label, *(repr(p.probabilities[c]) for c in classes), p.model_version, ""])
        except (ValueError, InputError) as exc:
            bad += 1
            message = f"line {number}: {exc}"
            notes.write(f"edge-runner: {message}\n")
            writer.writerow(["", "", *("" for _ in classes), "", message])
        _flush(buffer, sink)
    return bad


def _header_problem(head: list[str], names: list[str], version: str) -> str | None:
    """One line naming the features the CSV header lacks, the columns it has instead, and the expected
    ones; None when every feature has a column."""
    missing = [n for n in names if n not in head]
    if not missing:
        return None
    unexpected = [h for h in head if h not in names and h != EVENT_ID]
    return (f"the CSV header does not match model {version}: missing {', '.join(missing)}"
            + (f"; unexpected {', '.join(unexpected)}" if unexpected else "")
            + f"; expected the columns {', '.join(names)} (optionally {EVENT_ID}; other columns are ignored)")


def _csv_value(text: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{name}: expected a number, got {text[:40]!r}", name) from None


def _flush(buffer: io.StringIO, sink: TextIO) -> None:
    sink.write(buffer.getvalue())
    sink.flush()
    buffer.seek(0)
    buffer.truncate()
