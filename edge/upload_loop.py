"""The runner's upload loop: the uploader draining the spool to the hub, and summaries in aggregates mode.

``UploadLoop(config, spool, client, summary, drift)`` builds the ``Uploader`` (edge.uploader) with the
configured batch size, batch bytes and backoff; ``start(loops)`` runs it until the runner stops (it
restarts a second after an unexpected error). In aggregates mode (``upload.mode = "aggregates"``) it
also spools the labelled rows' summary every ``upload.summary_interval_s`` (``summarize_now``: the
interval's ``SummaryAccumulator`` document with the drift scores of the model in service, nothing when
no labelled row came in), and once more when the runner stops, so a clean stop loses no interval.
``use_config(config)`` takes a signed policy's values while running: the batch size, the daily byte
budget (``upload.daily_byte_budget``, kept in ``<state_dir>/upload_budget.json``), the mode and the
summary interval (a switch out of aggregates mode spools the interval's summary first).

Leaves out: what is summarised (edge.feedback feeds the accumulator), sealing and sending batches
(edge.spool, edge.uploader), heartbeats (edge.reporting).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from edge.config import RunnerConfig
from edge.hub_client import HubClient
from edge.loops import Loops
from edge.spool import Spool
from edge.summary import SummaryAccumulator
from edge.uploader import Uploader

__all__ = ["BUDGET_FILE", "UploadLoop"]

BUDGET_FILE = "upload_budget.json"  # the day's upload bytes spent (edge.uploader)


class UploadLoop:
    """See the module docstring."""

    def __init__(self, config: RunnerConfig, spool: Spool, client: HubClient, summary: SummaryAccumulator,
                 drift: Callable[[], dict[str, float]], rng: random.Random) -> None:
        upload = config.upload
        self.uploader = Uploader(
            spool, client, Path(config.state_dir) / "quarantine" / "uploads", batch_rows=upload.batch_rows,
            max_batch_bytes=upload.max_batch_bytes, backoff_initial_s=upload.backoff_initial_s,
            backoff_max_s=upload.backoff_max_s, rng=rng, daily_byte_budget=upload.daily_byte_budget,
            budget_file=Path(config.state_dir) / BUDGET_FILE,
        )
        self._spool, self._summary, self._drift = spool, summary, drift
        self._aggregates = upload.mode == "aggregates"
        self._interval = upload.summary_interval_s

    def start(self, loops: Loops) -> None:
        uploader, stopping = self.uploader, loops.stopping
        loops.every("uploads", lambda: 1.0, lambda: uploader.run(stopping))  # run() returns only at stop
        # always scheduled (a policy may switch to aggregates mode); in rows mode a round does nothing
        loops.every("summaries", lambda: self._interval, self.summarize_now, wait_first=True)

    def use_config(self, config: RunnerConfig) -> None:
        """Take the upload values of a new configuration (a signed policy) from now on."""
        upload = config.upload
        aggregates = upload.mode == "aggregates"
        if self._aggregates and not aggregates:
            self.summarize_now()  # the interval so far, before rows mode takes over
        self._aggregates, self._interval = aggregates, upload.summary_interval_s
        self.uploader.batch_rows = upload.batch_rows
        self.uploader.daily_byte_budget = upload.daily_byte_budget

    def summarize_now(self) -> bool:
        """Spool the summary of the labelled rows since the last one; False when there were none."""
        if not self._aggregates:
            return False
        doc = self._summary.flush(self._drift())
        if doc is None:
            return False
        self._spool.put_summary(doc)
        return True
