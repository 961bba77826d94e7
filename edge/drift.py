"""On-device input drift: PSI of a window of rows against the release manifest's reference statistics.

``DriftMonitor(manifest, window_rows, min_rows)`` holds one manifest's reference (bin edges and expected
shares per feature); ``scores(rows)`` bins the last ``window_rows`` of ``rows`` (``[rows, features]`` in
manifest feature order, NaN for missing, oldest first) with numpy. The rows themselves are kept
elsewhere: the runner's recent-predictions ring (edge.pending) is the window, so a prediction costs drift
nothing but its row write there.

PSI per feature, binned exactly as ``edge.contracts.manifest`` documents: value ``x`` falls in bin
``numpy.searchsorted(edges, x, side="right")`` of ``len(edges) + 1`` bins, and "missing" (NaN) is one
more bin. Expected shares are ``proportions[i] * (1 - missing_fraction)`` for the value bins and
``missing_fraction`` for the missing bin; actual shares are the window's counts over all its rows. Then
``PSI = sum((a - e) * ln(a / e))`` over the bins, where every share is first clipped from below at
``EPSILON`` (1e-4) so an empty bin gives a large but finite term; a bin empty on both sides adds exactly 0,
and identical shares give exactly 0. A feature whose reference has no values at all (empty ``edges`` and
``proportions``, ``missing_fraction`` 1.0) has one value bin with expected share 0: its PSI grows with the
share of rows that now carry a value. A window of fewer than ``min_rows`` rows has no score (PSI of a few
hours of slowly varying sensors is large without any drift). Levels: below 0.1 "none", below 0.25
"moderate", else "major".

Leaves out: keeping the rows (edge.pending), deciding what to do about drift (the runner reports it in
heartbeats and metrics), drift of predictions or labels. numpy and stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.config import DriftConfig
from edge.contracts.manifest import Manifest

__all__ = ["EPSILON", "MAJOR", "MODERATE", "DriftMonitor", "psi"]

EPSILON = 1e-4  # lower clip for every bin share before the log ratio
MODERATE = DriftConfig.moderate_psi  # PSI at or above this is "moderate" drift (0.1; runner.toml may set another)
MAJOR = DriftConfig.major_psi  # PSI at or above this is "major" drift (0.25)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (shares clipped at EPSILON)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """PSI per feature of a window of rows against one manifest's reference. Immutable, thread safe."""

    def __init__(self, manifest: Manifest, window_rows: int = DriftConfig.window_rows,
                 min_rows: int | None = None) -> None:
        if window_rows < 1:
            raise ValueError(f"window_rows: expected a positive number of rows, got {window_rows}")
        min_rows = min(DriftConfig.min_rows, window_rows) if min_rows is None else min_rows
        if not 1 <= min_rows <= window_rows:
            raise ValueError(f"min_rows: expected 1..window_rows ({window_rows}), got {min_rows}")
        self.min_rows = min_rows
        self.version = manifest.version
        self.window_rows = window_rows
        self._names = tuple(manifest.feature_names)
        self._edges: list[np.ndarray] = []
        self._expected: list[np.ndarray] = []
        for name in self._names:
            ref = manifest.reference[name]
            proportions = list(ref.proportions) or [0.0]  # no training value at all: one empty value bin
            shares = [p * (1.0 - ref.missing_fraction) for p in proportions] + [ref.missing_fraction]
            self._edges.append(np.asarray(ref.edges, dtype=np.float64))
            self._expected.append(np.asarray(shares, dtype=np.float64))

    def scores(self, rows: np.ndarray) -> dict[str, float]:
        """PSI per feature of the last ``window_rows`` of ``rows``; empty below ``min_rows`` rows."""
        window = np.asarray(rows, dtype=np.float64)[-self.window_rows:]
        if window.ndim != 2 or window.shape[1] != len(self._names):
            raise ValueError(f"rows: expected shape [rows, {len(self._names)}], got {window.shape}")
        if len(window) < self.min_rows:
            return {}
        total = float(len(window))
        result: dict[str, float] = {}
        for j, name in enumerate(self._names):
            column = window[:, j]
            missing = np.isnan(column)
            edges = self._edges[j]
            bins = np.searchsorted(edges, column[~missing], side="right")
            counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
            actual = np.append(counts, float(missing.sum())) / total
            result[name] = psi(self._expected[j], actual)
        return result

    def max_score(self, rows: np.ndarray) -> float | None:
        """The largest feature PSI of ``rows``, or None when they are too few to score."""
        values = self.scores(rows).values()
        return max(values) if values else None

    @staticmethod
    def level(score: float, moderate: float = MODERATE, major: float = MAJOR) -> str:
        """"none" (PSI < ``moderate``, 0.1 unless the runner's ``drift.moderate_psi`` says otherwise),
        "moderate" (< ``major``, 0.25 unless ``drift.major_psi``) or "major"."""
        if math.isnan(score):
            raise ValueError("score: PSI is NaN")
        if score < moderate:
            return "none"
        return "moderate" if score < major else "major"
