"""The hub's pure body checks (hub.checks), without HTTP: headers, bounded gzip decoding, digest,
Parquet/CSV structure against the repository's data schema, and summary documents.

Each refusal is checked by its reason (what the route maps to a status code and counts in metrics) and,
where the device needs it to fix its batch, by what the detail names.
"""

from __future__ import annotations

import gzip
import hashlib
import io

import pandas as pd
import pytest

from edge.contracts.schema import DataSchema, parse_schema
from edge.contracts.wire import CSV, JSON, PARQUET_TYPES, UPLOAD_MEDIA_TYPES
from edgeloop.testkit.project import repo_params_raw
from edgeloop.testkit.synthetic import make_rows
from hub.checks.batches import batch_rows, csv_rows, extension_for, parquet_rows
from hub.checks.decoding import BoundedBody
from hub.checks.digest import check_digest
from hub.checks.headers import idempotency_key, is_gzip, media_type, within_announced_limit
from hub.checks.refusal import Refused
from hub.checks.summaries import check_summary
from simulator.batches import encode_batch

KEY = "ab" * 32


@pytest.fixture(scope="module")
def schema() -> DataSchema:
    return parse_schema(repo_params_raw()["schema"])


def refused(call, *args, **kwargs) -> Refused:
    with pytest.raises(Refused) as caught:
        call(*args, **kwargs)
    return caught.value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


# --- headers ---------------------------------------------------------------------------------------

def test_the_idempotency_key_is_a_lowercase_sha256() -> None:
    assert idempotency_key(KEY) == KEY
    for bad in (None, "", KEY.upper(), KEY[:-1], KEY + "0", "../" + KEY[3:], KEY[:-1] + "g"):
        assert refused(idempotency_key, bad).reason == "bad_key", bad


def test_media_types_are_bare_lowercase_and_named_when_refused() -> None:
    assert media_type("Text/CSV; charset=utf-8", UPLOAD_MEDIA_TYPES) == CSV
    assert media_type(PARQUET_TYPES[1], UPLOAD_MEDIA_TYPES) == PARQUET_TYPES[1]
    wrong = refused(media_type, "text/plain", UPLOAD_MEDIA_TYPES)
    assert wrong.reason == "content_type"
    assert wrong.detail == f"Content-Type must be one of: {', '.join(UPLOAD_MEDIA_TYPES)}"
    assert refused(media_type, None, (JSON,)).detail == f"Content-Type must be {JSON}"


def test_an_announced_length_over_the_limit_is_refused_before_reading() -> None:
    within_announced_limit("10", 10, "batch")
    for harmless in (None, "", "abc", "-5"):  # the streamed size is checked anyway
        within_announced_limit(harmless, 10, "batch")
    over = refused(within_announced_limit, "11", 10, "summary")
    assert over.reason == "too_large" and over.detail == "summary larger than 10 bytes"


def test_content_encoding_is_gzip_or_absent() -> None:
    assert is_gzip(None) is False and is_gzip("identity") is False and is_gzip(" GZip ") is True
    for other in ("br", "deflate", "gzip, br", ""):
        assert refused(is_gzip, other).reason == "content_encoding", other


# --- decoding --------------------------------------------------------------------------------------

def test_a_plain_body_is_bounded_while_it_streams() -> None:
    body = BoundedBody(10, "batch")
    body.feed(b"12345")
    body.feed(b"67890")
    assert body.finish() == b"1234567890"  # exactly the limit is fine
    over = BoundedBody(10, "batch")
    over.feed(b"123456")
    assert refused(over.feed, b"78901").reason == "too_large"


def test_gzip_is_decoded_in_any_chunking_and_bounded_by_decoded_bytes() -> None:
    data = bytes(range(256)) * 40
    wire = gzip.compress(data, mtime=0)
    body = BoundedBody(len(data), "batch", gzip=True)
    for i in range(0, len(wire), 7):
        body.feed(wire[i:i + 7])
    assert body.finish() == data
    bomb = gzip.compress(b"\0" * 1_000_000, mtime=0)
    bounded = BoundedBody(10_000, "batch", gzip=True)
    assert len(bomb) < 10_000 and refused(bounded.feed, bomb).reason == "too_large"  # refused decoded, not on wire


