"""A device process for crash tests of the spool and uploader (the parent SIGKILLs it at chosen moments).

    python -m tests.edge_upload_child upload SPOOL ROWS_JSON HUB_URL DEVICE QUARANTINE BATCH_ROWS
    python -m tests.edge_upload_child put-and-wait SPOOL ROWS_JSON

The device token comes from the environment (``EDGELOOP_TEST_DEVICE_TOKEN``), never argv. ``upload``
puts every row of ROWS_JSON into the spool in one transaction, unless an earlier run already did
(the ``SPOOL.put-done`` marker, or a non-empty spool when a kill fell between the commit and the
marker), prints ``committed``, then uploads until the spool is empty (printing ``ack`` after each
acknowledged batch, so the parent can kill it mid-stream) and exits 0. ``put-and-wait``
puts the rows, prints ``committed`` and sleeps (the parent kills it to prove ``put`` was durable).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edge.atomic import write_text_atomic
from edge.hub_client import HubClient, HubUnavailable
from edge.spool import Spool, SpoolEntry
from edge.uploader import Uploader

TOKEN_ENV = "EDGELOOP_TEST_DEVICE_TOKEN"
QUOTA = 1 << 30


def _entries(rows_json: Path) -> list[SpoolEntry]:
    return [SpoolEntry(row["upload_reason"], row) for row in json.loads(rows_json.read_text())]


def _put_once(spool: Spool, rows_json: Path) -> None:
    marker = spool.path.with_name(spool.path.name + ".put-done")
    if not marker.exists() and not spool.has_backlog():
        spool.put(_entries(rows_json))
    write_text_atomic(marker, "done\n")
    print("committed", flush=True)


def upload(spool_path: str, rows_json: str, url: str, device: str, quarantine: str, batch_rows: str) -> int:
    spool = Spool(Path(spool_path), QUOTA)
    _put_once(spool, Path(rows_json))
    client = HubClient(url, device, os.environ[TOKEN_ENV], timeout_s=10)
    uploader = Uploader(spool, client, Path(quarantine), batch_rows=int(batch_rows))
    while spool.has_backlog():
        try:
            if uploader.upload_once():
                print("ack", flush=True)
        except HubUnavailable:
            time.sleep(0.05)
    print("empty", flush=True)
    return 0


def put_and_wait(spool_path: str, rows_json: str) -> int:
    spool = Spool(Path(spool_path), QUOTA)
    spool.put(_entries(Path(rows_json)))
    print("committed", flush=True)
    time.sleep(120)
    return 0


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    sys.exit(upload(*args) if command == "upload" else put_and_wait(*args))
