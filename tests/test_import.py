"""``edgeloop import`` through the real CLI (typer's runner): derived id/time/device, kept columns, one folder
per device, idempotent re-runs, a changed export refused with nothing placed, future derived times refused,
ids continuing across the files of a folder, and the export never modified."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgeloop.cli import app

runner = CliRunner()
START = "2025-01-01T00:00:00Z"


def cli(*args: object) -> Any:
    result = runner.invoke(app, ["import", *(str(a) for a in args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def refused(*args: object) -> str:
    result = runner.invoke(app, ["import", *(str(a) for a in args)])
    assert result.exception is not None and not isinstance(result.exception, SystemExit), result.output
    return str(result.exception)


def landed(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(folder).as_posix(): pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "export.csv"
    path.parent.mkdir()
    pd.DataFrame({"temp": [float(i) for i in range(25)], "fault": [i % 3 for i in range(25)]}).to_csv(path, index=False)
    return path


def test_missing_columns_are_derived_and_the_export_is_untouched(export: Path, tmp_path: Path) -> None:
    before = snapshot(export.parent)
    out = cli(export, "--device", "te-plant", "--start", START, "--period-s", "180", "--batch-rows", "10",
              "--to", tmp_path / "up")
    assert "imported 25 rows from 1 file(s) as 3 batches" in out.stdout
    assert "added event_id, event_time, device_id" in out.stdout
    batches = landed(tmp_path / "up")
    assert list(batches) == [f"te-plant/export-0000{n}.parquet" for n in range(3)]
    rows = pd.concat(batches.values(), ignore_index=True)
    assert rows["event_id"].tolist() == list(range(25))
    start = pd.Timestamp(START)
    assert rows["event_time"].tolist() == [start + pd.Timedelta(seconds=180 * i) for i in range(25)]
    assert set(rows["device_id"]) == {"te-plant"}
    assert rows["temp"].tolist() == [float(i) for i in range(25)]
    assert snapshot(export.parent) == before


def test_a_second_run_imports_nothing_and_says_so(export: Path, tmp_path: Path) -> None:
    args = (export, "--device", "te-plant", "--start", START, "--period-s", "60", "--to", tmp_path / "up")
    cli(*args)
    placed = snapshot(tmp_path / "up")
    again = cli(*args)
    assert again.stdout.startswith("nothing new: all 1 batches of 25 rows are already in")
    assert snapshot(tmp_path / "up") == placed


def test_changed_options_are_refused_and_nothing_is_placed(export: Path, tmp_path: Path) -> None:
    cli(export, "--device", "d1", "--start", START, "--period-s", "60", "--batch-rows", "10", "--to", tmp_path / "up")
    placed = snapshot(tmp_path / "up")
    message = refused(export, "--device", "d1", "--start", "2025-02-01T00:00:00Z", "--period-s", "60",
                      "--batch-rows", "10", "--to", tmp_path / "up")
    assert "exists with other content" in message and "nothing was imported" in message
    assert snapshot(tmp_path / "up") == placed  # no staging folder left, no batch replaced


def test_derived_times_in_the_future_are_refused_before_anything_is_written(export: Path, tmp_path: Path) -> None:
    soon = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = refused(export, "--device", "d1", "--start", soon, "--period-s", "3600", "--to", tmp_path / "up")
    assert "after now" in message and "--start" in message
    assert list((tmp_path / "up").rglob("*")) == []
    assert "needs a time zone" in refused(export, "--device", "d1", "--start", "2025-01-01T00:00:00",
                                          "--period-s", "1", "--to", tmp_path / "up")
    assert "pass --start ISO and --period-s S" in refused(export, "--device", "d1", "--to", tmp_path / "up")
    assert "pass --device NAME" in refused(export, "--start", START, "--period-s", "1", "--to", tmp_path / "up")
    assert "cannot be a folder name" in refused(export, "--device", "../x", "--start", START, "--period-s", "1",
                                                "--to", tmp_path / "up")


def test_existing_columns_are_kept_and_rows_go_to_their_devices(tmp_path: Path) -> None:
    path = tmp_path / "hist.csv"
    pd.DataFrame({"event_id": [7, 8, 9, 10], "event_time": ["2025-03-01T00:00:00Z"] * 4,
                  "device_id": ["m2", "m1", "m2", "m1"], "temp": [1.0, 2.0, 3.0, 4.0],
                  "fault": [0, 1, 0, 1]}).to_csv(path, index=False)
    out = cli(path, "--to", tmp_path / "up")
    assert "every role column was in the data" in out.stdout
    batches = landed(tmp_path / "up")
    assert list(batches) == ["m1/hist-00000.parquet", "m2/hist-00000.parquet"]
    assert batches["m1/hist-00000.parquet"]["event_id"].tolist() == [8, 10]
    assert batches["m2/hist-00000.parquet"]["temp"].tolist() == [1.0, 3.0]
    assert str(batches["m2/hist-00000.parquet"]["event_time"].iloc[0]) == "2025-03-01 00:00:00+00:00"
    assert "drop --device" in refused(path, "--device", "m1", "--to", tmp_path / "up2")


def test_a_folder_is_imported_in_order_with_ids_continuing_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / "2025").mkdir(parents=True)
    pd.DataFrame({"temp": [1.0, 2.0], "fault": [0, 1]}).to_csv(folder / "2025" / "jan.csv", index=False)
    pd.DataFrame({"temp": [3.0, 4.0, 5.0], "fault": [1, 0, 1]}).to_parquet(folder / "feb.parquet", index=False)
    (folder / "README.txt").write_text("not data")
    cli(folder, "--device", "d1", "--start", START, "--period-s", "1", "--first-id", "100", "--to", tmp_path / "up")
    batches = landed(tmp_path / "up")
    assert list(batches) == ["d1/2025__jan-00000.parquet", "d1/feb-00000.parquet"]
    assert batches["d1/2025__jan-00000.parquet"]["event_id"].tolist() == [100, 101]
    assert batches["d1/feb-00000.parquet"]["event_id"].tolist() == [102, 103, 104]
