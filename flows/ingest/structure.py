"""The checks that only make sense per batch, run before batches are validated together.

A column-level GX check cannot say which batch of a concatenation broke it, so these are checked per
batch first, on the normalised rows of a ``flows.ingest.combine.Piece``: a required column missing,
a row count outside [``ingest.min_rows``, ``ingest.max_rows``], and a number column (features, the
event id, the inclusion probability) holding a value of the wrong type (text in a float column, a
fraction in an int column). The batches found are *suspects*: they are set aside (``set_aside``,
which normalises the remaining rows again so their columns get back the types one batch alone would
have) and judged one by one with the per-batch GX suite, which words the reason. A suspect may still
pass there: these checks err on the side of suspicion, never the other way. Leaves out: row-level
checks (ranges, classes, nulls, uniqueness, event-time bounds: the bulk GX suite) and wording reasons.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from edge.contracts.record import INCLUSION_PROBABILITY
from edge.contracts.schema import DataSchema
from flows.ingest.combine import Piece
from flows.ingest.normalise import EXACT_IN_FLOAT
from flows.ingest.suite import FLOAT_TYPES, INT_TYPES, type_list
from flows.params import IngestParams

Normaliser = Callable[[pd.DataFrame, DataSchema], pd.DataFrame]


def number_columns(schema: DataSchema) -> dict[str, list[str]]:
    """Number columns and the column types the GX suites accept for each."""
    out = {f.name: type_list(f.dtype) for f in schema.features}
    out[schema.event_id] = list(INT_TYPES)
    out[INCLUSION_PROBABILITY] = [*FLOAT_TYPES, *INT_TYPES]
    return out


def dtype_accepted(dtype: object, accepted: list[str]) -> bool:
    """As GX's type expectation judges a whole column: numpy dtype name or pandas extension dtype class."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return type(dtype).__name__ in accepted
    return getattr(dtype, "name", "") in accepted


def _wrong_values(column: pd.Series, accepted: list[str]) -> np.ndarray:
    """Rows whose value is not one of the accepted types (nulls are never wrong here)."""
    ints_only = "float" not in accepted
    present = column.notna().to_numpy()
    if ptypes.is_object_dtype(column.dtype):
        allowed: tuple[type, ...] = (int, np.integer) if ints_only else (int, float, np.integer, np.floating)
        right = column.map(lambda v: isinstance(v, allowed) and not isinstance(v, bool | np.bool_)).to_numpy(bool)
        return present & ~right
    if ints_only and ptypes.is_float_dtype(column.dtype):
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) <= EXACT_IN_FLOAT)
        wrong = present & ~whole
        return wrong if wrong.any() else present  # float64 of whole numbers only: GX still says float64
    return present if present.any() else np.ones(len(column), dtype=bool)


def suspects(piece: Piece, schema: DataSchema, ingest: IngestParams) -> set[int]:
    """Batch keys of ``piece`` that must be judged on their own (see the module docstring)."""
    frame, keys = piece.frame, piece.keys
    if any(name not in frame.columns for name in schema.column_names):
        return set(piece.members)
    members = np.asarray(piece.members, dtype=np.int64)
    rows = pd.Series(keys).value_counts().reindex(members, fill_value=0).to_numpy()
    out = {int(k) for k, n in zip(members, rows, strict=True) if not ingest.min_rows <= n <= ingest.max_rows}
    for name, accepted in number_columns(schema).items():
        if name in frame.columns and not dtype_accepted(frame[name].dtype, accepted):
            out.update(int(k) for k in np.unique(keys[_wrong_values(frame[name], accepted)]))
    return out


def set_aside(piece: Piece, keys: set[int], schema: DataSchema, normaliser: Normaliser) -> Piece | None:
    """``piece`` without the batches ``keys``, normalised again (None when nothing is left)."""
    if not keys:
        return piece
    members = [k for k in piece.members if k not in keys]
    if not members:
        return None
    kept = ~np.isin(piece.keys, np.fromiter(keys, dtype=np.int64))
    frame = normaliser(piece.frame.loc[kept].reset_index(drop=True), schema)
    return Piece(members, frame, piece.keys[kept])
