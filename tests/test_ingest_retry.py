"""ingest --retry-quarantined: batches quarantined by a too-strict params.yaml come back once fixed, each
curated at most once ever (retried twice, re-landed, or after a crash); still-bad ones stay with the new
reason; the quarantine keeps every entry; the gate's share counts only batches still quarantined.

Real Great Expectations on real files under tmp_path; the CLI through Typer's runner in-process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edgeloop.cli import app
from edgeloop.testkit.project import override, repo_params_raw
from flows.dataset import load_curated
from flows.ingest import ledger, store
from flows.params import Params, parse_params
from flows.stages import ingest as stage
from flows.stages import run_stage
from simulator.batches import write_batch
from tests.bad_batches import good_frame

BAD_PREFIX = "6f8c697820c8"  # batch id of the batch with a label outside the classes (its content is seeded)


def make_params(tight: bool = False) -> Params:
    raw = override(repo_params_raw(), {"ingest.data_docs": False})
    if tight:  # air_temp_k really spans 250..350: every batch fails
        raw["schema"]["features"][0]["max"] = 300.0
    return parse_params(raw)


def ledger_entries(paths: Paths) -> list[tuple[str, str]]:
    return [(c.device_id, c.batch_id) for c in store.committed(paths.curated)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good batches and one with a label outside the classes, all quarantined by a too-tight range;
    one good batch sits in both landing zones. Ingested once per module; each test gets a copy."""
    paths = Paths.at(tmp_path_factory.mktemp("retry-pristine"))
    schema = make_params().schema
    files = [write_batch(paths.uploads, f"m-{i % 2}", good_frame(schema, f"m-{i % 2}", seed=i, first_event=i * 40,
                                                                  record=False)) for i in range(3)]
    bad = good_frame(schema, "m-0", seed=9, first_event=500, record=False)
    bad.loc[3, "failure"] = 7
    files.append(write_batch(paths.uploads, "m-0", bad))
    assert files[3].name.startswith(BAD_PREFIX)
    again = paths.root / "data" / "simulated" / "m-1"
    again.mkdir(parents=True)
    shutil.copy2(files[1], again / files[1].name)  # the same bytes landed twice
    first = stage.main(make_params(tight=True), paths)
    assert first["new_quarantined"] == 4 and first["curated"] == 0 and first["skipped_already_done"] == 1
    return paths.root


