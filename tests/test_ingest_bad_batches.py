"""ingest: every kind of bad batch ends in quarantine with a reason that names the problem.

One ingest run over a corpus (tests/bad_batches.py) plus one good batch; then one test per kind checks
the one-line reason, the byte-identical raw copy and the GX result file. The good batch must be the
only thing curated, and a rerun must change nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.contracts.layout import Paths
from edgeloop.testkit.project import override, repo_params_raw
from flows.dataset import load_curated
from flows.params import Params, parse_params
from flows.stages import ingest as stage
from simulator.batches import write_batch
from tests.bad_batches import Bad, bad_corpus, good_frame, place, too_large

MAX_BYTES = 60_000
SCHEMA = parse_params(repo_params_raw()).schema
CORPUS = [*bad_corpus(SCHEMA), too_large(SCHEMA, "dev-big", MAX_BYTES)]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad")
    raw = override(
        repo_params_raw(), {"ingest.sources": ["landing"], "ingest.max_bytes": MAX_BYTES, "ingest.data_docs": True}
    )
    params, paths = parse_params(raw), Paths.at(root)
    good = good_frame(params.schema, "dev-good", rows=30, seed=1)
    write_batch(root / "landing", "dev-good", good)
    for bad in CORPUS:
        place(root / "landing", bad.relpath, bad.body)
    summary = stage.main(params, paths)
    return {"params": params, "paths": paths, "summary": summary, "good": good}


def _entry(ingested: dict[str, Any], bad: Bad) -> dict[str, str]:
    source = str(Path("landing") / bad.relpath)
    matches: list[dict[str, str]] = [q for q in ingested["summary"]["quarantined_batches"] if q["source"] == source]
    assert len(matches) == 1, f"{bad.kind} was not quarantined exactly once"
    return matches[0]


@pytest.mark.parametrize("bad", CORPUS, ids=[b.kind for b in CORPUS])
def test_bad_batch_is_quarantined_with_its_reason(ingested: dict[str, Any], bad: Bad) -> None:
    entry = _entry(ingested, bad)
    folder: Path = ingested["paths"].quarantine / bad.device_folder
    reason = (folder / f"{bad.batch_id}.reason.txt").read_text()
    assert entry["batch_id"] == bad.batch_id and entry["device_id"] == bad.device_folder
    assert reason.endswith("\n") and "\n" not in reason[:-1], "reason must be one line"
    for words in bad.expect:
        assert words in reason, f"{bad.kind}: {words!r} not in {reason!r}"
    assert (folder / f"{bad.batch_id}.{bad.extension}").read_bytes() == bad.body
    result = json.loads((folder / f"{bad.batch_id}.gx.json").read_text())
    assert result["success"] is False


def test_only_the_good_batch_is_curated(ingested: dict[str, Any]) -> None:
    params: Params = ingested["params"]
    summary = ingested["summary"]
    assert summary["curated"] == 1 and summary["quarantined"] == len(CORPUS)
    assert summary["quarantined_share"] == round(len(CORPUS) / (len(CORPUS) + 1), 6)
    frame = load_curated(ingested["paths"], params.schema)
    good, features = ingested["good"], params.schema.feature_names
    assert len(frame) == len(good)
    assert frame[features].to_numpy().tolist() == good[features].to_numpy().tolist()


def test_validation_failures_carry_the_gx_result_and_data_docs(ingested: dict[str, Any]) -> None:
    bad = next(b for b in CORPUS if b.kind == "out_of_range")
    folder = ingested["paths"].quarantine / bad.device_folder
    result = json.loads((folder / f"{bad.batch_id}.gx.json").read_text())
    failed = [r for r in result["results"] if not r["success"]]
    assert [r["expectation_config"]["type"] for r in failed] == ["expect_column_values_to_be_between"]
    docs = ingested["paths"].reports / "ingest" / "data_docs"
    assert (docs / "index.html").is_file()
    assert len(list((docs / "validations").rglob("*.html"))) == 1  # one page per run (one chunk), not per batch


def test_rerun_leaves_quarantine_and_curated_data_alone(ingested: dict[str, Any]) -> None:
    paths: Paths = ingested["paths"]
    before = {p: p.read_bytes() for p in sorted(paths.data.glob("[cq]*/**/*")) if p.is_file()}
    summary = stage.main(ingested["params"], paths)
    after = {p: p.read_bytes() for p in sorted(paths.data.glob("[cq]*/**/*")) if p.is_file()}
    assert summary["new_batches"] == 0 and summary["skipped_already_done"] == len(CORPUS) + 1
    assert after == before
