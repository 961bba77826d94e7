"""The edge runner daemon: one object that wires inference, feedback, updates, uploads and heartbeats.

``Runner(config).start()`` takes the state dir's lock, repairs what a crash left (``StateDir.recover``),
loads ``current`` from disk (no network: expired TUF metadata never stops an active model), opens the
spool, starts the local API and four background loops, and returns; ``stop()`` ends them. Loops:

- **updates**: ``ReleaseUpdater.poll_once()`` now and then every ``poll_interval_s`` ± jitter;
- **watchdog** (every second): a rollback asked for by ``edge-runner rollback`` (a request file), the
  watch window's verdict (``HealthMonitor.rollback_reason``) -> automatic rollback, and gauges;
- **uploads**: ``Uploader.run`` drains the spool to the hub;
- **heartbeat**: every ``hub.heartbeat_interval_s`` the state goes to the hub (with the state dir's
  newest events: activations, rejections, rollbacks) and to ``status.json`` (what ``edge-runner status`` shows); in
  aggregates mode the interval's summary is spooled as well.

Each loop survives its own exceptions (logged, counted in ``edgeloop_runner_loop_errors_total``).

Inference (``predict``) touches only in-memory state: the model reference, the drift ring, counters and
the pending map. ``feedback`` joins a label to its prediction, feeds the health watch and the on-device
validation set, and spools the row when the upload filter keeps it (durably, before it answers).

Leaves out: the pieces themselves (edge.inference, edge.updates, edge.spool, edge.uploader,
edge.http_api, edge.drift, edge.health, edge.checks, edge.heartbeat), acting on the state dir from
outside the daemon (edge.control) and argument parsing (edge.cli).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge.atomic import write_text_atomic
from edge.checks import as_class, check_context
from edge.config import RunnerConfig
from edge.contracts.manifest import Manifest, ManifestError
from edge.contracts.record import RECORD_COLUMNS
from edge.contracts.schema import ClassValue
from edge.contracts.wire import HEARTBEAT_EVENTS_SENT
from edge.control import ROLLBACK_REQUEST, RunnerError, read_request
from edge.drift import DriftMonitor
from edge.ground_truth import UploadColumns, build_row
from edge.health import HealthMonitor, WatchRules
from edge.heartbeat import heartbeat_body, utc_now
from edge.http_api import ApiServer, Unavailable, UnknownEvent, serve
from edge.hub_client import HubClient, HubError
from edge.inference import InputError, ModelError, Prediction, Predictor
from edge.metrics import Registry
from edge.pending import Pending, PendingPredictions
from edge.releases import ClientLimits
from edge.spool import RecentLabelled, Spool, SpoolEntry
from edge.state import StateDir, StateError
from edge.summary import SummaryAccumulator
from edge.updates import ReleaseUpdater, UpdateOutcome, load_current
from edge.upload_filter import UploadPolicy, select
from edge.uploader import Uploader

__all__ = ["RECENT_FILE", "SPOOL_FILE", "STATUS_FILE", "Runner", "RunnerError"]

log = logging.getLogger("edge.runner")

STATUS_FILE = "status.json"
SPOOL_FILE = "spool.db"
RECENT_FILE = "recent.db"
WATCHDOG_S = 1.0


@dataclass(frozen=True)
class _Model:
    """The model in service with the monitors that belong to it (replaced together on a swap)."""

    predictor: Predictor
    drift: DriftMonitor
    names: tuple[str, ...]
    reserved: frozenset[str]  # upload column names a context field may not take


class Runner:
    """See the module docstring. Thread safe: the API calls ``predict``/``feedback`` from many threads."""

    def __init__(self, config: RunnerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.state = StateDir(config.state_dir)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._model: _Model | None = None
        self._swap_lock = threading.Lock()
        self._pending = PendingPredictions(config.feedback.pending_events)
        self.monitor = HealthMonitor()
        self._rolling_back = False
        self.policy = UploadPolicy(
            uncertain_margin=config.upload.uncertain_margin, random_rate=config.upload.random_rate,
            anomalies=config.upload.anomalies, mode=config.upload.mode,  # type: ignore[arg-type]  # validated
            local_only=config.upload.local_only,
        )
        self.summary = SummaryAccumulator(config.device_id, config.upload.local_only)
        self.metrics = Registry()
        self._m_predictions = self.metrics.counter("predictions_total", "Predictions answered", ("model_version",))
        self._m_feedback = self.metrics.counter("feedback_total", "Labels received", ("outcome",))
        self._m_spooled = self.metrics.counter("spooled_rows_total", "Labelled rows spooled for upload", ("reason",))
        self._m_polls = self.metrics.counter("update_polls_total", "Release polls", ("outcome",))
        self._m_loop_errors = self.metrics.counter("loop_errors_total", "Unexpected errors in a loop", ("loop",))
        self._m_heartbeats = self.metrics.counter("heartbeats_total", "Heartbeats sent", ("outcome",))
        self.metrics.on_render(self._refresh_gauges)
        self._gauges = {
            "drift": self.metrics.gauge("drift_psi", "PSI of the recent window vs training", ("feature",)),
            "accuracy": self.metrics.gauge("rolling_accuracy", "Accuracy on the recent labels"),
            "backlog": self.metrics.gauge("spool_backlog_rows", "Labelled rows waiting for upload"),
            "backlog_bytes": self.metrics.gauge("spool_backlog_bytes", "Bytes of the spool"),
            "evictions": self.metrics.gauge("spool_evictions", "Rows evicted from the full spool", ("reason",)),
            "uploads": self.metrics.gauge("uploader", "Uploader counters", ("counter",)),
            "health": self.metrics.gauge("health", "1 for the current health status", ("status",)),
        }
        self.api: ApiServer | None = None
        self.spool: Spool | None = None
        self.recent: RecentLabelled | None = None
        self.uploader: Uploader | None = None
        self.updater: ReleaseUpdater | None = None
        self.client: HubClient | None = None
        self._lock_handle: Any = None
        self._last_poll: dict[str, Any] | None = None
        self._last_sync: str | None = None
        self._last_heartbeat: str | None = None
        self._sent_seq = 0
        self._started_at = time.time()

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def model_version(self) -> str | None:
        model = self._model
        return None if model is None else model.predictor.version

    @property
    def api_url(self) -> str | None:
        return None if self.api is None else self.api.url

    def start(self) -> None:
        config = self.config
        try:
            self._lock_handle = self.state.lock()
        except StateError as exc:
            raise RunnerError(str(exc)) from None
        try:
            self._open(config)
        except BaseException:
            self._close_stores()
            self._lock_handle.release()
            raise
        self._spawn("updates", self._update_loop)
        self._spawn("watchdog", self._watchdog_loop)
        self._spawn("heartbeat", self._heartbeat_loop)
        uploader = self.uploader
        if uploader is not None:  # run() returns only at stop; an unexpected error restarts it a second later
            self._spawn("uploads", self._loop, "uploads", lambda: 1.0, lambda: uploader.run(self._stop))

    def _open(self, config: RunnerConfig) -> None:
        try:
            root = config.releases.trusted_root.read_bytes()
        except OSError as exc:
            raise RunnerError(f"releases.trusted_root: cannot read {config.releases.trusted_root}: "
                              f"{exc.strerror or exc}") from None
        for moved in self.state.recover():
            log.warning("recovery moved %s to quarantine", moved)
        self._sent_seq = self._read_status().get("sent_event_seq", 0)
        try:
            predictor = load_current(self.state)
        except (ManifestError, ModelError, OSError) as exc:
            log.error("the active release cannot be loaded and there is no previous one: %s", exc)
            predictor = None
        self.spool = Spool(config.state_dir / SPOOL_FILE, config.upload.spool_quota_bytes)
        self.recent = RecentLabelled(config.state_dir / RECENT_FILE, config.feedback.recent_labelled)
        self.client = HubClient(config.hub.url, config.device_id, config.hub.token.reveal(), config.hub.timeout_s)
        self.uploader = Uploader(
            self.spool, self.client, config.state_dir / "quarantine" / "uploads",
            batch_rows=config.upload.batch_rows, max_batch_bytes=config.upload.max_batch_bytes,
            backoff_initial_s=config.upload.backoff_initial_s, backoff_max_s=config.upload.backoff_max_s,
            rng=self._rng,
        )
        limits = ClientLimits(max_bundle_bytes=config.releases.max_bundle_bytes,
                              deadline_seconds=config.releases.download_deadline_s,
                              read_timeout_seconds=config.releases.read_timeout_s)
        self.updater = ReleaseUpdater(
            self.state, config.releases.metadata_url, config.releases.targets_url, config.releases.channel, root,
            limits, self._labelled_rows, self._on_activate, current=self._current_predictor,
        )
        if predictor is not None:
            self._serve(predictor, watch_from=self._activation_time(predictor.version))
        if config.api.enabled:
            socket_path = None if config.api.unix_socket is None else str(config.api.unix_socket)
            self.api = serve(self, config.api.host, config.api.port, unix_socket=socket_path,
                             max_body_bytes=config.api.max_body_bytes, registry=self.metrics)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loops (an upload in flight finishes), close the API and the stores."""
        self._stop.set()
        if self.api is not None:
            self.api.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._write_status()
        self._close_stores()
        if self._lock_handle is not None:
            self._lock_handle.release()
            self._lock_handle = None

    def _close_stores(self) -> None:
        for store in (self.spool, self.recent):
            if store is not None:
                store.close()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"edge-runner-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _loop(self, name: str, interval: Callable[[], float], body: Callable[[], object]) -> None:
        """Run ``body`` now and then every ``interval()`` seconds until stop; errors are logged and counted."""
        while not self._stop.is_set():
            try:
                body()
            except Exception:
                self._m_loop_errors.inc(name)
                log.exception("%s loop failed; it goes on", name)
            if self._stop.wait(interval()):
                return

    # -- the model in service ---------------------------------------------------------------------------

    def _current_predictor(self) -> Predictor | None:
        model = self._model
        return None if model is None else model.predictor

    def _serve(self, predictor: Predictor, watch_from: float | None) -> None:
        """Make ``predictor`` the model in service; ``watch_from``: start the watch window at that time."""
        manifest = predictor.manifest
        columns = self._columns(manifest)
        reserved = frozenset([*manifest.feature_names, manifest.label, *RECORD_COLUMNS, columns.event_id,
                              columns.device_id, columns.event_time])
        drift = DriftMonitor(manifest, self.config.drift.window_rows, self.config.drift.min_rows)
        model = _Model(predictor, drift, tuple(manifest.feature_names), reserved)
        with self._swap_lock:
            self._model = model
        if watch_from is None:
            self.monitor.stop_watch()
        else:
            self.monitor.start_watch(WatchRules.from_policy(manifest.edge_policy), watch_from, predictor.version)

    def _on_activate(self, predictor: Predictor) -> None:
        """Called by the updater after an activation (watch it) or a rollback (do not)."""
        self._serve(predictor, watch_from=None if self._rolling_back else time.time())
        log.info("now serving model %s%s", predictor.version, " (rolled back)" if self._rolling_back else "")

    def _activation_time(self, version: str) -> float | None:
        activation = self.state.activation()
        if activation is None or activation.version != version or not activation.activated_at:
            return None
        try:
            at = datetime.fromisoformat(activation.activated_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return at

    def _labelled_rows(self) -> tuple[np.ndarray, Sequence[object]]:
        assert self.recent is not None
        return self.recent.rows(self.config.feedback.recent_labelled)

    # -- inference (the hot path) -----------------------------------------------------------------------

    def predict_one(self, features: Sequence[object] | Mapping[str, object],
                    context: Mapping[str, object] | None = None, event_id: int | None = None) -> Prediction:
        model = self._model
        if model is None:
            raise Unavailable("no model is active yet: the runner is waiting for its first release")
        if context:
            check_context(context, model.reserved)
        try:
            prediction = model.predictor.predict(features, event_id)
        except InputError:
            self.monitor.input_error()
            raise
        except Exception as exc:
            self.monitor.model_error()
            log.error("model %s failed on a row: %s", model.predictor.version, exc)
            raise Unavailable(f"the model failed on this row ({type(exc).__name__}); it is being watched") from None
        values = _ordered(features, model.names)
        model.drift.observe(values)  # type: ignore[arg-type]  # checked numbers or None
        self.monitor.prediction()
        self._pending.add(prediction.event_id, Pending(values, prediction, context, time.time()))
        self._m_predictions.inc(prediction.model_version)
        return prediction

    def predict(self, features: list[Any] | dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        """The HTTP API's single-row call."""
        return self.predict_one(features, context).to_json_dict()

    def predict_batch(self, rows: list[Any], context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        model = self._model
        if model is None:
            raise Unavailable("no model is active yet: the runner is waiting for its first release")
        try:
            predictions = model.predictor.predict_batch(rows)
        except InputError:
            self.monitor.input_error()
            raise
        except Exception as exc:
            self.monitor.model_error()
            raise Unavailable(f"the model failed on this batch ({type(exc).__name__})") from None
        if context:
            check_context(context, model.reserved)
        now = time.time()
        for row, prediction in zip(rows, predictions, strict=True):
            values = _ordered(row, model.names)
            model.drift.observe(values)  # type: ignore[arg-type]
            self._pending.add(prediction.event_id, Pending(values, prediction, context, now))
        self.monitor.prediction(len(predictions))
        if predictions:
            self._m_predictions.inc(predictions[0].model_version, amount=len(predictions))
        return [p.to_json_dict() for p in predictions]

    # -- feedback ---------------------------------------------------------------------------------------

    def feedback(self, event_id: int, label: int | str, features: list[Any] | dict[str, Any] | None = None,
                 context: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Join ``label`` to the prediction ``event_id``; spool the row when the upload filter keeps it."""
        entry = self._pending.take(event_id)
        if entry is None:
            if features is None:
                self._m_feedback.inc("unknown_event")
                raise UnknownEvent(
                    f"event_id {event_id}: unknown or already labelled (the runner keeps the newest "
                    f"{self.config.feedback.pending_events} predictions, and none from before a restart); send "
                    f"\"features\" with the label to record it anyway")
            prediction = self.predict_one(features, context, event_id)
            entry = self._pending.take(event_id) or Pending(_ordered(features, ()), prediction, context, time.time())
        model = self._model
        if model is None:
            raise Unavailable("no model is active yet")
        manifest = model.predictor.manifest  # same features and classes as the entry's (updates check it)
        try:
            value = as_class(label, manifest)
        except InputError:
            self._pending.add(event_id, entry)  # a typo in the label must not lose the prediction
            raise
        return self._record(entry, value, manifest)

    def _record(self, entry: Pending, label: ClassValue, manifest: Manifest) -> dict[str, Any]:
        assert self.recent is not None and self.spool is not None
        prediction = entry.prediction
        correct = prediction.label == label
        self.monitor.feedback(correct, prediction.model_version)
        self.recent.add(entry.features, label)  # type: ignore[arg-type]  # checked numbers or None
        selection = select(self.policy, prediction, label, self.config.device_id, manifest,
                           entry.features)  # type: ignore[arg-type]
        reason = None if selection is None else selection.reason
        if self.config.upload.mode == "aggregates":
            self.summary.add(manifest, entry.features, prediction.label, label, prediction.model_version, reason)
        elif selection is not None:
            row = build_row(manifest, prediction, entry.features, label,  # type: ignore[arg-type]
                            datetime.fromtimestamp(entry.at, UTC), self.config.device_id,
                            dict(entry.context or {}), selection, self._columns(manifest),  # type: ignore[arg-type]
                            self.config.upload.local_only)
            self.spool.put([SpoolEntry(selection.reason, row)])
            self._m_spooled.inc(selection.reason)
        self._m_feedback.inc("correct" if correct else "wrong")
        return {
            "event_id": prediction.event_id, "correct": correct, "model_version": prediction.model_version,
            "upload_reason": reason if self.config.upload.mode == "rows" else None,
            "inclusion_probability": None if selection is None else selection.inclusion_probability,
        }

    def _columns(self, manifest: Manifest) -> UploadColumns:
        if manifest.columns is not None:
            return UploadColumns(manifest.columns.event_id, manifest.columns.device_id, manifest.columns.event_time)
        c = self.config.columns
        return UploadColumns(c.event_id, c.device_id, c.event_time)

    # -- health and status ------------------------------------------------------------------------------

    def health_status(self) -> str:
        model = self._model
        drift = DriftMonitor.level(model.drift.max_score() or 0.0) if model is not None else "none"
        floor = model.predictor.manifest.edge_policy.accuracy_floor if model is not None else None
        return self.monitor.status(model_loaded=model is not None, accuracy_floor=floor, drift_level=drift)

    def health(self) -> dict[str, Any]:
        """``GET /health``: status plus what an operator needs at a glance."""
        return {
            "status": "error" if self._model is None else self.health_status(),
            "model_version": self.model_version,
            "rolling_accuracy": self.monitor.rolling_accuracy(),
            "spool_backlog": 0 if self.spool is None else self.spool.backlog_rows(),
            "last_sync": self._last_sync,
        }

    def state_report(self) -> dict[str, Any]:
        """Everything the heartbeat and ``status`` show."""
        model = self._model
        spool, uploader = self.spool, self.uploader
        drift = {} if model is None else {k: round(v, 6) for k, v in model.drift.scores().items()}
        counters = dict(self.monitor.counters())
        if uploader is not None:
            counters |= uploader.counters
        counters["pending_dropped"] = self._pending.dropped
        return {
            "device_id": self.config.device_id,
            "model_version": self.model_version,
            "previous_version": self.state.previous_version(),
            "channel": self.config.releases.channel,
            "health": self.health_status(),
            "drift": drift,
            "rolling_accuracy": self.monitor.rolling_accuracy(),
            "spool_backlog": 0 if spool is None else spool.backlog_rows(),
            "spool_bytes": 0 if spool is None else spool.backlog_bytes(),
            "evictions": {} if spool is None else spool.evictions(),
            "counters": counters,
            "blocked": self.state.blocked_versions(),
            "last_poll": self._last_poll,
            "last_sync": self._last_sync,
            "last_heartbeat": self._last_heartbeat,
            "started_at": datetime.fromtimestamp(self._started_at, UTC).isoformat(),
        }

    def _refresh_gauges(self) -> None:
        report = self.state_report()
        self._gauges["drift"].replace({(k,): v for k, v in report["drift"].items()})
        accuracy = report["rolling_accuracy"]
        self._gauges["accuracy"].set(float("nan") if accuracy is None else accuracy)
        self._gauges["backlog"].set(report["spool_backlog"])
        self._gauges["backlog_bytes"].set(report["spool_bytes"])
        self._gauges["evictions"].replace({(k,): float(v) for k, v in report["evictions"].items()})
        uploads = self.uploader.counters if self.uploader is not None else {}
        self._gauges["uploads"].replace({(k,): float(v) for k, v in uploads.items()})
        self._gauges["health"].replace({(s,): float(s == report["health"]) for s in ("ok", "degraded", "error")})

    def metrics_text(self) -> str:
        return self.metrics.render()

    # -- loops ------------------------------------------------------------------------------------------

    def _poll_wait(self) -> float:
        r = self.config.releases
        return r.poll_interval_s * (1.0 + self._rng.uniform(-r.poll_jitter, r.poll_jitter))

    def _update_loop(self) -> None:
        self._loop("updates", self._poll_wait, self.poll_now)

    def poll_now(self) -> UpdateOutcome:
        assert self.updater is not None
        outcome = self.updater.poll_once()
        self._m_polls.inc(outcome.kind)
        self._last_poll = {"at": utc_now(), "kind": outcome.kind, "version": outcome.version,
                           "detail": outcome.detail, "seconds": round(outcome.seconds, 3)}
        if outcome.kind != "unavailable":
            self._last_sync = self._last_poll["at"]
        if outcome.kind in ("activated", "rejected"):
            log.info("release poll: %s %s %s", outcome.kind, outcome.version, outcome.detail)
        return outcome

    def _watchdog_loop(self) -> None:
        self._loop("watchdog", lambda: WATCHDOG_S, self._watchdog)

    def _watchdog(self) -> None:
        request = self.config.state_dir / ROLLBACK_REQUEST
        if request.exists():
            asked = read_request(request)
            request.unlink(missing_ok=True)
            self.rollback(asked)
        reason = self.monitor.rollback_reason()
        if reason is not None:
            if self.state.previous_version() is None:
                self.monitor.stop_watch()
                self.state.record("watch_failed", self.model_version, f"{reason}; no previous release to go back to")
            else:
                self.rollback(f"automatic: {reason}")

    def rollback(self, reason: str) -> str | None:
        """Go back to ``previous`` (the current version is blocked); None when there is nothing to go back to."""
        assert self.updater is not None
        if self.state.previous_version() is None:
            self.state.record("rollback_refused", self.model_version, f"{reason}; no previous release")
            return None
        bad = self.model_version
        self._rolling_back = True
        try:
            version = self.updater.rollback(reason)
        finally:
            self._rolling_back = False
        log.warning("rolled back %s -> %s: %s", bad, version, reason)
        self._write_status()
        return version

    def _heartbeat_loop(self) -> None:
        self._loop("heartbeat", lambda: self.config.hub.heartbeat_interval_s, self.heartbeat_now)

    def heartbeat_now(self) -> bool:
        """Spool the summary (aggregates mode), send the heartbeat, write status.json. True when sent."""
        if self.config.upload.mode == "aggregates" and self.spool is not None:
            model = self._model
            doc = self.summary.flush(None if model is None else model.drift.scores())
            if doc is not None:
                self.spool.put_summary(doc)
        report = self.state_report()
        events = self.state.events()[-HEARTBEAT_EVENTS_SENT:]  # the newest, every time: the hub keeps one heartbeat
        sent = False
        try:
            assert self.client is not None
            self.client.heartbeat(heartbeat_body(report, events))
            sent = True
            self._last_heartbeat = self._last_sync = utc_now()
            if events:
                self._sent_seq = max(int(e.get("seq", 0)) for e in events)
            self._m_heartbeats.inc("sent")
        except HubError as exc:
            self._m_heartbeats.inc("failed")
            log.info("heartbeat not sent: %s", exc)
        self._write_status()
        return sent

    # -- status.json ------------------------------------------------------------------------------------

    def _read_status(self) -> dict[str, Any]:
        try:
            raw = json.loads((self.config.state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _write_status(self) -> None:
        report = self.state_report() | {"written_at": utc_now(), "sent_event_seq": self._sent_seq,
                                        "api": self.api_url}
        write_text_atomic(self.config.state_dir / STATUS_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")


def _ordered(features: Sequence[object] | Mapping[str, object], names: Sequence[str]) -> Sequence[object]:
    if isinstance(features, Mapping):
        return [features[name] for name in names]
    return features