def test_corrupt_or_truncated_gzip_is_unreadable() -> None:
    assert refused(BoundedBody(100, "batch", gzip=True).feed, b"\x1f\x8bnot gzip at all").reason == "unreadable"
    cut = BoundedBody(10_000, "batch", gzip=True)
    cut.feed(gzip.compress(b"x" * 5000)[:-8])
    truncated = refused(cut.finish)
    assert truncated.reason == "unreadable" and "truncated" in truncated.detail


# --- digest and summaries --------------------------------------------------------------------------

def test_the_key_must_be_the_bodys_sha256() -> None:
    body = b'{"rows": 3}'
    check_digest(body, hashlib.sha256(body).hexdigest(), "JSON object")
    empty = refused(check_digest, b"", KEY, "JSON object")
    assert empty.reason == "empty" and empty.detail == "empty body: send one JSON object"
    assert refused(check_digest, body, KEY, "JSON object").reason == "key_mismatch"


def test_a_summary_is_a_utf8_json_object() -> None:
    check_summary(b'{"rows": 5000, "accuracy": 0.93}')
    for bad in (b"[1, 2]", b'"text"', b"{not json", b'{"a": "\xff"}', b"[" * 100_000 + b"]" * 100_000):
        assert refused(check_summary, bad).reason == "unreadable", bad[:20]


# --- batch structure -------------------------------------------------------------------------------

def test_parquet_structure_counts_rows_and_names_the_bad_column(schema: DataSchema) -> None:
    frame = make_rows(schema, "press-1", 30, 0)
    assert parquet_rows(encode_batch(frame), schema) == 30
    feature = schema.feature_names[0]
    missing = refused(parquet_rows, encode_batch(frame.drop(columns=[feature])), schema)
    assert missing.reason == "schema" and repr(feature) in missing.detail
    as_text = refused(parquet_rows, encode_batch(frame.assign(**{feature: frame[feature].astype(str)})), schema)
    assert as_text.reason == "schema" and "expected a number" in as_text.detail
    assert refused(parquet_rows, encode_batch(frame.iloc[:0]), schema).reason == "no_rows"
    garbage = refused(parquet_rows, b"PAR1 not really PAR1", schema)
    assert garbage.reason == "unreadable" and "Parquet" in garbage.detail


def test_csv_structure_counts_records_like_ingest(schema: DataSchema) -> None:
    frame = make_rows(schema, "press-1", 12, 1)
    body = csv_bytes(frame)
    assert csv_rows(body, schema) == 12
    assert csv_rows(b"\xef\xbb\xbf" + body + b"\n\n", schema) == 12  # BOM and trailing blank lines
    header, first, *rest = body.decode().splitlines()
    quoted = "\n".join([header + ",note", first + ',"two\nlines"', *rest]).encode()
    assert csv_rows(quoted, schema) == 12  # a quoted newline is inside one row


def test_csv_structure_refusals_say_what_is_wrong(schema: DataSchema) -> None:
    frame = make_rows(schema, "press-1", 5, 2)
    body = csv_bytes(frame)
    header = body.split(b"\n", 1)[0]
    label = schema.label.name
    assert refused(csv_rows, csv_bytes(frame.drop(columns=[label])), schema).detail == f"missing column {label!r}"
    twice = refused(csv_rows, header + b"," + label.encode() + b"\n" + body.split(b"\n", 1)[1], schema)
    assert twice.reason == "schema" and "more than once" in twice.detail
    wide = refused(csv_rows, body + b"1,2,3," * 40 + b"\n", schema)
    assert wide.reason == "unreadable" and "CSV line 7" in wide.detail
    latin = refused(csv_rows, header + b"\n\xe9\n", schema)
    assert latin.reason == "unreadable" and "0xe9" in latin.detail
    assert refused(csv_rows, body.replace(b"\n", b"\x00\n", 1), schema).reason == "unreadable"
    assert refused(csv_rows, header + b"\n", schema).reason == "no_rows"
    assert refused(csv_rows, b"\n\n", schema).reason == "unreadable"


def test_the_media_type_chooses_the_extension_and_the_check(schema: DataSchema) -> None:
    assert extension_for(CSV) == "csv" and {extension_for(m) for m in PARQUET_TYPES} == {"parquet"}
    frame = make_rows(schema, "press-1", 4, 3)
    assert batch_rows(csv_bytes(frame), extension_for(CSV), schema) == 4
    assert batch_rows(encode_batch(frame), extension_for(PARQUET_TYPES[0]), schema) == 4
    assert refused(batch_rows, encode_batch(frame), extension_for(CSV), schema).reason == "unreadable"
