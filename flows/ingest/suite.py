"""The GX expectation suites of ingest, generated from ``params.schema`` and ``params.ingest``.

No column name is written here: every name comes from the schema. Two shapes of the same checks:

- the per-batch suite (one upload batch): the folder's device id is a run-time expectation parameter
  (``$PARAMETER: device_id``), so one suite serves every device; the optional record columns (upload
  reason, inclusion probability) are checked only when a batch carries them, so there is one suite per
  set of optional columns present (at most four per run);
- the bulk suite (many batches concatenated, each row carrying its batch key ``BATCH_KEY`` and its
  folder's device id ``FOLDER_DEVICE``): the same row checks, with "one device per batch" and "event
  ids unique per batch" written over those two columns, and the optional columns always checked (a
  batch without them has nulls there, which in-set and range checks skip, exactly as if absent). What
  only makes sense per batch (row count, which columns a file has, column types) is checked before
  the batches are concatenated (``flows.ingest.structure``).

Both check event ids as whole numbers >= 0 and event times within [``$PARAMETER: min_event_time``,
``$PARAMETER: max_event_time``] (``ingest.min_event_time``; the run's clock plus ``ingest.max_future_s``).
Builds expectation objects only. Leaves out: creating the GX context and running it
(``flows.ingest.validate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edge.contracts.record import INCLUSION_PROBABILITY, UPLOAD_REASON, UPLOAD_REASONS
from edge.contracts.schema import DataSchema
from flows.params import IngestParams

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

DEVICE_PARAMETER = "device_id"  # name of the run-time expectation parameter holding [folder device id]
MIN_TIME_PARAMETER = "min_event_time"  # run-time parameters bounding event times (tz-aware datetimes)
MAX_TIME_PARAMETER = "max_event_time"
OPTIONAL_CHECKED: tuple[str, ...] = (UPLOAD_REASON, INCLUSION_PROBABILITY)
BATCH_KEY = "_edgeloop_batch"  # bulk frames: the row's batch (its position in the chunk)
FOLDER_DEVICE = "_edgeloop_folder"  # bulk frames: the device folder the row's batch was found in
BULK_SUITE = "ingest-bulk"

# Column types GX accepts: numpy dtype names, pandas extension dtype class names (GX looks those up as
# attributes of ``pandas``: "Int64Dtype", not "Int64"), and for object columns the python type names.
INT_TYPES: tuple[str, ...] = (
    "int",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint32",
    "uint16",
    "uint8",
    "Int64Dtype",
    "Int32Dtype",
    "Int16Dtype",
    "Int8Dtype",
)
FLOAT_TYPES: tuple[str, ...] = ("float", "float64", "float32", "float16", "Float64Dtype", "Float32Dtype")


def suite_name(optional_present: Iterable[str]) -> str:
    present = [c for c in OPTIONAL_CHECKED if c in set(optional_present)]
    return "-".join(["ingest", *present])  # plain characters: the name becomes a Data Docs folder


def type_list(dtype: str) -> list[str]:
    """Accepted column types for a feature declared ``dtype``: ints are fine for float features."""
    return list(INT_TYPES) if dtype == "int" else [*FLOAT_TYPES, *INT_TYPES]


def build_expectations(
    schema: DataSchema, ingest: IngestParams, optional_present: Iterable[str] = ()
) -> list[Expectation]:
    """Every expectation of the per-batch suite, in the order the one-line reason reports failures."""
    present = set(optional_present)
    return [
        *_columns_exist(schema),
        *_feature_checks(schema),
        *_label_checks(schema),
        *_identity_checks(schema),
        *_table_checks(ingest),
        *_record_checks(present),
    ]


def build_bulk_expectations(schema: DataSchema) -> list[Expectation]:
    """The bulk suite: the per-batch suite's row checks over concatenated batches (see the module docstring)."""
    return [
        *_columns_exist(schema),
        *_feature_checks(schema),
        *_label_checks(schema),
        *_identity_checks(schema, bulk=True),
        *_record_checks(set(OPTIONAL_CHECKED)),
    ]


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _columns_exist(schema: DataSchema) -> list[Expectation]:
    """One table-level check (extra columns allowed): cheaper than one expectation per column."""
    gxe = _gxe()
    return [gxe.ExpectTableColumnsToMatchSet(column_set=schema.column_names, exact_match=False)]


def _feature_checks(schema: DataSchema) -> list[Expectation]:
    gxe = _gxe()
    out: list[Expectation] = []
    for feature in schema.features:
        out.append(gxe.ExpectColumnValuesToBeInTypeList(column=feature.name, type_list=type_list(feature.dtype)))
        if feature.min is not None or feature.max is not None:
            out.append(
                gxe.ExpectColumnValuesToBeBetween(column=feature.name, min_value=feature.min, max_value=feature.max)
            )
        if not feature.nullable:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=feature.name))
    return out


def _label_checks(schema: DataSchema) -> list[Expectation]:
    gxe = _gxe()
    name = schema.label.name
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=name),
        gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(schema.label.classes)),
    ]


def _identity_checks(schema: DataSchema, bulk: bool = False) -> list[Expectation]:
    gxe = _gxe()
    keys = [schema.event_id, schema.device_id, schema.event_time]
    unique = [schema.device_id, schema.event_id]
    one_device = gxe.ExpectColumnValuesToBeInSet(column=schema.device_id, value_set={"$PARAMETER": DEVICE_PARAMETER})
    if bulk:
        unique = [BATCH_KEY, *unique]
        one_device = gxe.ExpectColumnPairValuesToBeEqual(column_A=schema.device_id, column_B=FOLDER_DEVICE)
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=name) for name in keys),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=unique),
        one_device,
        *_event_checks(schema),
    ]


def _event_checks(schema: DataSchema) -> list[Expectation]:
    """Event ids are whole numbers >= 0 (int64); event times lie between the run's two time bounds."""
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToBeInTypeList(column=schema.event_id, type_list=list(INT_TYPES)),
        gxe.ExpectColumnValuesToBeBetween(column=schema.event_id, min_value=0),
        gxe.ExpectColumnValuesToBeBetween(
            column=schema.event_time,
            min_value={"$PARAMETER": MIN_TIME_PARAMETER},
            max_value={"$PARAMETER": MAX_TIME_PARAMETER},
        ),
    ]


def _table_checks(ingest: IngestParams) -> list[Expectation]:
    gxe = _gxe()
    return [gxe.ExpectTableRowCountToBeBetween(min_value=ingest.min_rows, max_value=ingest.max_rows)]


def _record_checks(present: set[str]) -> list[Expectation]:
    gxe = _gxe()
    out: list[Expectation] = []
    if UPLOAD_REASON in present:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=UPLOAD_REASON, value_set=list(UPLOAD_REASONS)))
    if INCLUSION_PROBABILITY in present:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=INCLUSION_PROBABILITY, min_value=0.0, max_value=1.0, strict_min=True
            )
        )
    return out
