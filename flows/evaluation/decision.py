"""The gate's release rules: each one a threshold from ``params.gate`` (or ``params.export``), the value
observed in the stage metrics, and pass/fail with a one-line detail. Also renders the decision as Markdown.

Rules, all of which must pass:
- ``data_validation``: ingest curated something (``curated`` batches and their ``rows`` > 0) and the
  quarantined share of batches is ``<= gate.max_quarantined_share``.
- ``parity``: export passed and its ``max_abs_diff <= export.parity_max_abs_diff``.
- ``quality_floor``: candidate ``[gate.metric] >= gate.min_quality``; its detail names the split strategy
  that chose the holdout (``holdout_label``), so the signed manifest records it too.
- ``champion``: candidate ``[gate.metric] >= champion[gate.metric] - gate.champion_tolerance``; passes
  with "no champion" when evaluate had none to compare against.
- ``drift``: share of drifted features ``<= gate.max_drift_share``.
- ``artifacts``: what would ship is what was measured: ``model.onnx`` has the sha256 evaluate scored (and
  export wrote), export named a version, and the reference statistics and training split are present
  and cover the schema's features.

When evaluate weighted the holdout rows by 1/inclusion probability (its candidate has ``weighted_by``),
the metric is named so wherever it appears (``metric_label``), and decision.md shows the unweighted
values beside the weighted ones. A missing or malformed metrics file fails the rules that need it, with
the reason; it never raises.
Pure functions over already-loaded data. Leaves out: reading files and writing the decision (the gate stage's job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge.contracts.manifest import GateRule
from flows.params import Params

RULES = ("data_validation", "parity", "quality_floor", "champion", "drift", "artifacts")


@dataclass(frozen=True)
class Loaded:
    """A metrics file as read: its content, or why there is none."""

    name: str  # e.g. "data/metrics/evaluate.json", for messages
    data: dict[str, Any] | None
    reason: str | None = None


@dataclass(frozen=True)
class Artifacts:
    """Facts about the files a release would be built from (gathered by the gate stage)."""

    model_sha256: str | None  # of data/model/model.onnx; None when absent
    reference_features: list[str] | None  # features in reference_stats.json; None when absent/unreadable
    train_present: bool


class _Missing(Exception):
    """A value a rule needs is absent; the message is the rule's failure detail."""


def _get(loaded: Loaded, *keys: str) -> Any:
    if loaded.data is None:
        raise _Missing(loaded.reason or f"{loaded.name} not found")
    node: Any = loaded.data
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise _Missing(f"{loaded.name} has no {'.'.join(keys[: depth + 1])}")
        node = node[key]
    return node


def _number(loaded: Loaded, *keys: str) -> float:
    value = _get(loaded, *keys)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Missing(f"{loaded.name}: {'.'.join(keys)} is not a finite number ({value!r})")
    return float(value)


def metric_label(metric: str, side: Any) -> str:
    """``metric``, or ``metric (weighted by 1/inclusion probability, N rows)`` for a weighted side."""
    if isinstance(side, dict) and side.get("weighted_by"):
        return f"{metric} (weighted by 1/inclusion probability, {side.get('rows', '?')} rows)"
    return metric


def _fail(name: str, reason: str, threshold: float | None = None) -> GateRule:
    return GateRule(name=name, passed=False, threshold=threshold, observed=None, detail=reason)


def data_validation(ingest: Loaded, max_share: float) -> GateRule:
    try:
        curated, rows = _number(ingest, "curated"), _number(ingest, "rows")
        share = _number(ingest, "quarantined_share")
    except _Missing as exc:
        return _fail("data_validation", str(exc), max_share)
    passed = curated > 0 and rows > 0 and share <= max_share
    detail = f"curated {curated:g} batches, {rows:g} rows; quarantined share {share:.3g} (max {max_share:g})"
    if curated <= 0 or rows <= 0:
        detail = "nothing curated: " + detail
    return GateRule("data_validation", passed, max_share, share, detail)


def parity(export: Loaded, max_diff: float) -> GateRule:
    try:
        export_passed = _get(export, "passed")
        diff = _number(export, "max_abs_diff")
    except _Missing as exc:
        return _fail("parity", str(exc), max_diff)
    passed = export_passed is True and diff <= max_diff
    flips = (export.data or {}).get("label_flips")
    detail = f"export passed={export_passed}, max |p_onnx - p_sklearn| {diff:.3g} (max {max_diff:g})"
    if flips is not None:
        detail += f", label flips {flips}"
    return GateRule("parity", passed, max_diff, diff, detail)


def holdout_label(split: dict[str, Any]) -> str:
    """How the holdout was chosen, e.g. ``split.strategy=group (group_column batch, seed 0), 20% held out``."""
    strategy = split.get("strategy") or "time"
    extra = [f"{key} {split[key]}" for key in ("group_column", "seed") if split.get(key) is not None]
    shown = f"split.strategy={strategy}" + (f" ({', '.join(extra)})" if extra else "")
    fraction = split.get("holdout_fraction")
    return shown + (f", {fraction:.0%} held out" if isinstance(fraction, int | float) else "")


def quality_floor(evaluate: Loaded, metric: str, minimum: float, split: dict[str, Any] | None = None) -> GateRule:
    try:
        value = _number(evaluate, "candidate", metric)
    except _Missing as exc:
        return _fail("quality_floor", str(exc), minimum)
    label = metric_label(metric, (evaluate.data or {}).get("candidate"))
    detail = f"candidate {label} {value:.4f} (min {minimum:g})"
    if split:  # the signed manifest keeps every rule's detail: the release records its holdout
        detail += f" on the holdout of {holdout_label(split)}"
    return GateRule("quality_floor", value >= minimum, minimum, value, detail)