@pytest.fixture
def landed(pristine: Path, tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "project"
    shutil.copytree(pristine, root, symlinks=True)
    paths = Paths.at(root)
    files = sorted(paths.uploads.rglob("*.parquet"))
    bad = [f for f in files if f.name.startswith(BAD_PREFIX)]
    return {"paths": paths, "bad": bad[0], "good": [f for f in files if f not in bad]}


def test_split_says_how_many_are_quarantined_and_how_to_retry(landed: dict[str, Any]) -> None:
    paths = landed["paths"]
    with pytest.raises(UserError) as error:
        run_stage("split", make_params(), paths)
    message = str(error.value)
    assert "\n" not in message and message.startswith("no curated data")
    assert "4 batches are in quarantine" in message
    assert "(commonest reasons: 3 x air_temp_k: values outside [250, 300]; 1 x air_temp_k: " in message
    assert "run `edgeloop ingest --retry-quarantined`" in message


def test_fixed_batches_are_curated_once_and_never_twice(landed: dict[str, Any]) -> None:
    paths, fixed = landed["paths"], make_params()
    before = sorted(p.name for p in paths.quarantine.rglob("*") if p.is_file())
    plain = stage.main(fixed, paths)  # the default: no silent reprocessing
    assert plain["skipped_already_done"] == 5 and plain["retried"] == 0 and plain["curated"] == 0

    first = stage.main(fixed, paths, retry_quarantined=True)

    assert (first["retried"], first["retried_curated"], first["retried_still_quarantined"]) == (4, 3, 1)
    assert first["new_batches"] == 0 and first["skipped_already_done"] == 5  # originals still landed + a copy
    assert first["new_rows"] == 0 and first["retried_rows"] == 3 * 40
    assert (first["curated"], first["quarantined"], first["batches"]) == (3, 1, 4)
    assert first["quarantined_share"] == 0.25  # the gate counts batches still quarantined only
    metrics = json.loads((paths.metrics / "ingest.json").read_text())
    assert metrics["quarantined"] == 1 and metrics["curated"] == 3
    assert len(load_curated(paths, fixed.schema)) == 3 * 40

    shutil.copy2(landed["good"][0], paths.uploads / "m-0" / "copy.parquet")  # landed again, another name
    second = stage.main(fixed, paths, retry_quarantined=True)  # retried twice: only the still-bad one again

    assert (second["retried"], second["retried_curated"], second["retried_still_quarantined"]) == (1, 0, 1)
    assert second["skipped_already_done"] == 6 and second["new_batches"] == 0
    entries = ledger_entries(paths)
    assert len(entries) == len(set(entries)) == 3 == len(ledger.curated_keys(paths.curated))
    assert len(load_curated(paths, fixed.schema)) == 3 * 40

    # the quarantine keeps every entry, with a record of each attempt beside it
    after = sorted(p.name for p in paths.quarantine.rglob("*") if p.is_file())
    assert set(before) < set(after) and sum(name.endswith(".retries.json") for name in after) == 4
    good = paths.quarantine / "m-0" / landed["good"][0].name
    history = json.loads(good.with_suffix(".retries.json").read_text())
    assert [h["outcome"] for h in history] == ["curated"] and "air_temp_k" in history[0]["before"]
    assert good.with_suffix(".reason.txt").read_text().startswith("curated on retry ")
    assert good.read_bytes() == landed["good"][0].read_bytes()  # the raw copy is untouched
    bad = paths.quarantine / "m-0" / landed["bad"].name
    history = json.loads(bad.with_suffix(".retries.json").read_text())
    assert [h["outcome"] for h in history] == ["quarantined", "quarantined"]
    reason = bad.with_suffix(".reason.txt").read_text()
    assert "failure" in reason and "air_temp_k" not in reason  # the new reason only
    assert "air_temp_k" in history[0]["before"]


def test_a_crash_between_commit_and_record_never_curates_twice(
    landed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, fixed = landed["paths"], make_params()

    def power_cut(*args: Any) -> None:
        raise KeyboardInterrupt("killed after the chunk was committed")

    monkeypatch.setattr(stage, "mark_curated", power_cut)
    with pytest.raises(KeyboardInterrupt):
        stage.main(fixed, paths, retry_quarantined=True)
    monkeypatch.undo()
    assert len(ledger_entries(paths)) == 3  # committed: curated, though not yet recorded beside the entry

    summary = stage.main(fixed, paths, retry_quarantined=True)

    assert summary["retried"] == 1 and summary["retried_curated"] == 0  # only the still-bad batch is retried
    entries = ledger_entries(paths)
    assert len(entries) == len(set(entries)) == 3 and summary["quarantined"] == 1
    for path in landed["good"]:
        device = path.parent.name
        assert (paths.quarantine / device / path.name).with_suffix(".reason.txt").read_text().startswith("curated")


def test_the_ingest_command_retries_and_says_what_it_did(landed: dict[str, Any]) -> None:
    paths = landed["paths"]
    raw = override(repo_params_raw(), {"ingest.data_docs": False})
    paths.params.write_text(yaml.safe_dump(raw, sort_keys=False))
    runner = CliRunner()
    plain = runner.invoke(app, ["ingest", "--root", str(paths.root)])
    assert plain.exit_code == 0, plain.output
    assert "5 skipped (already done)" in plain.output
    assert "run `edgeloop ingest --retry-quarantined`" in plain.output

    retried = runner.invoke(app, ["ingest", "--retry-quarantined", "--root", str(paths.root)])

    assert retried.exit_code == 0, retried.output
    assert "retried from quarantine: 4 batches, 3 now curated (120 rows), 1 still quarantined" in retried.output
    assert "new batches: 0 curated (0 rows" in retried.output
    assert "1 x failure: values not in classes [0, 1]" in retried.output
    assert "totals: 3 batches curated (120 rows), 1 in quarantine" in retried.output
