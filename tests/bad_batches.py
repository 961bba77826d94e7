"""Test helper: good ground-truth batches for any schema, and a corpus of bad ones for ingest tests.

``good_frame`` draws rows with numpy from the schema alone (ranges, dtypes, classes), so it works for
any params.yaml schema; it is not the plant simulator. ``bad_corpus`` returns one file per way a batch
can be broken, each with the words its quarantine reason must contain. Writes nothing by itself
except through ``place``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge.contracts.record import batch_id
from edge.contracts.schema import DataSchema
from simulator.batches import encode_batch


def good_frame(
    schema: DataSchema, device_id: str, rows: int = 40, seed: int = 0, first_event: int = 0, record: bool = True
) -> pd.DataFrame:
    """Valid rows for ``device_id``: event ids ``first_event...``, one minute apart from 2026-01-01."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for feature in schema.features:
        low = feature.min if feature.min is not None else 0.0
        high = feature.max if feature.max is not None else low + 100.0
        values = rng.uniform(low, high, rows)
        data[feature.name] = np.floor(values).astype("int64") if feature.dtype == "int" else values
    classes = list(schema.label.classes)
    picks = rng.integers(0, len(classes), rows)
    data[schema.label.name] = [classes[i] for i in picks]
    data[schema.event_id] = np.arange(first_event, first_event + rows, dtype="int64")
    data[schema.device_id] = device_id
    start = pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=first_event)
    data[schema.event_time] = pd.date_range(start, periods=rows, freq="min")
    if record:
        probabilities = rng.dirichlet(np.ones(len(classes)), rows)
        data["model_version"] = "v0"
        data["prediction"] = [classes[i] for i in probabilities.argmax(axis=1)]
        data["probabilities"] = [list(p) for p in probabilities]
        data["upload_reason"] = rng.choice(["labelled", "uncertain", "anomaly", "random"], rows)
        data["inclusion_probability"] = rng.uniform(0.05, 1.0, rows)
    return pd.DataFrame(data)


def to_csv(frame: pd.DataFrame) -> str:
    """CSV text the way a person would export it: ISO times, probabilities as JSON lists."""
    out = frame.copy()
    if "probabilities" in out:
        out["probabilities"] = [json.dumps([float(x) for x in p]) for p in out["probabilities"]]
    for name in out.columns:
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(out.to_csv(index=False))


@dataclass(frozen=True)
class Bad:
    kind: str
    relpath: str  # relative to a source folder
    body: bytes
    expect: tuple[str, ...]  # words the one-line reason must contain
    device_folder: str  # where the quarantine entry lands (device id or "_unsorted")

    @property
    def batch_id(self) -> str:
        return batch_id(self.body)

    @property
    def extension(self) -> str:
        suffix = Path(self.relpath).suffix[1:].lower()
        return suffix or "bin"


