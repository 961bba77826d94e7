"""Bulk ingest: batches validated together, bad ones still quarantined alone, and the two acceptance defects.

Real Great Expectations and real files under tmp_path. Covers: a bad batch among good ones is rejected
with the words the per-batch suite would use while its neighbours are committed together; chunking
keeps the same result; a batch with event times in the future (2099) or before ``ingest.min_event_time``
is quarantined and can never become the holdout; event ids that are text or negative are quarantined
and never break a later split; split names a curated file of the wrong type in one line; ids from a
nanosecond clock stay exact; a fleet-wide failure is attributed from the one bulk validation.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.record import batch_id
from edgeloop.testkit.project import override
from flows.dataset import load_curated
from flows.ingest import store
from flows.ingest.attribute import attribute
from flows.ingest.normalise import normalise
from flows.ingest.offline_docs import remote_loads
from flows.ingest.reasons import describe_failures
from flows.ingest.suite import BATCH_KEY, FOLDER_DEVICE
from flows.ingest.validate import BatchValidator, BulkValidator, TimeBounds
from flows.params import Params, parse_params
from flows.stages import ingest as stage
from flows.stages import split
from simulator.batches import write_batch
from tests.bad_batches import good_frame, place, to_csv

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # the runs' clock: good_frame times are 2026-01..02


def clock() -> dt.datetime:
    return NOW


def make_params(raw: dict[str, Any], **dotted: Any) -> Params:
    settings = {"ingest.sources": ["data/uploads"], "ingest.data_docs": False}
    settings.update({k.replace("__", "."): v for k, v in dotted.items()})
    return parse_params(override(raw, settings))


@pytest.fixture
def params(raw_params: dict[str, Any]) -> Params:
    return make_params(raw_params)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.at(tmp_path)


def land(paths: Paths, device: str, frame: pd.DataFrame) -> str:
    return batch_id(write_batch(paths.uploads, device, frame).read_bytes())


def reasons_by_batch(summary: dict[str, Any]) -> dict[str, str]:
    return {q["batch_id"]: q["reason"] for q in summary["quarantined_batches"]}


def evidence(paths: Paths, device: str, bid: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((paths.quarantine / device / f"{bid}.gx.json").read_text())
    return result


def test_future_and_ancient_event_times_are_quarantined_and_never_become_the_holdout(
    raw_params: dict[str, Any], paths: Paths
) -> None:
    params = make_params(raw_params, split__strategy="time")  # the holdout is the newest rows
    schema = params.schema
    for seed in range(3):
        land(paths, f"dev-{seed}", good_frame(schema, f"dev-{seed}", rows=40, seed=seed))
    future = good_frame(schema, "dev-clock", rows=40, seed=7)
    future[schema.event_time] = pd.date_range("2099-01-01", periods=40, freq="min", tz="UTC")
    future_id = land(paths, "dev-clock", future)
    ancient = good_frame(schema, "dev-clock", rows=10, seed=8, first_event=500)
    ancient.loc[3, schema.event_time] = pd.Timestamp("1990-05-01T00:00:00Z")
    ancient_id = land(paths, "dev-clock", ancient)
    skewed = good_frame(schema, "dev-skew", rows=10, seed=9)  # 30 minutes ahead of the run's clock: accepted
    skewed[schema.event_time] = pd.date_range(NOW + dt.timedelta(minutes=30), periods=10, freq="s")
    land(paths, "dev-skew", skewed)

    summary = stage.main(params, paths, clock=clock)

    reasons = reasons_by_batch(summary)
    assert summary["new_curated"] == 4 and set(reasons) == {future_id, ancient_id}
    assert reasons[future_id] == (
        "event_time: 40 values in the future (later than 2026-06-01T13:00:00Z: the ingest clock plus "
        "ingest.max_future_s) (e.g. 2099-01-01T00:00:00Z)"
    )
    assert reasons[ancient_id] == (
        "event_time: 1 value before ingest.min_event_time (2000-01-01T00:00:00Z) (e.g. 1990-05-01T00:00:00Z)"
    )
    assert evidence(paths, "dev-clock", future_id)["validation"] == "bulk"  # attributed, not validated again
    split.main(params, paths)
    holdout = pd.read_parquet(paths.split / "holdout.parquet")
    assert holdout[schema.event_time].max() == skewed[schema.event_time].max()  # the newest legitimate row
    assert "dev-clock" not in set(holdout[schema.device_id])


def test_max_future_s_is_the_allowed_clock_skew(raw_params: dict[str, Any], paths: Paths) -> None:
    params = make_params(raw_params, ingest__max_future_s=60)
    schema = params.schema
    ahead = good_frame(schema, "dev-a", rows=5)
    ahead[schema.event_time] = pd.date_range(NOW + dt.timedelta(minutes=5), periods=5, freq="s")
    bid = land(paths, "dev-a", ahead)
    summary = stage.main(params, paths, clock=clock)
    assert list(reasons_by_batch(summary)) == [bid]
    assert "later than 2026-06-01T12:01:00Z" in reasons_by_batch(summary)[bid]


def _text_ids(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.copy()
    out[column] = [f"evt-{i}" for i in range(len(out))]
    return out


def test_text_or_negative_event_ids_are_quarantined_and_split_keeps_working(params: Params, paths: Paths) -> None:
    schema, eid = params.schema, params.schema.event_id
    good_id = land(paths, "dev-a", good_frame(schema, "dev-a", rows=40, seed=1))
    text_id = land(paths, "dev-b", _text_ids(good_frame(schema, "dev-b", rows=40, seed=2), eid))
    csv = good_frame(schema, "dev-c", rows=20, seed=3)
    csv_body = to_csv(csv).replace(",5,dev-c,", ",five,dev-c,", 1).encode()  # one id written as a word
    place(paths.uploads, "dev-c/edge.csv", csv_body)
    negative = good_frame(schema, "dev-d", rows=20, seed=4)
    negative.loc[2, eid] = -5
    negative_id = land(paths, "dev-d", negative)
    digits = good_frame(schema, "dev-e", rows=20, seed=5).astype({eid: str})  # ids written as digit text: parsed
    digits_id = land(paths, "dev-e", digits)

    summary = stage.main(params, paths, clock=clock)

    reasons = reasons_by_batch(summary)
    assert reasons[text_id] == "event_id: 40 values of the wrong type, expected whole numbers (e.g. 'evt-0')"
    assert reasons[batch_id(csv_body)] == "event_id: 1 value of the wrong type, expected whole numbers (e.g. 'five')"
    assert reasons[negative_id] == "event_id: 1 value outside [0, inf) (e.g. -5)"
    assert good_id not in reasons and digits_id not in reasons and summary["new_curated"] == 2
    split.main(params, paths)  # no pyarrow error: nothing of the wrong type was curated
    frame = load_curated(paths, schema)
    assert frame[eid].dtype == "int64" and len(frame) == 60
    land(paths, "dev-a", good_frame(schema, "dev-a", rows=10, seed=6, first_event=1000))
    assert stage.main(params, paths, clock=clock)["new_curated"] == 1  # later runs are not poisoned
    split.main(params, paths)


def test_split_names_a_curated_file_of_the_wrong_type_in_one_line(params: Params, paths: Paths) -> None:
    schema = params.schema
    land(paths, "dev-a", good_frame(schema, "dev-a", rows=40, seed=1))
    stage.main(params, paths, clock=clock)
    old = _text_ids(good_frame(schema, "dev-old", rows=30, seed=2), schema.event_id)  # curated by an older ingest
    old_bid = land(paths, "dev-old", old)
    legacy = store.part_path(paths.curated, "dev-old", old_bid)
    store.write_part(legacy, old, 0)

    with pytest.raises(UserError) as error:
        split.main(params, paths)

    message = str(error.value)
    assert "\n" not in message and f"parts/dev-old/{old_bid}.parquet: event_id holds string" in message
    assert "expected integer ids" in message
    legacy.rename(paths.root / "kept-aside.parquet")  # what the message tells the user to do
    summary = stage.main(params, paths, clock=clock)
    assert list(reasons_by_batch(summary)) == [old_bid]
    assert split.main(params, paths)["train_rows"] + split.main(params, paths)["holdout_rows"] == 40


def test_one_bad_batch_among_good_ones_is_quarantined_alone_with_the_per_batch_words(
    raw_params: dict[str, Any], paths: Paths
) -> None:
    params = make_params(raw_params, ingest__data_docs=True)
    schema = params.schema
    goods = [land(paths, f"dev-{i % 3}", good_frame(schema, f"dev-{i % 3}", rows=30, seed=i, first_event=100 * i))
             for i in range(8)]
    bad = good_frame(schema, "dev-1", rows=30, seed=50, first_event=5000)
    bad.loc[4, "torque_nm"] = 999.0
    bad.loc[6, schema.label.name] = 5
    bad_id = land(paths, "dev-1", bad)

    summary = stage.main(params, paths, clock=clock)

    assert summary["new_curated"] == 8 and summary["chunks"] == 1
    assert reasons_by_batch(summary) == {bad_id: "torque_nm: 1 value outside [0, 200] (e.g. 999.0); "
                                                 "failure: 1 value not in classes [0, 1] (e.g. 5)"}
    [chunk] = store.iter_chunks(paths.curated)
    entries = store.chunk_ledger(chunk)
    assert sorted(e[1] for e in entries) == sorted(goods) and all(e[2] == 30 for e in entries)
    rows = pd.read_parquet(chunk)  # the ledger maps rows to batches: entry i's rows follow entry i-1's
    offsets = np.cumsum([0] + [e[2] for e in entries])
    for (device, _, count, _), start in zip(entries, offsets, strict=False):
        assert set(rows[schema.device_id].iloc[start : start + count]) == {device}
    docs = paths.reports / "ingest" / "data_docs"
    [page] = list((docs / "validations").rglob("*.html"))  # one validation for the whole run
    assert all(remote_loads(p.read_text()) == [] for p in [page, docs / "index.html"])  # still offline-safe


def test_chunks_give_the_same_curated_rows_as_one_validation(raw_params: dict[str, Any], tmp_path: Path) -> None:
    results = []
    for chunk_batches in (100, 2):
        params = make_params(raw_params, ingest__chunk_batches=chunk_batches)
        paths = Paths.at(tmp_path / str(chunk_batches))
        schema = params.schema
        for i in range(5):  # overlapping event ids: later batches lose the repeats, across chunks too
            land(paths, "dev-a", good_frame(schema, "dev-a", rows=30, seed=i, first_event=20 * i))
        bad = good_frame(schema, "dev-a", rows=5, seed=9, first_event=900)
        bad.loc[0, "speed_rpm"] = -1.0
        land(paths, "dev-a", bad)
        summary = stage.main(params, paths, clock=clock)
        results.append((summary["rows"], summary["duplicates_dropped"], summary["curated"], summary["quarantined"],
                        load_curated(paths, schema).to_json()))
        assert len(store.iter_chunks(paths.curated)) == summary["chunks"]
    assert results[0] == results[1]
    assert results[0][:4] == (110, 40, 5, 1)


def test_nanosecond_clock_ids_from_an_edge_csv_stay_exact(params: Params, paths: Paths) -> None:
    schema = params.schema
    frame = good_frame(schema, "gw-1", rows=20, seed=1)
    first = 1_764_000_000_123_456_789  # ns since the epoch, as edge runners number predictions
    frame[schema.event_id] = np.arange(first, first + 20, dtype=np.int64)
    place(paths.uploads, "gw-1/batch.csv", to_csv(frame).encode())
    assert stage.main(params, paths, clock=clock)["new_curated"] == 1
    assert load_curated(paths, schema)[schema.event_id].tolist() == list(range(first, first + 20))


def test_probabilities_as_lists_and_as_unparsed_text_are_both_kept(params: Params, paths: Paths) -> None:
    schema = params.schema
    land(paths, "dev-a", good_frame(schema, "dev-a", rows=10, seed=1))
    odd = good_frame(schema, "dev-b", rows=10, seed=2)
    text = to_csv(odd)
    place(paths.uploads, "dev-b/odd.csv", text.replace('"[', '"{', 1).encode())  # one unparseable list: text kept
    place(paths.uploads, "dev-c/fine.csv", to_csv(good_frame(schema, "dev-c", rows=10, seed=3)).encode())
    summary = stage.main(params, paths, clock=clock)
    assert summary["new_curated"] == 3 and summary["new_quarantined"] == 0
    assert len(store.iter_chunks(paths.curated)) == 2  # lists and text cannot share a Parquet column
    frame = load_curated(paths, schema)
    kinds = frame.groupby(schema.device_id)["probabilities"].agg(lambda s: {type(v).__name__ for v in s})
    assert kinds["dev-b"] == {"str"} and "str" not in kinds["dev-a"] and "str" not in kinds["dev-c"]


def test_a_fleet_wide_failure_is_attributed_from_the_one_bulk_validation(params: Params, paths: Paths) -> None:
    schema = params.schema
    ids = []
    for i in range(12):
        frame = good_frame(schema, f"dev-{i}", rows=20, seed=i)
        frame[schema.event_time] = frame[schema.event_time] + pd.Timedelta(days=365 * 70)  # a fleet's clocks off
        ids.append(land(paths, f"dev-{i}", frame))
    summary = stage.main(params, paths, clock=clock)
    assert summary["new_quarantined"] == 12
    for i, bid in enumerate(ids):
        assert evidence(paths, f"dev-{i}", bid)["validation"] == "bulk"
        assert reasons_by_batch(summary)[bid].startswith("event_time: 20 values in the future")


def test_bulk_attribution_words_failures_as_the_per_batch_suite_does(params: Params) -> None:
    schema = params.schema
    bounds = TimeBounds.for_run(params.ingest, NOW)
    frames = []
    for key in range(6):
        frame = good_frame(schema, f"dev-{key}", rows=25, seed=key)
        frames.append(frame)
    frames[0].loc[3, "air_temp_k"] = 1000.0
    frames[1].loc[2, schema.device_id] = "intruder"
    frames[2].loc[5, schema.event_id] = frames[2].loc[6, schema.event_id]
    frames[3].loc[0, "upload_reason"] = "because"
    frames[4].loc[1:3, schema.event_time] = pd.Timestamp("2099-01-01T00:00:00Z")
    normalised = [normalise(f, schema) for f in frames]
    bulk = pd.concat(normalised, ignore_index=True)
    bulk[BATCH_KEY] = np.repeat(np.arange(6), 25)
    bulk[FOLDER_DEVICE] = np.repeat([f"dev-{k}" for k in range(6)], 25)
    checked = BulkValidator(schema, params.ingest, bounds)
    result = checked.validate(bulk[[c for c in checked.checked if c in bulk.columns]], run_name="test")
    attribution = attribute(result.results, {k: f"dev-{k}" for k in range(6)}, schema)
    assert not attribution.unattributed and set(attribution.failed) == {0, 1, 2, 3, 4}
    alone = BatchValidator(schema, params.ingest, bounds)
    for key in range(5):
        verdict = alone.validate(normalised[key], f"dev-{key}", run_name=f"alone-{key}")
        assert describe_failures(attribution.failed[key], schema) == verdict.reason


def test_time_bounds_come_from_params_and_the_run_clock(raw_params: dict[str, Any]) -> None:
    params = make_params(raw_params, ingest__max_future_s=120, ingest__min_event_time="2020-01-01T00:00:00+02:00")
    bounds = TimeBounds.for_run(params.ingest, NOW)
    assert bounds.earliest == dt.datetime(2019, 12, 31, 22, tzinfo=dt.UTC)
    assert bounds.latest == NOW + dt.timedelta(seconds=120)
    with pytest.raises(UserError, match="ingest.min_event_time: .*needs a time zone"):
        make_params(raw_params, ingest__min_event_time="2000-01-01")