def champion(evaluate: Loaded, metric: str, tolerance: float) -> GateRule:
    try:
        value = _number(evaluate, "candidate", metric)
        has_champion = _get(evaluate, "champion") is not None
        best = _number(evaluate, "champion", metric) if has_champion else None
    except _Missing as exc:
        return _fail("champion", str(exc))
    if best is None:
        note = (evaluate.data or {}).get("champion_note") or "no champion"
        return GateRule("champion", True, None, value, str(note))
    version = (evaluate.data or {}).get("champion_version") or "?"
    floor = best - tolerance
    label = metric_label(metric, (evaluate.data or {}).get("candidate"))
    detail = f"candidate {label} {value:.4f} vs champion {version} {best:.4f} (tolerance {tolerance:g})"
    return GateRule("champion", value >= floor, floor, value, detail)


def drift(evaluate: Loaded, max_share: float) -> GateRule:
    try:
        share = _number(evaluate, "drift", "share")
    except _Missing as exc:
        return _fail("drift", str(exc), max_share)
    drifted = (evaluate.data or {}).get("drift", {}).get("drifted") or []
    names = ", ".join(map(str, drifted)) if drifted else "none"
    detail = f"drifted share {share:.3g} (max {max_share:g}); drifted: {names}"
    return GateRule("drift", share <= max_share, max_share, share, detail)


def artifacts(export: Loaded, evaluate: Loaded, facts: Artifacts, features: list[str]) -> GateRule:
    problems = _artifact_problems(export, evaluate, facts, features)
    if problems:
        return _fail("artifacts", "; ".join(problems))
    return GateRule("artifacts", True, None, None, f"model.onnx sha256 {facts.model_sha256} is the one evaluated")


def _artifact_problems(export: Loaded, evaluate: Loaded, facts: Artifacts, features: list[str]) -> list[str]:
    problems = []
    if facts.model_sha256 is None:
        problems.append("data/model/model.onnx not found")
    for loaded, keys in ((evaluate, ("candidate", "sha256")), (export, ("onnx_sha256",))):
        try:
            recorded = _get(loaded, *keys)
        except _Missing as exc:
            problems.append(str(exc))
            continue
        if facts.model_sha256 is not None and recorded != facts.model_sha256:
            problems.append(f"model.onnx changed since {loaded.name} was written")
    try:
        version = _get(export, "candidate_version")
        if not isinstance(version, str) or not version:
            problems.append(f"{export.name}: candidate_version is not a string")
    except _Missing as exc:
        problems.append(str(exc))
    if facts.reference_features is None:
        problems.append("data/evaluate/reference_stats.json not found or unreadable")
    elif facts.reference_features != features:
        problems.append("reference_stats.json features differ from params.schema (re-run evaluate)")
    if not facts.train_present:
        problems.append("data/split/train.parquet not found (lineage needs it)")
    return list(dict.fromkeys(problems))


def evaluate_rules(
    params: Params, ingest: Loaded, export: Loaded, evaluate: Loaded, facts: Artifacts,
    split: dict[str, Any] | None = None,
) -> list[GateRule]:
    gate = params.gate
    return [
        data_validation(ingest, gate.max_quarantined_share),
        parity(export, params.export.parity_max_abs_diff),
        quality_floor(evaluate, gate.metric, gate.min_quality, split),
        champion(evaluate, gate.metric, gate.champion_tolerance),
        drift(evaluate, gate.max_drift_share),
        artifacts(export, evaluate, facts, params.schema.feature_names),
    ]


def reasons(rules: list[GateRule]) -> list[str]:
    return [f"{r.name}: {r.detail}" for r in rules if not r.passed]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(decision: dict[str, Any]) -> str:
    """``decision.md``: verdict, the rule table, and the candidate's and champion's metrics."""
    verdict = "PASSED" if decision["passed"] else "BLOCKED"
    lines = [
        f"# Release gate: {verdict}",
        "",
        f"- candidate version: {decision.get('version') or '-'}",
        f"- gate metric: {metric_label(decision['metric'], decision.get('candidate'))}",
        f"- holdout: {holdout_label(decision.get('split') or {})}",
        f"- decided: {decision['created']}",
        "",
        "| rule | result | observed | threshold | detail |",
        "|---|---|---|---|---|",
    ]
    for rule in decision["rules"]:
        result = "pass" if rule["passed"] else "**FAIL**"
        lines.append(
            f"| {rule['name']} | {result} | {_cell(rule['observed'])} | {_cell(rule['threshold'])} "
            f"| {_cell(rule['detail'])} |"
        )
    lines += _metrics_table(decision)
    return "\n".join(lines) + "\n"


def _metrics_table(decision: dict[str, Any]) -> list[str]:
    candidate, best = decision.get("candidate") or {}, decision.get("champion") or {}
    names = [n for n in ("accuracy", "balanced_accuracy", "f1_macro") if n in candidate or n in best]
    if not names:
        return []
    if not candidate.get("weighted_by"):
        lines = ["", "| metric | candidate | champion |", "|---|---|---|"]
        for name in names:
            lines.append(f"| {name} | {_cell(candidate.get(name))} | {_cell(best.get(name))} |")
        return lines
    raw, raw_best = candidate.get("unweighted") or {}, best.get("unweighted") or {}
    lines = [
        "",
        f"Weighted by 1/inclusion probability over {candidate.get('rows', '?')} holdout rows (the gate reads "
        "these); unweighted = the Evidently reports' view of the same rows.",
        "",
        "| metric | candidate | champion | candidate unweighted | champion unweighted |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        cells = [candidate.get(name), best.get(name), raw.get(name), raw_best.get(name)]
        lines.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    return lines