def place(root: Path, relpath: str, body: bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def _parquet(device: str, kind: str, body: bytes, *expect: str) -> Bad:
    return Bad(kind, f"{device}/{batch_id(body)}.parquet", body, expect, device)


def _csv(device: str, kind: str, body: bytes, *expect: str) -> Bad:
    return Bad(kind, f"{device}/{kind}.csv", body, expect, device)


def _frame_cases(schema: DataSchema, device: str, base: pd.DataFrame) -> list[Bad]:
    """Frames that read fine but break one expectation each."""
    first = schema.features[0]
    ranged = next(f for f in schema.features if f.max is not None)
    assert ranged.max is not None
    label, eid = schema.label.name, schema.event_id
    cases: list[tuple[str, pd.DataFrame, tuple[str, ...]]] = []
    f = base.copy()
    f.loc[3, ranged.name] = ranged.max + 1000
    cases.append(("out_of_range", f, (ranged.name, "1 value outside")))
    f = base.copy()
    f.loc[2, label] = "zzz" if isinstance(schema.label.classes[0], str) else 7
    cases.append(("label_not_in_classes", f, (label, "not in classes")))
    f = base.copy()
    f[label] = f[label].astype(object)
    f.loc[4, label] = None
    cases.append(("label_missing", f, (label, "1 value missing")))
    cases.append(("missing_column", base.drop(columns=[first.name]), ("missing column", first.name)))
    f = base.copy()
    f.loc[5, eid] = f.loc[6, eid]
    cases.append(("duplicate_event", f, (f"{schema.device_id}+{eid}", "repeated event id")))
    f = base.copy()
    f[eid] = f[eid].astype(object)
    f.loc[1, eid] = None
    cases.append(("event_id_missing", f, (eid, "1 value missing")))
    f = base.copy()
    f.loc[0, schema.device_id] = "someone-else"
    cases.append(("wrong_device", f, (schema.device_id, "from another device", "someone-else")))
    f = base.copy()
    f.loc[0, "upload_reason"] = "because"
    cases.append(("bad_upload_reason", f, ("upload_reason", "because")))
    f = base.copy()
    f.loc[0, "inclusion_probability"] = 0.0
    cases.append(("bad_inclusion_probability", f, ("inclusion_probability", "outside (0, 1]")))
    cases.append(("zero_rows", base.iloc[:0], ("0 rows", "expected between")))
    return [_parquet(device, kind, encode_batch(frame), *expect) for kind, frame, expect in cases]


def _byte_cases(schema: DataSchema, device: str, base: pd.DataFrame) -> list[Bad]:
    """Files whose bytes cannot become a table, or that are not where a batch may be."""
    good = encode_batch(base)
    text = to_csv(base)
    first = schema.features[0].name
    broken_number = base.copy().astype({first: object})
    broken_number.loc[2, first] = "broken"
    fifth = base[schema.event_time].iloc[5].strftime("%Y-%m-%dT%H:%M:%SZ")
    bad_time = text.replace(fifth, "yesterday", 1)
    latin = to_csv(base.assign(model_version="café"))
    wrong_name = f"{device}/{'0' * 64}.parquet"
    return [
        _parquet(device, "empty", b"", "empty file"),
        _parquet(device, "truncated_parquet", good[: len(good) // 2], "truncated parquet"),
        Bad(
            "csv_named_parquet",
            f"{device}/{batch_id(text.encode())}.parquet",
            text.encode(),
            ("not a parquet file",),
            device,
        ),
        _csv(device, "utf16_csv", text.encode("utf-16"), "not UTF-8"),
        _csv(device, "latin1_csv", latin.encode("latin-1"), "not UTF-8"),
        _csv(device, "csv_no_header", text.split("\n", 1)[1].encode(), "no header"),
        _csv(device, "csv_unparseable", b'a,b\n1,"never closed\n', "cannot be parsed"),
        _csv(device, "bad_event_time", bad_time.encode(), schema.event_time, "not ISO 8601 timestamps", "yesterday"),
        _csv(device, "non_numeric_feature", to_csv(broken_number).encode(), first, "expected numbers", "broken"),
        Bad("name_does_not_match", wrong_name, good, ("content does not match its batch id",), device),
        Bad("stray_top_level", "notes.parquet", good + b"x", ("not inside a <device_id>/ folder",), "_unsorted"),
        Bad("unsupported_extension", f"{device}/notes.txt", b"hello\n", ("unsupported file type",), "_unsorted"),
        Bad("invalid_device_folder", "bad device!/x.parquet", good + b"y", ("not a valid device id",), "_unsorted"),
    ]


def bad_corpus(schema: DataSchema, device: str = "dev-bad") -> list[Bad]:
    """One bad batch per kind, all for ``device`` (stray files land in _unsorted)."""
    base = good_frame(schema, device, rows=30, seed=11, first_event=10_000)
    return [*_frame_cases(schema, device, base), *_byte_cases(schema, device, base)]


def too_large(schema: DataSchema, device: str, max_bytes: int) -> Bad:
    """A valid batch whose file is larger than ``max_bytes``."""
    rows = 200
    while True:
        body = encode_batch(good_frame(schema, device, rows=rows, seed=5, first_event=50_000))
        if len(body) > max_bytes:
            return _parquet(device, "too_large", body, "above ingest.max_bytes")
        rows *= 2
