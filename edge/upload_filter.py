"""The upload filter: at feedback time, decide whether a labelled row goes back to the cloud, and why.

Only labelled rows are ground truth (ingest requires a label), so the filter runs when the true label
arrives. ``select`` returns a ``Selection`` (reason + inclusion probability) or None (keep it local).
Reasons, in precedence order (the first that applies wins):

- ``labelled``: the label disagrees with the prediction (a labelled mistake). Always kept.
- ``anomaly`` (when ``policy.anomalies``): a feature was outside its manifest min/max
  (``Prediction.out_of_range``), or a feature was missing although the manifest's reference says
  missing values are rare there (``missing_fraction < policy.rare_missing``; needs ``features``).
- ``uncertain``: low margin. Binary: ``|p(positive) - decision_threshold| < uncertain_margin``; more
  classes: ``top1 - top2 < uncertain_margin``.
- ``random``: otherwise, kept when ``sample_unit(device_id, event_id) < random_rate``: a sha256 draw,
  so the same row gets the same answer after a restart and the draw does not depend on the data.

``inclusion_probability`` is the probability that the row would be uploaded under the policy: 1 when
a deterministic reason applies, else ``random_rate``; the cloud weighs rows by ``1 / p``.

Leaves out: building the uploaded row and privacy (edge.ground_truth), the aggregates-only mode
itself (``policy.mode`` is read by edge.feedback, which feeds summaries instead of spooling rows;
``select`` answers the same either way) and any I/O. Standard library only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge.contracts.manifest import Manifest
from edge.contracts.schema import ClassValue
from edge.inference import Prediction

__all__ = ["PRECEDENCE", "Selection", "UploadPolicy", "sample_unit", "select"]

PRECEDENCE: tuple[str, ...] = ("labelled", "anomaly", "uncertain", "random")  # first applicable wins
_UNIT = float(2**64)


@dataclass(frozen=True)
class UploadPolicy:
    """Which labelled rows go back to the cloud. Validated on construction (ValueError naming the field)."""

    uncertain_margin: float = 0.1  # probability margin below which a prediction counts as uncertain
    random_rate: float = 0.02  # share of the remaining labelled rows sampled uniformly
    anomalies: bool = True  # upload rows with out-of-range or unexpectedly missing features
    mode: Literal["rows", "aggregates"] = "rows"  # "aggregates": send summaries, never rows
    local_only: tuple[str, ...] = ()  # feature or context names that never leave the device
    rare_missing: float = 0.005  # a missing value is an anomaly where the training share missing is below this

    def __post_init__(self) -> None:
        for name in ("uncertain_margin", "random_rate", "rare_missing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
        if self.mode not in ("rows", "aggregates"):
            raise ValueError(f"mode: expected 'rows' or 'aggregates', got {self.mode!r}")
        if not isinstance(self.local_only, tuple) or not all(isinstance(n, str) and n for n in self.local_only):
            raise ValueError(f"local_only: expected a tuple of non-empty names, got {self.local_only!r}")


@dataclass(frozen=True)
class Selection:
    reason: str  # one of PRECEDENCE (edge.contracts.record.UPLOAD_REASONS)
    inclusion_probability: float  # P(this row is uploaded under the policy)


def sample_unit(device_id: str, event_id: int) -> float:
    """A uniform draw in [0, 1) fixed by (device_id, event_id): sha256, first 8 bytes."""
    digest = hashlib.sha256(f"{device_id}\x00{event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _UNIT


def select(
    policy: UploadPolicy,
    prediction: Prediction,
    label: ClassValue,
    device_id: str,
    manifest: Manifest,
    features: Sequence[float | None] | None = None,
) -> Selection | None:
    """Why this labelled row should be uploaded (see the module docstring), or None to keep it local.

    ``features`` (manifest order, None/NaN for missing) enables the missing-value anomaly rule.
    Raises ValueError for a label that is not one of the manifest's classes.
    """
    if label not in manifest.classes or isinstance(label, bool):
        raise ValueError(f"label: {label!r} is not one of the classes {list(manifest.classes)}")
    if label != prediction.label:
        return Selection("labelled", 1.0)
    if policy.anomalies and _anomalous(policy, prediction, manifest, features):
        return Selection("anomaly", 1.0)
    if _margin(prediction, manifest) < policy.uncertain_margin:
        return Selection("uncertain", 1.0)
    if sample_unit(device_id, prediction.event_id) < policy.random_rate:
        return Selection("random", float(policy.random_rate))
    return None


def _anomalous(policy: UploadPolicy, prediction: Prediction, manifest: Manifest,
               features: Sequence[float | None] | None) -> bool:
    if prediction.out_of_range:
        return True
    if features is None:
        return False
    if len(features) != len(manifest.features):
        raise ValueError(f"features: expected {len(manifest.features)} values, got {len(features)}")
    for spec, value in zip(manifest.features, features, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            stats = manifest.reference.get(spec.name)
            if stats is None or stats.missing_fraction < policy.rare_missing:
                return True
    return False


def _margin(prediction: Prediction, manifest: Manifest) -> float:
    probs = prediction.probabilities
    if manifest.is_binary and manifest.positive_class is not None:
        return abs(float(probs[manifest.positive_class]) - manifest.decision_threshold)
    top = sorted((float(p) for p in probs.values()), reverse=True)
    return top[0] - top[1] if len(top) > 1 else 1.0
