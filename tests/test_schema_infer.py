"""``edgeloop schema infer`` and check-params' feature names, through the real CLI (typer's runner, and one
real process for the one-line error): a 52-column export imported, its schema inferred and written into
params.yaml, then ingested by the real ingest stage with 0 quarantined batches; Parquet gives the same
schema as CSV; margin, nullable, int dtype, classes, skipped text columns, rejected names, a label with
empty values, too many classes; params.yaml keeps every other section and comment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edge.contracts.layout import Paths
from edgeloop.cli import app
from edgeloop.testkit.project import REPO, repo_params_raw
from flows.history.infer import widen
from flows.params import ParamsError, load_params, parse_params
from flows.stages import ingest

FEATURES = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
runner = CliRunner()


def wide_frame(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(10 * i, 1 + i % 5, rows) for i, name in enumerate(FEATURES)})
    frame.loc[rng.random(rows) < 0.05, "xmv_3"] = np.nan
    frame["fault"] = rng.integers(0, 4, rows)
    return frame


def project(root: Path) -> Path:
    """The repository's params.yaml, comments and all, reading only data/uploads."""
    root.mkdir(parents=True, exist_ok=True)
    text = (REPO / "params.yaml").read_text()
    for old, new in [("sources: [data/uploads, data/simulated]", "sources: [data/uploads]"),
                     ("data_docs: true", "data_docs: false"), ("rows_per_device: 6000", "rows_per_device: 0")]:
        assert old in text
        text = text.replace(old, new)
    (root / "params.yaml").write_text(text)
    return root


def cli(*args: str) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def infer_printed(*args: str) -> dict[str, Any]:
    return yaml.safe_load(cli("schema", "infer", *args).stdout)["schema"]


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "te export.csv"
    wide_frame().to_csv(path, index=False)
    return path


def test_wide_csv_imported_inferred_and_ingested_with_nothing_quarantined(wide_csv: Path, tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    before = (root / "params.yaml").read_text()
    cli("import", wide_csv, "--device", "te-plant", "--start", "2025-01-01T00:00:00Z", "--period-s", "180",
        "--batch-rows", "1000", "--root", root)
    cli("schema", "infer", root / "data/uploads", "--label", "fault", "--write", "--root", root)

    params = load_params(root / "params.yaml")
    assert params.schema.feature_names == FEATURES
    assert [f.nullable for f in params.schema.features] == [name == "xmv_3" for name in FEATURES]
    assert params.schema.label.classes == (0, 1, 2, 3)
    after = (root / "params.yaml").read_text()
    assert (root / "params.yaml.bak").read_text() == before
    assert after.split("schema:")[0] == before.split("schema:")[0]  # the comments above the section
    assert after[after.index("# Default history"):] == before[before.index("# Default history"):]
    assert "widened by 10%" in after

    summary = ingest.main(params, Paths.at(root))
    assert (summary["quarantined"], summary["curated"], summary["rows"]) == (0, 3, 3000)


def test_parquet_gives_the_same_schema_as_csv(wide_csv: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "export.parquet"
    pd.read_csv(wide_csv).to_parquet(parquet, index=False)
    from_csv = infer_printed(wide_csv, "--label", "fault")
    assert infer_printed(parquet, "--label", "fault") == from_csv
    assert len(from_csv["features"]) == 52


def test_margin_nullable_int_and_observed_range(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    pd.DataFrame({"a": [0.0, 5.0, 10.0, 2.0], "n": [1.0, None, 3.0, 4.0], "k": [1, 2, 3, 40],
                  "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    features = {f["name"]: f for f in infer_printed(path, "--label", "y")["features"]}
    assert (features["a"]["min"], features["a"]["max"], features["a"]["nullable"]) == (-1.0, 11.0, False)
    assert features["n"]["nullable"] is True and features["n"]["dtype"] == "float"
    assert features["k"]["dtype"] == "int"
    exact = {f["name"]: f for f in infer_printed(path, "--label", "y", "--margin", "0")["features"]}
    assert (exact["a"]["min"], exact["a"]["max"]) == (0.0, 10.0)
    text = cli("schema", "infer", path, "--label", "y", "--margin", "0.25").stdout
    assert "observed [0, 10], widened by 25%" in text
    low, high = widen(0.123456, 0.987654, 0.1)
    assert low <= 0.123456 - 0.08 and high >= 0.987654 + 0.08 and high - low < 1.1


def test_classes_sorted_text_columns_skipped_and_bad_names_named(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("temp,operator,prediction,,dup,dup,y\n"
                    "1.5,ann,0,1,2,3,beta\n2.5,bob,1,1,2,3,alpha\n3.5,ann,1,1,2,3,gamma\n")
    result = cli("schema", "infer", path, "--label", "y")
    schema = yaml.safe_load(result.stdout)["schema"]
    assert [f["name"] for f in schema["features"]] == ["temp"]
    assert schema["label"]["classes"] == ["alpha", "beta", "gamma"]
    for name, rule in [("operator", "not numeric (text)"), ("prediction", "reserved for the runner's upload"),
                       ("", "empty column name"), ("dup", "column name used twice")]:
        assert f"skipped {name}: {rule}" in result.stderr
        assert f"#   {name}: {rule}" in result.stdout


def test_label_with_empty_values_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,y\n1,0\n2,\n3,1\n")
    done = subprocess.run([str(Path(sys.executable).parent / "edgeloop"), "schema", "infer", str(path), "--label",
                           "y", "--write", "--root", str(tmp_path)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: label 'y' has 1 empty values in {path}: every row needs "
                                                f"a class; drop or fill those rows first"]
    assert not (tmp_path / "params.yaml").exists()


def test_too_many_classes_and_a_missing_label_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    pd.DataFrame({"a": range(50), "y": range(50)}).to_csv(path, index=False)
    result = runner.invoke(app, ["schema", "infer", str(path), "--label", "y", "--max-classes", "10"])
    assert "more than 10 distinct values" in str(result.exception)
    result = runner.invoke(app, ["schema", "infer", str(path), "--label", "fault"])
    assert "no label column 'fault'" in str(result.exception)


def test_check_params_names_a_bad_feature_by_name() -> None:
    raw = repo_params_raw()
    raw["schema"]["features"] = [{"name": name, "dtype": "float"} for name in FEATURES]
    raw["schema"]["features"][51]["dtype"] = "double"
    with pytest.raises(ParamsError, match=r"schema\.features\.xmv_11\.dtype: expected 'float' or 'int'"):
        parse_params(raw)
    raw["schema"]["features"][51] = {"name": "xmv.11", "dtype": "float", "mni": 0}
    with pytest.raises(ParamsError, match=r"schema\.features\['xmv\.11'\]\.mni: unknown key"):
        parse_params(raw)
