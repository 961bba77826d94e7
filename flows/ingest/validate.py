"""Run the GX suite on normalised batches: one ephemeral context per run, reused for every batch.

``BatchValidator`` creates the GX context, the pandas data source, the dataframe asset and batch
definition once; suites and validation definitions are made once per set of optional record columns
present (see ``flows.ingest.suite``) and then reused. Progress bars are off. Each result is kept in
the context's in-memory results store, so ``build_docs`` can render this run's validations as Data
Docs at the end. Does not read files, decide quarantine, or touch the curated data.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from edge.contracts.schema import DataSchema
from flows.ingest.reasons import describe_failures
from flows.ingest.suite import DEVICE_PARAMETER, OPTIONAL_CHECKED, build_expectations, suite_name
from flows.params import IngestParams

SOURCE_NAME = "uploads"
ASSET_NAME = "batch"
SITE_NAME = "ingest"


@dataclass(frozen=True)
class Verdict:
    success: bool
    reason: str  # one line; "" when the batch passed
    result: dict[str, Any]  # result.to_json_dict() when the batch failed, else {}


class BatchValidator:
    """Validates batch frames against the schema's suite; build once per run, call ``validate`` per batch."""

    def __init__(self, schema: DataSchema, ingest: IngestParams) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX logs routine INFO lines (temporary docs folders) that drown the CLI's own output.
        # (GX sets INFO on some of its module loggers itself, so set the level on each of them.)
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]:
            logging.getLogger(name).setLevel(logging.WARNING)
        self._gx = gx
        self._schema = schema
        self._ingest = ingest
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self._context.data_sources.add_pandas(SOURCE_NAME).add_dataframe_asset(ASSET_NAME)
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole batch")
        self._definitions: dict[str, Any] = {}
        self._checked = {*schema.column_names, *OPTIONAL_CHECKED}

    def _definition(self, frame: pd.DataFrame) -> Any:
        present = [c for c in OPTIONAL_CHECKED if c in frame.columns]
        name = suite_name(present)
        if name not in self._definitions:
            suite = self._context.suites.add(self._gx.ExpectationSuite(name=name))
            for expectation in build_expectations(self._schema, self._ingest, present):
                suite.add_expectation(expectation)
            definition = self._gx.ValidationDefinition(name=name, data=self._batch_definition, suite=suite)
            self._definitions[name] = self._context.validation_definitions.add(definition)
        return self._definitions[name]

    def validate(self, frame: pd.DataFrame, device_id: str, run_name: str) -> Verdict:
        """Run the suite; ``device_id`` is the folder's id, ``run_name`` labels the result in Data Docs."""
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
        # Only the columns the suite checks: GX fingerprints the batch, and an unchecked column of lists
        # (probabilities) makes it fall back to pickling the whole frame.
        checked = frame[[c for c in frame.columns if c in self._checked]]
        result = self._definition(frame).run(
            batch_parameters={"dataframe": checked},
            expectation_parameters={DEVICE_PARAMETER: [device_id]},
            result_format="SUMMARY",
            run_id=run_id,
        )
        if result.success:  # serialising a result costs ~25 ms: only rejected batches need it
            return Verdict(True, "", {})
        as_json = result.to_json_dict()
        reason = describe_failures(as_json["results"], self._schema) or "validation failed (see the GX result)"
        return Verdict(False, reason, as_json)

    def build_docs(self, folder: Path) -> Path:
        """Render Data Docs (the suites and this run's validations) into ``folder``; returns index.html."""
        if not self._definitions:  # a run with no batches still documents the base suite
            self._definition(pd.DataFrame())
        site_config = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        }
        sites = self._context.config.data_docs_sites or {}
        if SITE_NAME in sites:
            self._context.delete_data_docs_site(SITE_NAME)
        self._context.add_data_docs_site(SITE_NAME, site_config=site_config)  # type: ignore[arg-type]
        self._context.build_data_docs(site_names=[SITE_NAME])
        return folder / "index.html"
