"""The edge runner daemon: the composition root that builds its parts, runs their loops and stops them.

``Runner(config)`` opens the device: it takes the state dir's lock, repairs what a crash left
(``StateDir.recover``), opens the spool and the recent labelled rows, and puts the release ``current``
names in service from disk (no network: expired TUF metadata never stops an active model); every part
exists from then on. ``start()`` starts the local API and the loops; ``stop()`` ends them, writes
status.json, spools the last summary (aggregates mode), closes the stores and releases the lock. The parts,
one job each:

- ``slot`` (edge.serving): the model in service and the prediction hot path;
- ``pending`` (edge.pending): recent predictions in one fixed-size ring (labels join them; drift reads them);
- ``truth`` (edge.feedback): labels joined, validation set, upload filter, spool;
- ``updates`` (edge.update_loop): release polls every ``releases.poll_interval_s`` ± jitter, and a
  watchdog every second (rollback requests, the watch window's automatic rollback);
- ``uploads`` (edge.upload_loop): the uploader; summaries every ``upload.summary_interval_s`` in aggregates mode;
- ``policy`` (edge.policy_updates): the channel's signed runner policy, applied on top of runner.toml at
  start (``policy/applied.json``, no network) and after each release poll when a new version verifies and
  checks; ``_use_config`` swaps the new values into the parts while they run (the upload policy and
  privacy rules, drift window and thresholds, the watch, poll and heartbeat intervals, upload batch size
  and daily byte budget). ``config`` is always the configuration in force;
- ``board`` (edge.reporting): health with its reason, the state report, heartbeats every
  ``hub.heartbeat_interval_s``, status.json, metrics gauges;
- ``link`` (edge.hub_link): what the hub client's requests found (reachable, unreachable since, the
  device refused), logged once per change and shown in status and health;
- ``inputs`` (edge.inputs.live, only with an ``[inputs]`` section): live plant values from MQTT or OPC UA
  predicted on the same hot path, decisions written back, labels joined and fed to ``feedback``; its
  protocol client is imported by ``start()``, never otherwise;
- ``tls`` (edge.transport, when ``tls.ca_file`` or ``tls.system_store`` is set): the one TLS context of
  every request to the hub (hub client and TUF fetcher); ``renewal`` (edge.cert_renewal, only with a
  client certificate over https): renews it every ``tls.renew_check_s`` when it ends within
  ``tls.renew_before_days`` and rebuilds ``tls`` (the hub client swaps its pool; the next TUF poll uses it).

Each loop survives its own exceptions (logged, counted in ``edgeloop_runner_loop_errors_total``). The
Runner's own methods are the API the local HTTP server, the CLI and in-process callers use.

Leaves out: the parts' own rules (their modules), acting on the state dir from outside the daemon
(edge.control) and argument parsing (edge.cli).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edge.config import RunnerConfig
from edge.control import RunnerError
from edge.feedback import GroundTruth
from edge.health import HealthMonitor
from edge.http_api import ApiServer, in_use_message, serve
from edge.hub_client import HubClient
from edge.hub_link import HubLink
from edge.loops import Loops
from edge.metrics import Registry
from edge.pending import PendingPredictions
from edge.policy_updates import PolicyFollower
from edge.reporting import StatusBoard
from edge.serving import InferenceSlot, PredictOne
from edge.spool import RecentLabelled, Spool
from edge.state import RECENT_FILE, SPOOL_FILE, STATUS_FILE, StateDir, StateError
from edge.summary import SummaryAccumulator
from edge.update_loop import WATCHDOG_S, UpdateLoop
from edge.updates import UpdateOutcome
from edge.upload_loop import UploadLoop
from edge.uploader import Uploader

if TYPE_CHECKING:
    from edge.cert_renewal import CertificateRenewal
    from edge.inputs.live import LiveInputs
    from edge.transport import ClientTls

__all__ = ["RECENT_FILE", "SPOOL_FILE", "STATUS_FILE", "Runner", "RunnerError"]

log = logging.getLogger("edge.runner")


class Runner:
    """See the module docstring. Thread safe: the API calls ``predict``/``feedback`` from many threads.

    ``predict_one(features, context=None)`` is the inference slot's own method (one row, a sequence in
    feature order or a mapping by name, kept for its label): no extra call on the hot path.
    """

    predict_one: PredictOne

    def __init__(self, config: RunnerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.state = StateDir(config.state_dir)
        self.api: ApiServer | None = None  # the local API, while started (and enabled)
        self._started = self._stopped = False
        with contextlib.ExitStack() as opened:
            try:
                opened.callback(self.state.lock().release)
            except StateError as exc:
                raise RunnerError(str(exc)) from None
            for moved in self.state.recover():
                log.warning("recovery moved %s to quarantine", moved)
            self._wire(config, rng or random.Random(), opened)
            self._resources = opened.pop_all()

    def _wire(self, config: RunnerConfig, rng: random.Random, opened: contextlib.ExitStack) -> None:
        self.policy = PolicyFollower(config, self.state, lambda skip: self.updates.fetch_policy(skip),
                                     on_apply=self._use_config)
        config = self.config = self.policy.restore()  # runner.toml with the applied policy on top
        self.metrics = Registry()
        self.monitor = HealthMonitor()
        self.pending = PendingPredictions(config.feedback.pending_events, config.drift.window_rows)
        self.slot = InferenceSlot(self.pending, self.monitor, columns=config.columns, drift=config.drift,
                                  local_only=config.upload.local_only)
        self.predict_one = self.slot.predict_one
        self.spool = Spool(config.state_dir / SPOOL_FILE, config.upload.spool_quota_bytes,
                           labelled_capacity=config.feedback.pending_events)
        opened.callback(self.spool.close)
        self.recent = RecentLabelled(config.state_dir / RECENT_FILE, config.feedback.recent_labelled)
        opened.callback(self.recent.close)
        self.summary = SummaryAccumulator(config.device_id, config.upload.local_only)
        self.truth = GroundTruth(config, self.slot, self.pending, self.monitor, self.recent, self.spool,
                                 self.summary, self.metrics)
        self.tls = _client_tls(config)
        tls = self.tls
        self.updates = UpdateLoop(config, self.state, self.slot, self.monitor, self.truth.labelled_rows,
                                  self.metrics, rng, tls=None if tls is None else (lambda: tls.context))
        self.updates.policy = self.policy
        self.updates.serve_current()
        token = None if config.hub.token is None else config.hub.token.reveal()
        self.link = HubLink(config.device_id, self.spool.backlog_rows)
        self.client = HubClient(config.hub.url, config.device_id, token, config.hub.timeout_s,
                                tls=None if tls is None else tls.context, insecure=config.hub.insecure, link=self.link)
        self.uploads = UploadLoop(config, self.spool, self.client, self.summary, self.slot.drift_scores, rng)
        self.board = StatusBoard(config, self.state, self.slot, self.pending, self.monitor, self.spool,
                                 self.uploads.uploader, self.updates, self.client, self.metrics, lambda: self.api_url,
                                 certificate_expires=lambda: None if tls is None else tls.certificate_expires,
                                 link=self.link)
        self.board.policy_report = self.policy.report
        self.renewal: CertificateRenewal | None = None
        if tls is not None:
            tls.on_reload(self.client.use_tls)
            if config.tls.client_certificate and config.hub.url.startswith("https://"):
                from edge.cert_renewal import CertificateRenewal
                from edge.credentials import CredentialStore

                assert config.tls.cert_file is not None and config.tls.key_file is not None
                store = CredentialStore.of(config.tls.cert_file, config.tls.key_file)
                self.renewal = CertificateRenewal(config.device_id, config.tls, store, tls, self.client,
                                                  self.metrics, self.state)
        self.loops = Loops(self.metrics.counter("loop_errors_total", "Unexpected errors in a loop", ("loop",)))
        self.inputs: LiveInputs | None = None
        if config.inputs is not None:
            from edge.inputs.live import LiveInputs

            slot = self.slot
            self.inputs = LiveInputs(config.inputs, slot.predict_one, self.truth.feedback,
                                     lambda: None if slot.current is None else slot.current.manifest,
                                     self.metrics)
            self.board.inputs_report = self.inputs.report

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the local API (when enabled) and the loops. When the API cannot listen, nothing has
        started: the stores are closed and the lock released without writing anything (no status.json,
        no summary), and ``RunnerError`` says why in one line."""
        if self._started or self._stopped:
            raise RunnerError("a runner starts once (make a new Runner to start again)")
        self._started = True
        api = self.config.api
        if api.enabled:
            where = f"{api.host}:{api.port}" if api.unix_socket is None else str(api.unix_socket)
            try:
                self.api = serve(self, api.host, api.port, unix_socket=None if api.unix_socket is None else
                                 str(api.unix_socket), max_body_bytes=api.max_body_bytes, registry=self.metrics)
            except OSError as exc:  # the port is taken, or the socket path is in use
                self._stopped = True
                self._resources.close()
                if exc.errno == errno.EADDRINUSE and api.unix_socket is None:
                    raise RunnerError(in_use_message(api.host, api.port)) from None
                raise RunnerError(f"api: cannot serve on {where}: {exc.strerror or exc}") from None
        self.loops.every("updates", self.updates.poll_wait, self.updates.poll_now)
        self.loops.every("watchdog", lambda: WATCHDOG_S, self._watchdog)
        self.loops.every("heartbeat", lambda: self.config.hub.heartbeat_interval_s, self.board.heartbeat_now)
        if self.renewal is not None:
            self.loops.every("certificate", lambda: self.config.tls.renew_check_s, self.renewal.check_now)
        self.uploads.start(self.loops)
        if self.inputs is not None:
            from edge.inputs.live import InputsUnavailable

            try:
                self.inputs.start()
            except InputsUnavailable as exc:
                self.stop()
                raise RunnerError(str(exc)) from None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loops (an upload in flight finishes), close the API and the stores, release the lock."""
        if self._stopped:
            return
        self._stopped = True
        if self.inputs is not None:
            self.inputs.stop()
        if self.api is not None:
            self.api.close()
        self.loops.stop(timeout)
        try:
            self.uploads.summarize_now()
            self.board.write_status()
        finally:
            self._resources.close()

    def _use_config(self, new: RunnerConfig, old: RunnerConfig) -> None:
        """Swap a signed policy's values into the running parts (called by ``policy`` once applied.json holds them)."""
        self.config = new
        self.updates.use_config(new)
        self.board.use_config(new)
        self.uploads.use_config(new)
        self.slot.reconfigure(new.drift, new.upload.local_only)
        self.truth.use_upload(new.upload)
        self.summary.hide(new.upload.local_only)
        if new.drift.window_rows > self.pending.slots:
            log.warning("drift.window_rows %d: the recent-predictions ring holds %d rows until the runner restarts "
                        "(the drift window is that long meanwhile)", new.drift.window_rows, self.pending.slots)

    def _watchdog(self) -> None:
        if self.updates.watchdog():
            self.board.write_status()

    # -- the API ----------------------------------------------------------------------------------------

    @property
    def model_version(self) -> str | None:
        return self.slot.version

    @property
    def api_url(self) -> str | None:
        return None if self.api is None else self.api.url

    @property
    def uploader(self) -> Uploader:
        return self.uploads.uploader

    def predict(self, features: list[Any] | dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        """The HTTP API's single-row call."""
        return self.slot.predict_one(features, context).to_json_dict()

    def predict_batch(self, rows: list[Any], context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The HTTP API's batch call: every row checked before any is predicted."""
        return [p.to_json_dict() for p in self.slot.predict_batch(rows, context)]

    def feedback(self, event_id: int, label: int | str, features: Sequence[object] | Mapping[str, object] | None
                 = None, context: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Join ``label`` to the prediction ``event_id``; spool the row when the upload filter keeps it."""
        return self.truth.feedback(event_id, label, features, context)

    def poll_now(self) -> UpdateOutcome:
        return self.updates.poll_now()

    def rollback(self, reason: str) -> str | None:
        """Go back to ``previous`` (the current version is blocked); None when there is nothing to go back to."""
        version = self.updates.rollback(reason)
        if version is not None:
            self.board.write_status()
        return version

    def heartbeat_now(self) -> bool:
        """Send the heartbeat and write status.json; True when the hub took it."""
        return self.board.heartbeat_now()

    def health_status(self) -> str:
        return self.board.health_status()

    def health(self) -> dict[str, Any]:
        return self.board.health()

    def state_report(self) -> dict[str, Any]:
        return self.board.state_report()

    def metrics_text(self) -> str:
        return self.metrics.render()


def _client_tls(config: RunnerConfig) -> ClientTls | None:
    """The TLS context of every request to the hub; None when no CA is configured (loopback http).
    A certificate folder a crash left half-switched is repaired first (edge.credentials)."""
    tls = config.tls
    if tls.ca_file is None and not tls.system_store:
        return None
    from edge.credentials import CredentialStore
    from edge.transport import ClientTls, TlsSetupError

    if tls.cert_file is not None and tls.key_file is not None:
        store = CredentialStore.of(tls.cert_file, tls.key_file)
        if store is not None:
            try:
                store.recover()
            except OSError as exc:  # a read-only identity folder: the pair in use is fine, renewal will say so
                log.warning("cannot tidy the certificate folder %s: %s", store.folder, exc.strerror or exc)
    try:
        return ClientTls.from_config(tls)
    except TlsSetupError as exc:
        raise RunnerError(str(exc)) from None
