"""Health and status of a running runner: ``/health``, the state report, heartbeats, status.json, gauges.

``StatusBoard`` reads the other parts and says how the device is: ``health_status()`` is the word the hub
accepts (edge.health's rules: no model or a failing one -> "error"; recent model errors, low accuracy or
"major" drift -> "degraded"; else "ok"; and "degraded" while the hub refuses this device's credentials,
edge.hub_link, since nothing it sends lands); ``assess()`` adds the reason in words and since when (the
first time the board saw that status for those reasons: health is looked at on every heartbeat, ``/health``
and status write; a change is logged once); ``health()`` is ``GET /health``; ``state_report()`` is
everything the heartbeat and ``edge-runner status`` show (versions, health, drift, accuracy, backlog,
evictions, counters, blocked versions, last poll / sync / heartbeat, the hub link, the signed runner policy
in force: ``config_version`` and ``policy``, from ``policy_report`` set by the runner). ``heartbeat_now()``
sends the report with the state dir's newest ``HEARTBEAT_EVENTS_SENT`` events to the hub and writes
``status.json`` (``write_status``; it also carries the newest event sequence number sent, read back at
start). ``certificate_expires`` (when the client certificate ends, ISO 8601, or None) is in the state report
and status.json but not in the heartbeat (the hub knows it from its own registry). The metrics registry's
gauges (drift, accuracy, backlog, evictions, uploader counters, health) and the predictions counter are
refreshed from the same report on every scrape. The drift levels and the accuracy floor are the
configuration's (``drift.moderate_psi``/``major_psi``, ``watch.accuracy_floor`` over the manifest's);
``use_config`` takes a new one (a signed policy) while running. With live inputs (``inputs_report`` set
by the runner) the report has an ``inputs`` block (edge.inputs.live); the heartbeat leaves it out.

Leaves out: the numbers themselves (edge.health, edge.pending, edge.spool, edge.uploader keep them), the
heartbeat's wire shape (edge.heartbeat) and reading status.json from outside (edge.status).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.atomic import write_text_atomic
from edge.config import RunnerConfig
from edge.contracts.wire import HEALTH_REASON_MAX, HEARTBEAT_EVENTS_SENT
from edge.drift import DriftMonitor
from edge.health import HealthMonitor
from edge.heartbeat import heartbeat_body, utc_now
from edge.hub_client import HubClient, HubError
from edge.hub_link import HubLink
from edge.metrics import Registry
from edge.pending import PendingPredictions
from edge.serving import InferenceSlot
from edge.spool import Spool
from edge.state import STATUS_FILE, StateDir
from edge.update_loop import UpdateLoop
from edge.uploader import Uploader

__all__ = ["StatusBoard"]

log = logging.getLogger("edge.runner")


class StatusBoard:
    """See the module docstring."""

    def __init__(self, config: RunnerConfig, state: StateDir, slot: InferenceSlot, pending: PendingPredictions,
                 monitor: HealthMonitor, spool: Spool, uploader: Uploader, updates: UpdateLoop, client: HubClient,
                 metrics: Registry, api_url: Callable[[], str | None], *,
                 certificate_expires: Callable[[], datetime | None] = lambda: None,
                 link: HubLink | None = None) -> None:
        self._config, self._state, self._slot, self._pending, self._monitor = config, state, slot, pending, monitor
        self._spool, self._uploader, self._updates, self._client = spool, uploader, updates, client
        self._api_url = api_url
        self._certificate_expires = certificate_expires
        self._link = link if link is not None else HubLink(config.device_id)
        self._health_key: tuple[str, tuple[str, ...]] = ("ok", ())
        self._health_since: str | None = None
        self._health_lock = threading.Lock()
        self.inputs_report: Callable[[], dict[str, Any]] | None = None  # the live inputs' block, when configured
        self.policy_report: Callable[[], dict[str, Any]] | None = None  # the signed runner policy in force
        self._started_at = time.time()
        self._last_heartbeat: str | None = None
        self._sent_seq = int(self._read_status().get("sent_event_seq", 0))
        self._heartbeats = metrics.counter("heartbeats_total", "Heartbeats sent", ("outcome",))
        self._predictions = metrics.counter("predictions_total", "Predictions answered", ("model_version",))
        self._gauges = {
            "drift": metrics.gauge("drift_psi", "PSI of the recent window vs training", ("feature",)),
            "accuracy": metrics.gauge("rolling_accuracy", "Accuracy on the recent labels"),
            "backlog": metrics.gauge("spool_backlog_rows", "Labelled rows waiting for upload"),
            "backlog_bytes": metrics.gauge("spool_backlog_bytes", "Bytes of the spool"),
            "evictions": metrics.gauge("spool_evictions", "Rows evicted from the full spool", ("reason",)),
            "uploads": metrics.gauge("uploader", "Uploader counters", ("counter",)),
            "health": metrics.gauge("health", "1 for the current health status", ("status",)),
        }
        metrics.on_render(self._refresh_gauges)

    def use_config(self, config: RunnerConfig) -> None:
        """The configuration with a signed runner policy on top: drift thresholds, the accuracy floor."""
        self._config = config

    def _policy(self) -> dict[str, Any]:
        return {} if self.policy_report is None else self.policy_report()

    # -- readings --

    @property
    def last_sync(self) -> str | None:
        """The last time the hub answered (a poll that reached the repository, or a heartbeat)."""
        return max((t for t in (self._updates.last_sync, self._last_heartbeat) if t is not None), default=None)

    def health_status(self, drift: dict[str, float] | None = None) -> str:
        return self.assess(drift)[0]

    def assess(self, drift: dict[str, float] | None = None) -> tuple[str, str, str | None]:
        """(status word, reason in words ("" when ok), since when (ISO 8601, None when ok))."""
        model = self._slot.current
        if model is None:
            status, reasons = self._monitor.assess(model_loaded=False)
        else:
            scores = self._slot.drift_scores() if drift is None else drift
            worst = max(scores.items(), key=lambda item: item[1], default=None)
            drift_config, floor = self._config.drift, self._config.watch.accuracy_floor
            major = None if worst is None or DriftMonitor.level(worst[1], drift_config.moderate_psi,
                                                                drift_config.major_psi) != "major" \
                else (*worst, drift_config.major_psi)
            status, reasons = self._monitor.assess(
                accuracy_floor=model.manifest.edge_policy.accuracy_floor if floor is None else floor, major_drift=major)
        refused = self._link.auth_problem()
        if refused is not None:
            status, reasons = ("degraded" if status == "ok" else status), [*reasons, refused]
        reason = "; ".join(reasons)[:HEALTH_REASON_MAX]
        key = (status, tuple(r.split(" ", 1)[0] for r in reasons))
        with self._health_lock:
            changed = key != self._health_key
            if changed:
                self._health_key = key
                self._health_since = None if status == "ok" else utc_now()
            since = self._health_since
        if changed:
            if status == "ok":
                log.info("health ok again")
            else:
                log.log(logging.ERROR if status == "error" else logging.WARNING, "health %s: %s", status, reason)
        return status, reason, since

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, its reason and since when, plus what an operator needs at a glance."""
        status, reason, since = self.assess()
        return {
            "status": status,
            "reason": reason,
            "since": since,
            "hub": self._link.report(),
            "model_version": self._slot.version,
            "rolling_accuracy": self._monitor.rolling_accuracy(),
            "spool_backlog": self._spool.backlog_rows(),
            "last_sync": self.last_sync,
            "config_version": self._policy().get("version"),
            "config_channel": self._policy().get("channel"),
        }

    def state_report(self) -> dict[str, Any]:
        """Everything the heartbeat and ``status`` show."""
        drift = {k: round(v, 6) for k, v in self._slot.drift_scores().items()}
        predicted = self._pending.predicted()
        counters = {"predictions": sum(predicted.values())} | self._monitor.counters() | self._uploader.counters
        counters["pending_dropped"] = self._pending.dropped
        expires = self._certificate_expires()
        health, reason, since = self.assess(drift)
        return {
            "device_id": self._config.device_id,
            "model_version": self._slot.version,
            "previous_version": self._state.previous_version(),
            "channel": self._config.releases.channel,
            "health": health,
            "health_reason": reason,
            "health_since": since,
            "hub": self._link.report(),
            "drift": drift,
            "rolling_accuracy": self._monitor.rolling_accuracy(),
            "spool_backlog": self._spool.backlog_rows(),
            "spool_bytes": self._spool.backlog_bytes(),
            "evictions": self._spool.evictions(),
            "counters": counters,
            "blocked": self._state.blocked_versions(),
            "last_poll": self._updates.last_poll,
            "last_sync": self.last_sync,
            "last_heartbeat": self._last_heartbeat,
            "started_at": datetime.fromtimestamp(self._started_at, UTC).isoformat(),
            "certificate_expires": None if expires is None else expires.isoformat(),
            "config_version": self._policy().get("version"),
            "policy": self._policy() or None,
        } | ({} if self.inputs_report is None else {"inputs": self.inputs_report()})

    # -- the hub and status.json --

    def heartbeat_now(self) -> bool:
        """Send the heartbeat, write status.json. True when the hub took it."""
        report = self.state_report()
        events = self._state.events()[-HEARTBEAT_EVENTS_SENT:]  # the newest, every time: the hub keeps one heartbeat
        sent = False
        try:
            self._client.heartbeat(heartbeat_body(report, events))
            sent = True
            self._last_heartbeat = utc_now()
            if events:
                self._sent_seq = max(int(e.get("seq", 0)) for e in events)
            self._heartbeats.inc("sent")
        except HubError as exc:
            self._heartbeats.inc("failed")
            log.debug("heartbeat not sent: %s", exc)  # the hub link tells the story (edge.hub_link)
        self.write_status(report if sent else None)  # a failure may have changed the hub's line and health
        return sent

    def write_status(self, report: dict[str, Any] | None = None) -> None:
        """status.json: the state report, when it was written, the newest event sent and the API's URL."""
        report = (report or self.state_report()) | {"written_at": utc_now(), "sent_event_seq": self._sent_seq,
                                                     "api": self._api_url()}
        write_text_atomic(self._config.state_dir / STATUS_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")

    def _read_status(self) -> dict[str, Any]:
        try:
            raw = json.loads((self._config.state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    # -- metrics --

    def _refresh_gauges(self) -> None:
        report = self.state_report()
        self._predictions.replace({(version,): float(n) for version, n in self._pending.predicted().items()})
        self._gauges["drift"].replace({(k,): v for k, v in report["drift"].items()})
        accuracy = report["rolling_accuracy"]
        self._gauges["accuracy"].set(float("nan") if accuracy is None else accuracy)
        self._gauges["backlog"].set(report["spool_backlog"])
        self._gauges["backlog_bytes"].set(report["spool_bytes"])
        self._gauges["evictions"].replace({(k,): float(v) for k, v in report["evictions"].items()})
        self._gauges["uploads"].replace({(k,): float(v) for k, v in self._uploader.counters.items()})
        self._gauges["health"].replace({(s,): float(s == report["health"]) for s in ("ok", "degraded", "error")})
