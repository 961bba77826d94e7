"""The GX expectation suite for one upload batch, generated from ``params.schema`` and ``params.ingest``.

No column name is written here: every name comes from the schema. Per batch, the folder's device id is
a run-time expectation parameter (``$PARAMETER: device_id``), so one suite serves every device. The
optional record columns (upload reason, inclusion probability) are checked only when a batch carries
them, so there is one suite per set of optional columns present (at most four per run). Builds
expectation objects only. Leaves out: creating the GX context and running it (``flows.ingest.validate``).
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
OPTIONAL_CHECKED: tuple[str, ...] = (UPLOAD_REASON, INCLUSION_PROBABILITY)

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
    """Every expectation of the suite, in the order the one-line reason reports failures."""
    present = set(optional_present)
    return [
        *_columns_exist(schema),
        *_feature_checks(schema),
        *_label_checks(schema),
        *_identity_checks(schema),
        *_table_checks(ingest),
        *_record_checks(present),
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


def _identity_checks(schema: DataSchema) -> list[Expectation]:
    gxe = _gxe()
    keys = [schema.event_id, schema.device_id, schema.event_time]
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=name) for name in keys),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[schema.device_id, schema.event_id]),
        gxe.ExpectColumnValuesToBeInSet(column=schema.device_id, value_set={"$PARAMETER": DEVICE_PARAMETER}),
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
