"""The release candidate: its manifest (``edge.contracts.manifest``) and the atomic replacement of its folder.

``build_manifest`` turns params, the gate's verdict, reference statistics, lineage and the model bytes
into a validated ``Manifest``: features and classes from ``params.schema``; ``positive_class`` only for
binary labels (None otherwise); ``decision_threshold`` and ``min_runner_version`` from ``params.gate``;
``policy`` from ``params.release.edge_policy``; ``columns`` (event id, device id, event time) from the schema.

``replace_dir`` swaps a fully built folder into place: the new folder is built in a temporary sibling,
the old one is renamed aside, the new one renamed in, the old one deleted. A reader sees the old folder
or the new one; between the two renames (microseconds) the path is briefly absent, and a crash there
leaves the old folder as ``.<name>.old-*`` which the next swap cleans up. (Linux's RENAME_EXCHANGE would
close that window but is not in Python's standard library.)

Leaves out: deciding (``decision``), publishing (TUF), and signing.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.atomic import replace_dir as swap_dir
from edge.contracts.manifest import (
    EdgePolicy,
    GateResult,
    GateRule,
    Lineage,
    Manifest,
    RecordColumns,
    ReferenceStats,
    model_file,
)
from edge.contracts.schema import FeatureSpec
from flows.params import Params


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def reference_from_json(raw: dict[str, Any]) -> dict[str, ReferenceStats]:
    """``reference_stats.json`` (``flows.reference_stats``) to the manifest's reference entries."""
    return {
        name: ReferenceStats(
            edges=tuple(float(e) for e in stats["edges"]),
            proportions=tuple(float(p) for p in stats["proportions"]),
            missing_fraction=float(stats["missing_fraction"]),
        )
        for name, stats in raw["features"].items()
    }


def build_manifest(
    params: Params,
    version: str,
    model: bytes,
    reference: dict[str, ReferenceStats],
    gate: GateResult,
    lineage: Lineage,
    created: str | None = None,
) -> Manifest:
    schema = params.schema
    label = schema.label
    manifest = Manifest(
        version=version,
        created=created or utc_now(),
        features=tuple(
            FeatureSpec(name=f.name, dtype=f.dtype, min=f.min, max=f.max, unit=f.unit, nullable=f.nullable)
            for f in schema.features
        ),
        label=label.name,
        classes=tuple(label.classes),
        positive_class=label.positive_class if label.is_binary else None,
        decision_threshold=params.gate.decision_threshold,
        reference={name: reference[name] for name in schema.feature_names},
        gate=gate,
        lineage=lineage,
        min_runner_version=params.gate.min_runner_version,
        model=model_file(model),
        policy=EdgePolicy(**params.release.edge_policy.model_dump()),
        columns=RecordColumns(event_id=schema.event_id, device_id=schema.device_id, event_time=schema.event_time),
    )
    manifest.to_json()  # validates: raises ManifestError naming the field
    return manifest


def gate_result(passed: bool, metric: str, metrics: dict[str, Any], rules: list[GateRule]) -> GateResult:
    names = ("accuracy", "balanced_accuracy", "f1_macro")
    quality: dict[str, float] = {k: float(metrics[k]) for k in names if k in metrics}
    return GateResult(passed=passed, metric=metric, metrics=quality, rules=tuple(rules))


def make_staging_dir(target: Path) -> Path:
    """An empty temporary sibling of ``target`` to build the new folder in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the candidate is read by publishing and people
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Swap ``staging`` in as ``target`` (see the module docstring), then remove the old folder."""
    _remove_leftovers(target, keep=staging)
    swap_dir(staging, target)


def _remove_leftovers(target: Path, keep: Path) -> None:
    for pattern in (f".{target.name}.old-*", f".{target.name}.new-*"):
        for leftover in target.parent.glob(pattern):
            if leftover != keep and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
