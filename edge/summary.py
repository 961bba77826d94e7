"""Aggregates-only uploads: what a device sends instead of rows when ``upload.mode = "aggregates"``.

A ``SummaryAccumulator`` collects every labelled row of one interval and ``flush()`` turns them into one
JSON-ready document: the interval, device, model versions, counts of labelled rows, the confusion
matrix (prediction -> label -> count), accuracy, rows per would-be upload reason, and per-feature count,
missing, mean, min and max. Features named local-only get counts only (no values). Drift scores are
added by the caller. No row, event id or context value is kept.

Leaves out: when a document is made and stored (edge.upload_loop: every ``upload.summary_interval_s``),
sending it (edge.uploader), and unlabelled predictions (counted by edge.pending).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from edge.contracts.manifest import Manifest
from edge.contracts.schema import ClassValue

__all__ = ["SummaryAccumulator"]


class _FeatureStats:
    __slots__ = ("count", "missing", "total", "low", "high")

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, value: object) -> None:
        number = math.nan if value is None else float(value)  # type: ignore[arg-type]  # checked by predict
        if number != number:
            self.missing += 1
            return
        self.count += 1
        self.total += number
        self.low = min(self.low, number)
        self.high = max(self.high, number)

    def as_dict(self, hide_values: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "missing": self.missing}
        if self.count and not hide_values:
            out |= {"mean": self.total / self.count, "min": self.low, "max": self.high}
        return out


class SummaryAccumulator:
    def __init__(self, device_id: str, local_only: Sequence[str] = ()) -> None:
        self.device_id = device_id
        self._hidden = frozenset(local_only)
        self._lock = threading.Lock()
        self._reset()

    def hide(self, local_only: Sequence[str]) -> None:
        """From now on, summaries leave out the values of these features (a new runner policy's local_only)."""
        with self._lock:
            self._hidden = frozenset(local_only)

    def _reset(self) -> None:
        self._started = datetime.now(UTC)
        self._rows = 0
        self._correct = 0
        self._confusion: dict[str, dict[str, int]] = {}
        self._reasons: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._features: dict[str, _FeatureStats] = {}

    def add(self, manifest: Manifest, features: Sequence[object], prediction: ClassValue, label: ClassValue,
            model_version: str, reason: str | None) -> None:
        with self._lock:
            self._rows += 1
            self._correct += prediction == label
            row = self._confusion.setdefault(str(prediction), {})
            row[str(label)] = row.get(str(label), 0) + 1
            key = reason or "none"
            self._reasons[key] = self._reasons.get(key, 0) + 1
            self._versions[model_version] = self._versions.get(model_version, 0) + 1
            for name, value in zip(manifest.feature_names, features, strict=True):
                self._features.setdefault(name, _FeatureStats()).add(value)

    def flush(self, drift: dict[str, float] | None = None) -> dict[str, Any] | None:
        """The document for the interval so far (None when no labelled row came in), and a new interval."""
        with self._lock:
            if not self._rows:
                return None
            doc: dict[str, Any] = {
                "kind": "edgeloop.summary", "format": 1, "device_id": self.device_id,
                "from": self._started.isoformat(), "to": datetime.now(UTC).isoformat(),
                "labelled_rows": self._rows, "accuracy": self._correct / self._rows,
                "confusion": self._confusion, "would_upload": self._reasons, "model_versions": self._versions,
                "features": {name: stats.as_dict(name in self._hidden) for name, stats in self._features.items()},
                "drift": {k: v for k, v in (drift or {}).items() if k not in self._hidden and math.isfinite(v)},
            }
            self._reset()
            return doc
