"""Per-feature reference statistics of the training data, shipped in the manifest for edge drift checks.

For each schema feature: quantile bin ``edges``, the share of non-missing training values per bin
(``proportions``) and the share of missing values (``missing_fraction``); the layout is
``edge.contracts.manifest.ReferenceStats``.

Bin rule (the one the device must use, see ``edge.contracts.manifest``): ``edges`` are the *inner* edges only,
finite and strictly increasing; value ``x`` falls in bin ``numpy.searchsorted(edges, x, side="right")``,
so there are ``len(edges) + 1`` bins, the first open to -inf, the last open to +inf, each closed on the
left. Values outside the training range therefore land in the end bins and no mass is lost. This module
computes the proportions with exactly that call, so a device gets the same bins bit for bit.

Edges: for each level ``1/bins ... (bins-1)/bins``, take the ``inverted_cdf`` quantile ``q`` of the
finite non-missing values and use the smallest observed value *above* ``q`` (so a tie, e.g. a spike at
0, stays whole in the bin below the edge); de-duplicate. Every edge is an observed value and the lowest
value lies below the first edge, so every bin holds training values and PSI never divides by an empty
reference bin. Ties can give fewer than ``bins`` bins (a constant feature gets one). A feature with no
non-missing value gets empty edges and proportions. Deterministic: the same frame gives the same numbers.

Leaves out: drift scoring itself (PSI is the device's job), categorical features (the schema has none)
and any file I/O (the evaluate stage writes the result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from edge.contracts.schema import DataSchema

BIN_RULE = 'bin = numpy.searchsorted(edges, x, side="right"); len(edges) + 1 bins; NaN counts as missing'


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each (non-missing) value: the rule shared with the device."""
    return np.searchsorted(edges, values, side="right")


def feature_stats(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Edges, proportions and missing fraction of one feature's training values."""
    column = np.asarray(values, dtype=np.float64)
    if column.size == 0:
        raise ValueError("no rows: reference statistics need training data")
    present = column[~np.isnan(column)]
    missing_fraction = float((column.size - present.size) / column.size)
    if present.size == 0:
        return {"edges": [], "proportions": [], "missing_fraction": missing_fraction}
    finite = present[np.isfinite(present)]
    edges = _edges(finite, bins) if finite.size else np.empty(0)  # only infinities: one bin
    counts = np.bincount(bin_index(edges, present), minlength=edges.size + 1)
    proportions = counts / counts.sum()
    return {
        "edges": [float(e) for e in edges],
        "proportions": [float(p) for p in proportions],
        "missing_fraction": missing_fraction,
    }


def _edges(finite: np.ndarray, bins: int) -> np.ndarray:
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    distinct = np.unique(finite)
    quantiles = np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")
    above = np.unique(np.searchsorted(distinct, quantiles, side="right"))
    edges: np.ndarray = distinct[above[above < distinct.size]]
    return edges


def reference_stats(frame: pd.DataFrame, schema: DataSchema, bins: int) -> dict[str, Any]:
    """``{"bins", "rule", "rows", "features": {name: {edges, proportions, missing_fraction}}}``.

    Features in schema order; ``bins`` is the requested count (``params.evaluate.reference_bins``).
    """
    missing = [name for name in schema.feature_names if name not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks feature columns {missing}")
    features = {name: feature_stats(frame[name].to_numpy(dtype=np.float64, na_value=np.nan), bins)
                for name in schema.feature_names}
    return {"bins": bins, "rule": BIN_RULE, "rows": len(frame), "features": features}
