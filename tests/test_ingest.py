"""ingest: good batches are curated exactly once, crash-safe, deduplicated, for any schema.

Real Great Expectations, real files under tmp_path. Bad batches have their own module
(test_ingest_bad_batches.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from edge.atomic import write_text_atomic
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.record import batch_id, land_batch
from edgeloop.testkit.project import override
from flows.dataset import load_curated
from flows.ingest import ledger, store
from flows.ingest import quarantine as quarantine_module
from flows.ingest.normalise import normalise
from flows.ingest.reasons import describe_failures
from flows.params import Params, parse_params
from flows.stages import ingest as stage
from simulator.batches import write_batch
from tests.bad_batches import good_frame, place, to_csv

METRIC_KEYS = ["batches", "curated", "quarantined", "rows", "duplicates_dropped", "quarantined_share"]


def make_params(raw: dict[str, Any], **dotted: Any) -> Params:
    settings = {"ingest.sources": ["data/uploads", "data/simulated"], "ingest.data_docs": False}
    settings.update({k.replace("__", "."): v for k, v in dotted.items()})
    return parse_params(override(raw, settings))


@pytest.fixture
def params(raw_params: dict[str, Any]) -> Params:
    return make_params(raw_params)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.at(tmp_path)


def land(
    paths: Paths,
    params: Params,
    device: str,
    seed: int,
    first_event: int = 0,
    rows: int = 40,
    source: str = "data/uploads",
) -> Path:
    frame = good_frame(params.schema, device, rows=rows, seed=seed, first_event=first_event)
    return write_batch(paths.resolve(source), device, frame)


def parts(paths: Paths) -> dict[str, bytes]:
    """Every curated file (relative path -> bytes)."""
    root = paths.curated
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_good_batches_are_curated_with_normalised_types(params: Params, paths: Paths) -> None:
    schema = params.schema
    landed = land(paths, params, "dev-a", seed=1)
    hand = good_frame(schema, "dev-b", rows=25, seed=2)
    hand_body = to_csv(hand).encode()
    place(paths.uploads, "dev-b/export from monday.csv", hand_body)

    summary = stage.main(params, paths)

    assert summary["new_curated"] == 2 and summary["new_quarantined"] == 0, summary["quarantined_batches"]
    assert summary["rows"] == 65 and summary["new_rows"] == 65
    bid = hashlib.sha256(landed.read_bytes()).hexdigest()
    [chunk] = store.iter_chunks(paths.curated)  # both batches committed together, in one file
    assert [entry[:2] for entry in store.chunk_ledger(chunk)] == [("dev-a", bid), ("dev-b", batch_id(hand_body))]
    assert ("dev-a", bid) in ledger.done_keys(paths.curated, paths.quarantine)
    frame = load_curated(paths, schema)
    assert len(frame) == 65
    assert all(frame[name].dtype == "float64" for name in schema.feature_names)
    assert frame[schema.label.name].dtype == "int64"
    assert str(frame[schema.event_time].dtype) == "datetime64[ns, UTC]"
    assert {"model_version", "prediction", "probabilities", "upload_reason", "inclusion_probability"} <= set(frame)
    assert all(len(p) == 2 and not isinstance(p, str) for p in frame["probabilities"])  # CSV JSON text parsed
    keys = [schema.event_time, schema.device_id, schema.event_id]
    assert frame.equals(frame.sort_values(keys).reset_index(drop=True))
    metrics = json.loads((paths.metrics / "ingest.json").read_text())
    assert list(metrics) == METRIC_KEYS
    assert metrics == {
        "batches": 2,
        "curated": 2,
        "quarantined": 0,
        "rows": 65,
        "duplicates_dropped": 0,
        "quarantined_share": 0.0,
    }


def test_rerun_ingests_nothing_new_and_changes_nothing(params: Params, paths: Paths) -> None:
    for seed in range(3):
        land(paths, params, f"dev-{seed}", seed=seed)
    first = stage.main(params, paths)
    before, metrics_before = tree(paths.curated / "parts"), (paths.metrics / "ingest.json").read_text()

    second = stage.main(params, paths)

    assert first["new_curated"] == 3
    assert second["new_batches"] == 0 and second["skipped_already_done"] == 3
    assert tree(paths.curated / "parts") == before
    assert (paths.metrics / "ingest.json").read_text() == metrics_before


def test_crash_midway_then_rerun_ends_with_every_batch_once(
    raw_params: dict[str, Any], paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = make_params(raw_params, ingest__chunk_batches=2)  # 6 good batches: three chunks of two
    for seed in range(6):
        land(paths, params, f"dev-{seed % 2}", seed=seed, first_event=seed * 100)
    place(paths.uploads, "dev-0/broken.csv", b"\xff\xfe not utf-8")
    real_chunk, calls = stage._process_chunk, []

    def crash_on_the_second_chunk(*args: Any) -> None:
        calls.append(args)
        if len(calls) > 1:
            raise RuntimeError("power cut")
        real_chunk(*args)

    monkeypatch.setattr(stage, "_process_chunk", crash_on_the_second_chunk)
    with pytest.raises(RuntimeError, match="power cut"):
        stage.main(params, paths)
    monkeypatch.undo()
    done_before = len(ledger.done_keys(paths.curated, paths.quarantine))
    assert len(parts(paths)) == 1 and 2 <= done_before <= 3  # one chunk committed (and the broken file, if read)
    # a write killed halfway leaves a temp file: it must never count as data
    leftovers = [paths.curated / "chunks" / ".000002-0123456789abcdef.parquet.x1y2.tmp",
                 paths.curated / "parts" / "dev-1" / f".{'a' * 64}.parquet.x1y2.tmp"]
    for leftover in leftovers:
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"PAR1 half")

    summary = stage.main(params, paths)

    assert summary["curated"] == 6 and summary["quarantined"] == 1 and summary["batches"] == 7
    assert summary["new_batches"] == 7 - done_before and summary["skipped_already_done"] == done_before
    assert not list(paths.curated.rglob("*.tmp"))
    frame = load_curated(paths, params.schema)
    assert len(frame) == 6 * 40
    assert not frame.duplicated([params.schema.device_id, params.schema.event_id]).any()


def test_crash_inside_quarantine_is_completed_by_the_rerun(
    params: Params, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = place(paths.uploads, "dev-a/bad.csv", b"")

    def die_on_reason(path: Path, text: str, mode: int = 0o644) -> None:
        if path.name.endswith(".reason.txt"):
            raise KeyboardInterrupt("killed before reason.txt")
        write_text_atomic(path, text, mode)

    monkeypatch.setattr(quarantine_module, "write_text_atomic", die_on_reason)
    with pytest.raises(KeyboardInterrupt):
        stage.main(params, paths)
    monkeypatch.undo()
    folder = paths.quarantine / "dev-a"
    assert not list(folder.glob("*.reason.txt"))  # not done yet: raw copy and gx.json only

    summary = stage.main(params, paths)

    bid = batch_id(bad.read_bytes())
    assert summary["new_quarantined"] == 1 and summary["quarantined"] == 1
    assert (folder / f"{bid}.reason.txt").read_text() == "empty file (0 bytes)\n"
    assert (folder / f"{bid}.csv").read_bytes() == b""


def test_an_unexpected_error_on_one_file_quarantines_it_instead_of_blocking_every_run(
    params: Params, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(paths, params, "dev-a", seed=1)
    poison = land(paths, params, "dev-b", seed=2)

    def choke_on_dev_b(frame: pd.DataFrame, schema: Any) -> pd.DataFrame:
        if (frame[params.schema.device_id] == "dev-b").any():
            raise ValueError("library bug")
        return normalise(frame, schema)

    monkeypatch.setattr(stage, "normalise", choke_on_dev_b)
    summary = stage.main(params, paths)

    assert summary["curated"] == 1 and summary["quarantined"] == 1
    [entry] = summary["quarantined_batches"]
    assert entry["batch_id"] == batch_id(poison.read_bytes())
    assert entry["reason"] == "could not be processed (ValueError: library bug)"


def test_same_batch_in_two_sources_or_reuploaded_is_processed_once(params: Params, paths: Paths) -> None:
    landed = land(paths, params, "dev-a", seed=3)
    land_batch(paths.simulated, "dev-a", landed.read_bytes())
    place(paths.uploads, "dev-a/copy of batch.parquet", landed.read_bytes())

    summary = stage.main(params, paths)

    assert summary["new_curated"] == 1 and summary["skipped_already_done"] == 2
    assert summary["rows"] == 40 and summary["duplicates_dropped"] == 0


def test_events_already_curated_are_dropped_across_batches_and_runs(params: Params, paths: Paths) -> None:
    schema = params.schema
    land(paths, params, "dev-a", seed=1, first_event=0)
    land(paths, params, "dev-a", seed=2, first_event=20)  # events 20..59 overlap 20..39
    first = stage.main(params, paths)
    land(paths, params, "dev-a", seed=3, first_event=50)  # 50..89 overlaps 50..59 from the folder
    land(paths, params, "dev-b", seed=4, first_event=0)  # same event ids, another device: all new

    second = stage.main(params, paths)

    assert first["new_duplicates_dropped"] == 20 and first["rows"] == 60
    assert second["new_duplicates_dropped"] == 10 and second["new_rows"] == 30 + 40
    assert second["duplicates_dropped"] == 30 and second["rows"] == 130
    frame = load_curated(paths, schema)
    assert len(frame) == 130
    assert not frame.duplicated([schema.device_id, schema.event_id]).any()
    assert sorted(frame.loc[frame[schema.device_id] == "dev-a", schema.event_id]) == list(range(90))


def test_from_scratch_runs_give_identical_parts(params: Params, tmp_path: Path) -> None:
    roots = [Paths.at(tmp_path / "one"), Paths.at(tmp_path / "two")]
    for root in roots:
        for seed in range(4):
            land(root, params, f"dev-{seed % 2}", seed=seed, first_event=10 * seed)
        stage.main(params, root)
    assert parts(roots[0]) and parts(roots[0]) == parts(roots[1])
    assert (roots[0].metrics / "ingest.json").read_text() == (roots[1].metrics / "ingest.json").read_text()


def test_sources_are_never_modified_and_hidden_temp_files_are_ignored(params: Params, paths: Paths) -> None:
    land(paths, params, "dev-a", seed=1)
    place(paths.uploads, "dev-a/.incoming.parquet.123.tmp", b"PAR1 still being written")
    place(paths.uploads, "README.md", b"landing zone\n")
    place(paths.uploads, "dev-a/bad.csv", b"")
    before = tree(paths.uploads)

    summary = stage.main(params, paths)

    assert tree(paths.uploads) == before
    assert summary["batches"] == 2 and summary["curated"] == 1 and summary["quarantined"] == 1


def test_missing_source_folders_are_empty_and_data_docs_still_built(raw_params: dict[str, Any], paths: Paths) -> None:
    params = make_params(raw_params, ingest__data_docs=True, ingest__sources=["nowhere", "/no/such/dir"])

    summary = stage.main(params, paths)

    assert summary["batches"] == 0 and summary["quarantined_share"] == 0.0
    docs = paths.reports / "ingest" / "data_docs"
    assert (docs / "index.html").is_file() and list((docs / "expectations").glob("*.html"))
    land(paths, params, "dev-a", seed=1, source="nowhere")
    assert stage.main(params, paths)["new_curated"] == 1
    assert list((docs / "validations").rglob("*.html"))


def test_a_second_schema_works_without_code_changes(raw_params: dict[str, Any], paths: Paths) -> None:
    schema = {
        "features": [
            {"name": "pressure_bar", "dtype": "float", "min": 0.0, "max": 16.0},
            {"name": "flow_lpm", "dtype": "float"},
            {"name": "pump_starts", "dtype": "int", "min": 0, "max": 50, "nullable": False},
        ],
        "label": {"name": "state", "classes": ["ok", "warn", "fail"]},
        "event_id": "seq",
        "device_id": "gateway",
        "event_time": "ts",
    }
    raw = dict(raw_params, schema=schema)
    params = make_params(raw)
    land(paths, params, "gw-1", seed=1)
    hand = good_frame(params.schema, "gw-2", rows=15, seed=2, record=False)
    place(paths.uploads, "gw-2/hand.csv", to_csv(hand).encode())
    bad = good_frame(params.schema, "gw-1", rows=10, seed=3, first_event=500)
    bad.loc[0, "state"] = "boom"
    bad.loc[1, "pump_starts"] = 99
    write_batch(paths.uploads, "gw-1", bad)

    summary = stage.main(params, paths)

    assert summary["curated"] == 2 and summary["quarantined"] == 1
    reason = summary["quarantined_batches"][0]["reason"]
    assert "pump_starts: 1 value outside [0, 50]" in reason and "state: 1 value not in classes" in reason
    frame = load_curated(paths, params.schema)
    assert len(frame) == 55 and set(frame["state"]) <= {"ok", "warn", "fail"}
    assert frame["pump_starts"].dtype == "float64" and str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_load_curated_without_data_is_a_user_error(params: Params, paths: Paths) -> None:
    with pytest.raises(UserError, match="no curated data") as error:
        load_curated(paths, params.schema)
    assert "uploads" in str(error.value) and "simulate" in str(error.value)


def test_a_second_concurrent_ingest_is_refused(params: Params, paths: Paths) -> None:
    with ledger.run_lock(paths.data), pytest.raises(UserError, match="another ingest is running"):
        stage.main(params, paths)


def test_normalise_makes_times_utc_and_whole_int_features_ints(raw_params: dict[str, Any]) -> None:
    raw = override(raw_params, {})
    raw["schema"]["features"][0]["dtype"] = "int"
    schema = parse_params(raw).schema
    frame = good_frame(schema, "dev-a", rows=5, record=False)
    frame[schema.event_time] = frame[schema.event_time].dt.tz_localize(None)  # naive: taken as UTC
    frame[schema.label.name] = frame[schema.label.name].astype("float64")
    out = normalise(frame, schema)
    assert str(out[schema.event_time].dtype) == "datetime64[ns, UTC]"
    assert out[schema.event_time].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert str(out[schema.features[0].name].dtype) == "Int64"
    assert out[schema.label.name].dtype == "int64"


def test_failure_reasons_are_one_plain_line(params: Params) -> None:
    results = [
        {
            "success": True,
            "expectation_config": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
        },
        {
            "success": False,
            "expectation_config": {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "torque_nm", "min_value": 0.0, "max_value": 200.0},
            },
            "result": {"unexpected_count": 12, "partial_unexpected_list": [250.5]},
        },
        {
            "success": False,
            "expectation_config": {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "failure", "value_set": [0, 1]},
            },
            "result": {"unexpected_count": 3, "partial_unexpected_list": [2]},
        },
    ]
    assert describe_failures(results, params.schema) == (
        "torque_nm: 12 values outside [0, 200] (e.g. 250.5); failure: 3 values not in classes [0, 1] (e.g. 2)"
    )
