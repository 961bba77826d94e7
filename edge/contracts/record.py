"""The ground-truth record and upload batch contract, shared by edge runners, the hub and ingest.

A ground-truth row is the params.yaml schema's columns (features, label, event id, device id, event
time) plus the fixed columns below, which say what the edge knew when it sent the row. An upload batch
is one file whose id is the sha256 of its bytes, landed at ``<root>/<device_id>/<batch_id>.<ext>``.
Parquet and CSV are both accepted by the hub and ingest: edge runners send CSV (the edge has no
pyarrow; edge.ground_truth writes it), cloud tools and the simulator write Parquet. This module names
things, checks names and lands a batch's bytes (``land_batch``: the hub, the simulator and tests all
write the landing zone through it); encoding and reading the files is elsewhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge.atomic import write_bytes_atomic
from edge.contracts.names import BATCH_ID_PATTERN, is_valid_device_id

MODEL_VERSION = "model_version"  # version of the model that made the prediction (null: none yet)
PREDICTION = "prediction"  # the class the edge decided
PROBABILITIES = "probabilities"  # list of per-class probabilities, in the schema's class order
UPLOAD_REASON = "upload_reason"  # why this row was sent: one of UPLOAD_REASONS
INCLUSION_PROBABILITY = "inclusion_probability"  # P(row uploaded): 1/p de-biases fleet estimates

UPLOAD_REASONS: tuple[str, ...] = ("labelled", "uncertain", "anomaly", "random")
RECORD_COLUMNS: tuple[str, ...] = (
    MODEL_VERSION,
    PREDICTION,
    PROBABILITIES,
    UPLOAD_REASON,
    INCLUSION_PROBABILITY,
)

BATCH_EXTENSIONS: tuple[str, ...] = ("parquet", "csv")


def batch_id(body: bytes) -> str:
    """Content address of a batch: the idempotency key of its upload."""
    return hashlib.sha256(body).hexdigest()


def landing_path(root: Path, device_id: str, body_sha256: str, extension: str = "parquet") -> Path:
    """Where a batch lands; refuses names that could escape ``root``."""
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    if not BATCH_ID_PATTERN.match(body_sha256):
        raise ValueError(f"invalid batch id {body_sha256!r} (expected 64 lowercase hex digits)")
    if extension not in BATCH_EXTENSIONS:
        raise ValueError(f"unsupported batch extension {extension!r}")
    return root / device_id / f"{body_sha256}.{extension}"


def land_batch(root: Path, device_id: str, body: bytes, extension: str = "parquet") -> Path:
    """Write a batch body at its content address under ``root`` (temp + fsync + rename, read-only), once.

    Idempotent: the same batch landed twice, or by two racing writers, ends as one complete file with the
    same bytes, so a reader never sees a half-written batch."""
    path = landing_path(root, device_id, batch_id(body), extension)
    if not path.is_file():  # a racing writer may rename the same bytes over it: harmless
        write_bytes_atomic(path, body, mode=0o444)
    return path
