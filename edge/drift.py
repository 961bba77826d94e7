"""On-device input drift: PSI of the last window of rows against the release manifest's reference statistics.

``DriftMonitor(manifest)`` keeps the last ``window_rows`` input rows (manifest feature order, missing as
None or NaN) in a preallocated numpy ring. ``observe(row)`` is the hot-path call made once per prediction:
one lock, one row copy into the ring (well under a microsecond); ``observe_batch`` does the same for a
2-D block. Nothing is binned or counted per call: ``scores()`` copies the window under the lock and bins
it with numpy outside it, so a scrape or heartbeat never stalls predictions for long.

PSI per feature, binned exactly as ``edge.contracts.manifest`` documents: value ``x`` falls in bin
``numpy.searchsorted(edges, x, side="right")`` of ``len(edges) + 1`` bins, and "missing" (None/NaN) is one
more bin. Expected shares are ``proportions[i] * (1 - missing_fraction)`` for the value bins and
``missing_fraction`` for the missing bin; actual shares are the window's counts over all its rows. Then
``PSI = sum((a - e) * ln(a / e))`` over the bins, where every share is first clipped from below at
``EPSILON`` (1e-4) so an empty bin gives a large but finite term; a bin empty on both sides adds exactly 0,
and identical shares give exactly 0. A feature whose reference has no values at all (empty ``edges`` and
``proportions``, ``missing_fraction`` 1.0) has one value bin with expected share 0: its PSI grows with the
share of rows that now carry a value. Levels: below 0.1 "none", below 0.25 "moderate", else "major".

Leaves out: deciding what to do about drift (the runner reports it in heartbeats and metrics), drift
of predictions or labels, and persistence (a restart starts an empty window). numpy and stdlib only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np

from edge.contracts.manifest import Manifest

__all__ = ["EPSILON", "MAJOR", "MODERATE", "DriftMonitor", "psi"]

EPSILON = 1e-4  # lower clip for every bin share before the log ratio
MODERATE = 0.1  # PSI at or above this is "moderate" drift
MAJOR = 0.25  # PSI at or above this is "major" drift


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (shares clipped at EPSILON)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


DEFAULT_MIN_ROWS = 1000  # rows a window needs before it is scored


class DriftMonitor:
    """Rolling window of input rows for one manifest; PSI per feature on demand. Thread-safe."""

    def __init__(self, manifest: Manifest, window_rows: int = 5000, min_rows: int | None = None) -> None:
        if window_rows < 1:
            raise ValueError(f"window_rows: expected a positive number of rows, got {window_rows}")
        min_rows = min(DEFAULT_MIN_ROWS, window_rows) if min_rows is None else min_rows
        if not 1 <= min_rows <= window_rows:
            raise ValueError(f"min_rows: expected 1..window_rows ({window_rows}), got {min_rows}")
        self.min_rows = min_rows  # fewer rows in the window: no score (a short window of slow signals is not drift)
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
        self._ring = np.full((window_rows, len(self._names)), np.nan, dtype=np.float64)
        self._next = 0  # ring slot the next row goes to
        self._seen = 0  # rows observed since start (not capped by the window)
        self._lock = threading.Lock()

    @property
    def rows_seen(self) -> int:
        """Rows observed since this monitor was created."""
        return self._seen

    @property
    def rows_in_window(self) -> int:
        return min(self._seen, self.window_rows)

    def observe(self, values: Sequence[float | None]) -> None:
        """Record one input row in manifest feature order (None or NaN = missing). Hot path: O(features)."""
        with self._lock:
            self._ring[self._next] = values
            self._next = (self._next + 1) % self.window_rows
            self._seen += 1

    def observe_batch(self, rows: np.ndarray | Sequence[Sequence[float | None]]) -> None:
        """Record many rows (shape [rows, features]); only the last ``window_rows`` stay in the window."""
        block = np.asarray(rows, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != len(self._names):
            raise ValueError(f"rows: expected shape [rows, {len(self._names)}], got {block.shape}")
        count = block.shape[0]
        kept = block[-self.window_rows:]
        with self._lock:
            slots = (self._next + (count - len(kept)) + np.arange(len(kept))) % self.window_rows
            self._ring[slots] = kept
            self._next = (self._next + count) % self.window_rows
            self._seen += count

    def window(self) -> np.ndarray:
        """A copy of the rows now in the window, oldest first."""
        with self._lock:
            ring, start, filled = self._ring.copy(), self._next, min(self._seen, self.window_rows)
        if filled < self.window_rows:
            return ring[:filled]
        return np.concatenate([ring[start:], ring[:start]])

    def scores(self) -> dict[str, float]:
        """PSI per feature of the current window vs the reference; empty until the window holds
        ``min_rows`` rows (PSI of a few hours of slowly varying sensors is large without any drift)."""
        rows = self.window()
        if len(rows) < self.min_rows:
            return {}
        total = float(len(rows))
        result: dict[str, float] = {}
        for j, name in enumerate(self._names):
            column = rows[:, j]
            missing = np.isnan(column)
            edges = self._edges[j]
            bins = np.searchsorted(edges, column[~missing], side="right")
            counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
            actual = np.append(counts, float(missing.sum())) / total
            result[name] = psi(self._expected[j], actual)
        return result

    def max_score(self) -> float | None:
        """The largest feature PSI, or None before the first row."""
        values = self.scores().values()
        return max(values) if values else None

    @staticmethod
    def level(score: float) -> str:
        """"none" (PSI < 0.1), "moderate" (< 0.25) or "major"."""
        if math.isnan(score):
            raise ValueError("score: PSI is NaN")
        if score < MODERATE:
            return "none"
        return "moderate" if score < MAJOR else "major"
