"""What a retrain needs before it starts: some data to train on (checked without Prefect, in milliseconds).

``check_has_data`` raises one ``UserError`` naming what is missing and the commands that make data when
the run could not find a single row: ``simulate.rows_per_device`` is 0, ``data/curated`` holds nothing and
no local landing zone in ``ingest.sources`` holds a batch file. An object-store source is not listed here
(that needs the network): with one, the check passes and ingest finds out. Leaves out whether the rows are
any good (ingest's validation, the split's class checks).
"""

from __future__ import annotations

from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from flows.dataset import curated_part_files
from flows.ingest.discover import UNSORTED, discover
from flows.params import Params
from flows.storage import is_url, location

__all__ = ["check_has_data"]


def _local_batches(params: Params, paths: Paths) -> bool | None:
    """True when a local landing zone holds a batch, False when none does, None when a source is remote."""
    if any(is_url(source) for source in params.ingest.sources):
        return None
    folders = [location(source, paths.root) for source in params.ingest.sources]
    return any(found.device_id != UNSORTED for found in discover(folders))


def check_has_data(params: Params, paths: Paths) -> None:
    """UserError (one line) when the retrain has no data at all; see the module docstring."""
    if params.simulate.rows_per_device > 0 or curated_part_files(paths):
        return
    if _local_batches(params, paths) is not False:
        return
    zones = ", ".join(params.ingest.sources)
    raise UserError(
        f"no data to train on: the landing zone ({zones}) holds no batches, {paths.curated} holds no rows and "
        "simulate.rows_per_device is 0; make some with `edgeloop simulate` (a simulated plant) or "
        "`edgeloop import FILE` (your own history), then run `edgeloop retrain` again"
    )
