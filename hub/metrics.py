"""Prometheus counters of one hub app (own registry, so several apps in one process stay apart).

Requests by route template and status; uploads stored / deduplicated / rejected by reason; bytes
stored. ``/metrics`` renders them (hub.routes.ops). The counters of a stored and of a deduplicated upload
are labelled once (``stored``, ``deduplicated``): they are counted on the hot path. Never labels anything
with a token or a device id (unbounded label values are a Prometheus anti-pattern; per-device state is
in the fleet view).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class HubMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "edgeloop_hub_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "edgeloop_hub_request_seconds", "Request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.uploads = Counter(
            "edgeloop_hub_uploads", "Upload outcomes", ["outcome", "reason"], registry=self.registry
        )
        self.upload_bytes = Counter("edgeloop_hub_upload_bytes", "Bytes of stored batches", registry=self.registry)
        self.heartbeats = Counter("edgeloop_hub_heartbeats", "Heartbeats received", registry=self.registry)
        # the two outcomes of almost every upload, labelled once (labels() looks the child up under a lock)
        self.stored = self.uploads.labels("stored", "")
        self.deduplicated = self.uploads.labels("deduplicated", "")
