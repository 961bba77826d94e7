"""gate: decide whether the candidate may be released, and if so assemble the release candidate.

Reads ``data/metrics/{ingest,export,evaluate,split}.json`` and applies the rules of
``flows.evaluation.decision`` with thresholds from ``params.gate`` (and ``params.export``). A missing or
malformed metrics file fails the rules that need it, with the reason; it never crashes the stage.

Writes ``data/candidate/`` as a whole, atomically (built in a temporary sibling, then swapped in):
always ``decision.json`` and ``decision.md``; when every rule passed also ``model.onnx`` (a copy of
``data/model/model.onnx``), ``manifest.json`` (``edge.contracts.manifest``: version from export.json, reference
statistics from ``data/evaluate/reference_stats.json``, lineage from ``flows.lineage`` with the data
hash being ``frame_hash`` of the training split, as export records it) and ``reports/`` (copies of
the evaluate HTML reports) and ``lineage/`` (the exact dvc.lock and params.yaml bytes the manifest's
lineage describes, for ``edgeloop release reproduce``). A blocked candidate is a valid outcome:
``main`` returns normally with ``passed: False`` and the reasons; the CLI and the Prefect flow surface it.
``decision.json`` also records how the holdout was chosen (``split``: strategy, fraction, seed or group
column, classes missing from the holdout; from ``data/metrics/split.json``), and the quality rule's detail
names it, so the release manifest carries it. When training used recency (``train.recency_half_life_h`` or
``train.window_h``), ``decision.json`` also has ``training``: those knobs and the weights, from ``train.json``.

Leaves out: publishing (TUF) and signing; promoting the candidate to champion.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.atomic import write_bytes_atomic, write_text_atomic
from edge.contracts.layout import Paths
from edge.contracts.manifest import GateRule, Lineage, ManifestError
from edge.contracts.release_layout import LINEAGE_FILES, MANIFEST_FILE, MODEL_FILE
from flows.evaluation.bundle import (
    build_manifest,
    gate_result,
    make_staging_dir,
    reference_from_json,
    replace_dir,
    utc_now,
)
from flows.evaluation.decision import Artifacts, Loaded, evaluate_rules, reasons, render_markdown
from flows.evaluation.overview import candidate_report_links, project_quarantine_reasons, render_overview
from flows.lineage import frame_hash, git_commit, library_versions
from flows.params import Params
from flows.stages import StageError

METRICS_FILES = ("ingest", "export", "evaluate")


def load_metrics(path: Path, name: str) -> Loaded:
    """A metrics file's content, or why it cannot be used (never raises)."""
    if not path.is_file():
        return Loaded(name, None, f"{name} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Loaded(name, None, f"{name} unreadable: {exc}")
    if not isinstance(data, dict):
        return Loaded(name, None, f"{name} is not a JSON object")
    return Loaded(name, data)


def _reference_features(path: Path) -> list[str] | None:
    try:
        features = json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return list(features) if isinstance(features, dict) else None


SPLIT_KEYS = ("strategy", "holdout_fraction", "group_column", "seed", "groups", "holdout_groups",
              "holdout_missing_classes")


def split_facts(params: Params, paths: Paths) -> dict[str, Any]:
    """How the holdout was chosen: from ``data/metrics/split.json`` (what the split stage did), else from
    ``params.split`` (an older split that did not record it)."""
    loaded = load_metrics(paths.metrics / "split.json", "data/metrics/split.json")
    if loaded.data is not None and isinstance(loaded.data.get("strategy"), str):
        return {key: loaded.data[key] for key in SPLIT_KEYS if key in loaded.data}
    settings = params.split
    facts: dict[str, Any] = {"strategy": settings.strategy, "holdout_fraction": settings.holdout_fraction}
    if settings.strategy == "group":
        facts["group_column"] = settings.group_column
    if settings.strategy in ("group", "stratified_random"):
        facts["seed"] = settings.seed
    return facts


def gather_artifacts(paths: Paths) -> Artifacts:
    model = paths.model / MODEL_FILE
    return Artifacts(
        model_sha256=hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None,
        reference_features=_reference_features(paths.data / "evaluate" / "reference_stats.json"),
        train_present=(paths.split / "train.parquet").is_file(),
    )




def snapshot_lineage_files(paths: Paths) -> dict[str, bytes]:
    """The bytes of dvc.lock and params.yaml as they are now: the release keeps exactly these, and the
    manifest hashes exactly these (dvc.lock changes again once this stage's own entry is recorded)."""
    return {name: (paths.root / name).read_bytes() for name in LINEAGE_FILES if (paths.root / name).is_file()}


def lineage(params: Params, paths: Paths, files: dict[str, bytes]) -> Lineage:
    import pandas as pd

    lock = files.get("dvc.lock")
    return Lineage(
        data_hash=frame_hash(pd.read_parquet(paths.split / "train.parquet")),
        params_hash=params.section_hash(),
        schema_hash=params.schema.fingerprint(),
        dvc_lock_hash=hashlib.sha256(lock).hexdigest() if lock is not None else None,
        git_commit=git_commit(paths.root),
        libraries=library_versions(),
    )


def write_release(
    staging: Path, params: Params, paths: Paths, decision: dict[str, Any], rules: list[GateRule]
) -> None:
    """model.onnx, manifest.json and reports/ of a passed candidate, into the staging folder."""
    model = (paths.model / MODEL_FILE).read_bytes()
    stats_path = paths.data / "evaluate" / "reference_stats.json"
    gate = gate_result(True, params.gate.metric, decision["candidate"] or {}, rules)
    files = snapshot_lineage_files(paths)
    try:
        reference = reference_from_json(json.loads(stats_path.read_text(encoding="utf-8")))
        manifest = build_manifest(
            params, decision["version"], model, reference, gate, lineage(params, paths, files),
            created=decision["created"],
        )
    except ManifestError as exc:
        raise StageError(f"cannot build the release manifest: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StageError(f"{stats_path} is malformed ({exc!r}): re-run evaluate") from None
    write_bytes_atomic(staging / MODEL_FILE, model)
    write_text_atomic(staging / MANIFEST_FILE, manifest.to_json())
    for name, data in files.items():  # what `edgeloop release reproduce` rebuilds the release from
        write_bytes_atomic(staging / "lineage" / name, data)
    reports = staging / "reports"
    reports.mkdir()
    for html in sorted((paths.reports / "evaluate").glob("*.html")):
        shutil.copyfile(html, reports / html.name)


def overview_page(params: Params, paths: Paths, decision: dict[str, Any], loaded: dict[str, Loaded],
                  passed: bool, page_dir: Path) -> str:
    """index.html of the candidate folder: the decision and its evidence, linking every report that exists
    beside ``page_dir`` (the folder it is written in) and naming the ones not built."""
    links, missing = candidate_report_links(params, paths, page_dir, passed)
    return render_overview(
        decision,
        loaded["ingest"].data or {},
        loaded["evaluate"].data or {},
        project_quarantine_reasons(params, paths),
        links,
        missing,
    )


def main(params: Params, paths: Paths) -> dict[str, Any]:
    loaded = {name: load_metrics(paths.metrics / f"{name}.json", f"data/metrics/{name}.json") for name in METRICS_FILES}
    split = split_facts(params, paths)
    rules = evaluate_rules(params, loaded["ingest"], loaded["export"], loaded["evaluate"], gather_artifacts(paths),
                           split)
    passed = all(rule.passed for rule in rules)
    evaluate = loaded["evaluate"].data or {}
    version = (loaded["export"].data or {}).get("candidate_version")
    decision = {
        "passed": passed,
        "version": version if isinstance(version, str) else None,
        "created": utc_now(),
        "metric": params.gate.metric,
        "rules": [asdict(rule) for rule in rules],
        "reasons": reasons(rules),
        "candidate": evaluate.get("candidate"),
        "champion": evaluate.get("champion"),
        "champion_version": evaluate.get("champion_version"),
        "split": split,
    }
    trained = load_metrics(paths.metrics / "train.json", "data/metrics/train.json").data or {}
    if isinstance(trained.get("recency"), dict):  # how recency shaped training (absent when it was off)
        decision["training"] = {key: trained[key] for key in ("recency", "weighting", "rows") if key in trained}
    staging = make_staging_dir(paths.candidate)
    try:
        write_text_atomic(staging / "decision.json", json.dumps(decision, indent=2, sort_keys=True) + "\n")
        write_text_atomic(staging / "decision.md", render_markdown(decision))
        if passed:
            write_release(staging, params, paths, decision, rules)
        write_text_atomic(staging / "index.html", overview_page(params, paths, decision, loaded, passed, staging))
        replace_dir(staging, paths.candidate)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "passed": passed,
        "reasons": decision["reasons"],
        "rules": decision["rules"],
        "candidate_dir": str(paths.candidate),
        "version": decision["version"],
    }
