"""The gate stage, behaviourally: a good candidate is released, a label-flipped one is blocked, a worse one
is blocked by the champion, and missing inputs fail their rules with a reason instead of crashing."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from edge.contracts.layout import Paths
from edge.contracts.manifest import Manifest, verify_model
from flows.evaluation.decision import Loaded, champion, data_validation, render_markdown
from flows.stages import evaluate, gate
from tests.evaluation_helpers import (
    fit_onnx,
    install_candidate,
    make_params,
    project,
    read_json,
    write_ingest,
)

RELEASE_FILES = {"model.onnx", "manifest.json", "reports"}


def failed(summary: dict) -> set[str]:
    return {rule["name"] for rule in summary["rules"] if not rule["passed"]}


def candidate_files(paths: Paths) -> set[str]:
    return {p.name for p in paths.candidate.iterdir()}


def test_good_candidate_passes_and_flipped_one_is_blocked(tmp_path) -> None:
    params = make_params()
    paths = project(tmp_path, params)
    evaluate.main(params, paths)
    summary = gate.main(params, paths)

    assert summary["passed"] is True and summary["reasons"] == [] and summary["version"] == "cand-test"
    assert [r["name"] for r in summary["rules"]] == [
        "data_validation", "parity", "quality_floor", "champion", "drift", "artifacts",
    ]
    assert candidate_files(paths) == {"decision.json", "decision.md", "index.html", *RELEASE_FILES}
    model = (paths.candidate / "model.onnx").read_bytes()
    assert model == (paths.model / "model.onnx").read_bytes()
    manifest = Manifest.from_json((paths.candidate / "manifest.json").read_text())
    verify_model(manifest, model)
    assert manifest.model.sha256 == hashlib.sha256(model).hexdigest()
    assert manifest.version == "cand-test" and manifest.gate.passed and manifest.gate.metric == "f1_macro"
    assert manifest.feature_names == params.schema.feature_names
    assert list(manifest.classes) == [0, 1] and manifest.positive_class == 1
    assert manifest.decision_threshold == params.gate.decision_threshold
    assert manifest.lineage.schema_hash == params.schema.fingerprint()
    assert manifest.lineage.params_hash == params.section_hash()
    assert manifest.lineage.dvc_lock_hash is None  # no dvc.lock in this folder
    assert set(manifest.reference) == set(params.schema.feature_names)
    assert {p.name for p in (paths.candidate / "reports").iterdir()} == {"drift.html", "candidate_quality.html"}
    assert "PASSED" in (paths.candidate / "decision.md").read_text()

    train = pd.read_parquet(paths.split / "train.parquet")
    install_candidate(paths, fit_onnx(train, params, flip=True), version="cand-flipped")
    evaluate.main(params, paths)
    blocked = gate.main(params, paths)

    assert blocked["passed"] is False and failed(blocked) == {"quality_floor"}
    assert any(reason.startswith("quality_floor:") for reason in blocked["reasons"])
    assert candidate_files(paths) == {"decision.json", "decision.md", "index.html"}  # the earlier release is gone
    decision = read_json(paths.candidate / "decision.json")
    assert decision["passed"] is False and decision["version"] == "cand-flipped"
    assert "BLOCKED" in (paths.candidate / "decision.md").read_text()
    assert not list(paths.data.glob(".candidate.*"))  # no staging leftovers


@pytest.mark.parametrize("three_class", [False, True])
def test_champion_blocks_a_worse_candidate_beyond_tolerance(tmp_path, three_class: bool) -> None:
    strict = make_params({"gate.min_quality": 0.3, "gate.champion_tolerance": 0.01}, three_class=three_class)
    paths = project(tmp_path, strict)
    evaluate.main(strict, paths)
    assert gate.main(strict, paths)["passed"]
    shutil.copytree(paths.candidate, paths.resolve(strict.evaluate.champion))

    train = pd.read_parquet(paths.split / "train.parquet")
    install_candidate(paths, fit_onnx(train, strict, weak=True), version="cand-weak")
    evaluate.main(strict, paths)
    metrics = read_json(paths.metrics / "evaluate.json")
    assert metrics["champion_version"] == "cand-test"
    assert (paths.reports / "evaluate" / "champion_quality.html").is_file()
    assert metrics["champion"]["f1_macro"] - metrics["candidate"]["f1_macro"] > 0.01

    blocked = gate.main(strict, paths)
    assert blocked["passed"] is False and failed(blocked) == {"champion"}
    assert "cand-test" in next(r for r in blocked["rules"] if r["name"] == "champion")["detail"]
    assert "model.onnx" not in candidate_files(paths)

    lenient = make_params({"gate.min_quality": 0.3, "gate.champion_tolerance": 0.5}, three_class=three_class)
    assert gate.main(lenient, paths)["passed"]  # within tolerance of the champion


def test_missing_metrics_fail_their_rules_with_a_reason(tmp_path) -> None:
    params = make_params()
    paths = Paths.at(tmp_path)
    write_ingest(paths)
    summary = gate.main(params, paths)  # no export.json, no evaluate.json, no model: returns normally

    assert summary["passed"] is False and summary["version"] is None
    rules = {r["name"]: r for r in summary["rules"]}
    assert rules["data_validation"]["passed"]
    assert rules["parity"]["detail"] == "data/metrics/export.json not found"
    for name in ("quality_floor", "champion", "drift"):
        assert rules[name]["detail"] == "data/metrics/evaluate.json not found"
    assert "parity: data/metrics/export.json not found" in summary["reasons"]
    assert candidate_files(paths) == {"decision.json", "decision.md", "index.html"}


def test_missing_export_after_evaluation_blocks_on_parity(tmp_path) -> None:
    params = make_params()
    paths = project(tmp_path, params)
    evaluate.main(params, paths)
    (paths.metrics / "export.json").unlink()
    summary = gate.main(params, paths)
    assert summary["passed"] is False and {"parity", "artifacts"} == failed(summary)
    assert "export.json not found" in next(r for r in summary["rules"] if r["name"] == "parity")["detail"]
    assert not (paths.candidate / "manifest.json").exists()


def test_a_model_changed_after_evaluation_is_blocked(tmp_path) -> None:
    params = make_params()
    paths = project(tmp_path, params)
    evaluate.main(params, paths)
    train = pd.read_parquet(paths.split / "train.parquet")
    install_candidate(paths, fit_onnx(train, params, weak=True))  # re-exported, not re-evaluated
    summary = gate.main(params, paths)
    assert failed(summary) == {"artifacts"}
    assert "changed since data/metrics/evaluate.json" in summary["reasons"][0]


def test_rule_functions_on_their_own() -> None:
    ingest = Loaded("ingest.json", {"curated": 3, "rows": 10, "quarantined_share": 0.6})
    assert not data_validation(ingest, 0.5).passed
    assert data_validation(ingest, 0.7).passed
    empty = Loaded("ingest.json", {"curated": 0, "rows": 0, "quarantined_share": 0.0})
    assert "nothing curated" in data_validation(empty, 0.5).detail
    broken = Loaded("ingest.json", {"curated": "many", "rows": 1, "quarantined_share": 0.0})
    assert "not a finite number" in data_validation(broken, 0.5).detail
    evaluated = Loaded("evaluate.json", {"candidate": {"f1_macro": 0.80}, "champion": {"f1_macro": 0.805},
                                         "champion_version": "v1"})
    assert champion(evaluated, "f1_macro", 0.01).passed
    assert not champion(evaluated, "f1_macro", 0.001).passed
    text = render_markdown({
        "passed": False, "version": None, "metric": "f1_macro", "created": "2026-01-01T00:00:00Z",
        "rules": [{"name": "parity", "passed": False, "observed": None, "threshold": 1e-5, "detail": "a | b"}],
    })
    assert "| parity | **FAIL** | - | 1e-05 | a \\| b |" in text
