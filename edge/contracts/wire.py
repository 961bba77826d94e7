"""The hub's device API as both sides see it: paths, headers, media types, body shapes and their limits.

A device (edge.hub_client) POSTs to ``/v1/devices/<device_id>/<action>`` with ``Authorization: Bearer
<token>``; the hub (hub.routes) checks the same names and limits:

- ``uploads``: one ground-truth batch (CSV from runners, Parquet from cloud tools), ``Idempotency-Key`` =
  sha256 of the decoded body, optionally ``Content-Encoding: gzip``; at most the hub's
  ``max_upload_bytes`` decoded (default ``UPLOAD_MAX_BYTES``, also the largest batch a runner seals).
- ``summaries``: one JSON object of at most ``SUMMARY_MAX_BYTES`` (aggregates-only devices).
- ``heartbeat``: the JSON body ``HEARTBEAT_FIELDS`` describes, within the ``HEARTBEAT_*`` limits.
- ``certificate``: renew the device's client certificate (mutual TLS), see ``ENROLLMENT_FIELDS``.

A new device enrolls once at ``ENROLL_PATH`` with a one-time code (no other credential).

Operators read ``GET /v1/fleet`` with the admin token; each device's ``status`` is one of
``DEVICE_STATUSES``. Leaves out what the hub does with a body (hub) and
how a device builds one (edge.heartbeat, edge.ground_truth, edge.summary).
"""

from __future__ import annotations

from edge.contracts.record import UPLOAD_REASONS

__all__ = [
    "DEVICE_ACTIONS",
    "CSV",
    "DEVICE_STATUSES",
    "ENROLL_PATH",
    "ENROLLMENT_REQUEST",
    "RENEWAL_REQUEST",
    "ENROLLMENT_FIELDS",
    "CSR_MAX_BYTES",
    "EVICTION_REASONS",
    "FLEET_PATH",
    "GZIP",
    "HEALTH_REASON_MAX",
    "HEALTH_STATES",
    "HEARTBEAT_EVENTS_MAX",
    "HEARTBEAT_EVENTS_SENT",
    "HEARTBEAT_EVENT_DETAIL_MAX",
    "HEARTBEAT_EVENT_KIND_MAX",
    "HEARTBEAT_EVENT_KIND_PATTERN",
    "HEARTBEAT_FIELDS",
    "HEARTBEAT_MAP_MAX",
    "HEARTBEAT_NAME_PATTERN",
    "IDEMPOTENCY_KEY",
    "JSON",
    "MAX_JSON_INT",
    "PARQUET_TYPES",
    "SUMMARY_MAX_BYTES",
    "UPLOAD_MAX_BYTES",
    "UPLOAD_MEDIA_TYPES",
    "VERSION_MAX_LENGTH",
    "device_path",
]

# paths and headers
DEVICE_ACTIONS: tuple[str, ...] = ("uploads", "summaries", "heartbeat", "certificate")
FLEET_PATH = "/v1/fleet"
ENROLL_PATH = "/v1/enroll"  # POST {code, csr} -> ENROLLMENT_FIELDS; the one device call without credentials
IDEMPOTENCY_KEY = "Idempotency-Key"
CSV = "text/csv"
JSON = "application/json"
PARQUET_TYPES: tuple[str, ...] = ("application/vnd.apache.parquet", "application/octet-stream")
UPLOAD_MEDIA_TYPES: tuple[str, ...] = (*PARQUET_TYPES, CSV)
GZIP = "gzip"

# limits
UPLOAD_MAX_BYTES = 64 * 1024 * 1024  # decoded bytes of one batch: the hub's default cap, a runner's largest batch
SUMMARY_MAX_BYTES = 1024 * 1024  # a summary aggregates rows: it is never large
MAX_JSON_INT = 2**53 - 1  # integers every JSON reader keeps exactly
VERSION_MAX_LENGTH = 64  # a model version in a heartbeat
HEARTBEAT_EVENTS_MAX = 64  # events one heartbeat may carry (the hub refuses more)
HEARTBEAT_EVENTS_SENT = 20  # the newest state-dir events a runner sends each time (the hub keeps one heartbeat)
HEARTBEAT_EVENT_DETAIL_MAX = 500  # characters of an event's detail
HEARTBEAT_EVENT_KIND_PATTERN = r"^[a-z_]{1,32}$"
HEARTBEAT_EVENT_KIND_MAX = 32
HEARTBEAT_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # keys of the drift and counters maps
HEARTBEAT_MAP_MAX = 256  # entries of the drift and counters maps
HEALTH_STATES: tuple[str, ...] = ("ok", "degraded", "error")
HEALTH_REASON_MAX = 200  # characters of the heartbeat's health_reason (why "degraded" or "error")
# a device in the fleet document: no heartbeat yet, heard within the staleness limit, silent longer
DEVICE_STATUSES: tuple[str, ...] = ("never seen", "online", "offline")
EVICTION_REASONS: tuple[str, ...] = (*UPLOAD_REASONS, "summary")  # what a full spool can evict, by reason

# The heartbeat body: field -> what it holds (the hub's schema enforces types and the limits above).
HEARTBEAT_FIELDS: dict[str, str] = {
    "model_version": "the version it runs (null before its first release)",
    "previous_version": "what a rollback would return to (or null)",
    "channel": "the channel it follows (names.CHANNEL_PATTERN)",
    "health": "one of HEALTH_STATES",
    "health_reason": "why health is not ok, in words (at most HEALTH_REASON_MAX characters; empty when ok)",
    "health_since": "since when health has had its current word (ISO 8601 with offset), or null",
    "drift": "feature -> PSI of the recent window (finite numbers)",
    "rolling_accuracy": "accuracy on recent labels in [0, 1], or null",
    "spool_backlog": "rows waiting for upload",
    "counters": "name -> non-negative integer",
    "clock": "the device's clock when it sent this (ISO 8601 with a zone)",
    "events": "newest last: {kind, version, at, detail}",
    "evictions": "EVICTION_REASONS -> rows evicted from the full spool",
    "config_version": "the signed runner policy version it applied for its channel (an integer >= 1), or null",
}


# Enrollment (``POST ENROLL_PATH``): the device sends a one-time code and a certificate signing request
# whose key it generated itself; the hub answers with these fields. Renewal (``POST
# device_path(id, "certificate")``, authenticated by the device's current certificate) sends {csr} and
# gets the same fields back. PEM texts throughout; ``trusted_root`` is the release repository's root.json.
ENROLLMENT_REQUEST: tuple[str, ...] = ("code", "csr")
RENEWAL_REQUEST: tuple[str, ...] = ("csr",)
ENROLLMENT_FIELDS: tuple[str, ...] = ("device_id", "channel", "certificate", "ca", "trusted_root", "not_after")
CSR_MAX_BYTES = 16 * 1024  # a PEM certificate signing request is a few hundred bytes


def device_path(device_id: str, action: str) -> str:
    """``/v1/devices/<device_id>/<action>`` (the caller validated the id; ``action`` is one of DEVICE_ACTIONS)."""
    if action not in DEVICE_ACTIONS:
        raise ValueError(f"action {action!r} is not one of {DEVICE_ACTIONS}")
    return f"/v1/devices/{device_id}/{action}"
